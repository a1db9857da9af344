//! A small tmpfs for the full-disk tests, shared by the store's and the actors' tests.
//!
//! Mounting needs root (CAP_SYS_ADMIN) on Linux; without it [`Tmpfs::mount`] says why,
//! and the test prints that it is skipped and returns.

use std::path::Path;
use std::process::Command;

/// A tmpfs mounted on a temporary directory, unmounted on drop (also when a test panics).
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=`). `Err` with the reason when this
    /// process may not mount; any other failure to mount fails the test.
    pub fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|error| format!("mount could not run: {error}"))?;
        if output.status.success() {
            return Ok(Tmpfs { dir });
        }
        let stderr = String::from_utf8_lossy(&output.stderr).to_lowercase();
        let refused = ["permission denied", "not permitted", "must be superuser"]
            .iter()
            .any(|reason| stderr.contains(reason));
        assert!(refused, "mount failed for another reason: {stderr}");
        Err(format!("mount -t tmpfs was refused: {}", stderr.trim()))
    }

    /// The tmpfs of `size`, or `None` after printing why the test is skipped.
    pub fn or_skip(size: &str) -> Option<Tmpfs> {
        match Tmpfs::mount(size) {
            Ok(tmpfs) => Some(tmpfs),
            Err(reason) => {
                eprintln!("SKIPPED: {reason}");
                None
            }
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path = self.dir.path();
        let unmounted = Command::new("umount")
            .arg(path)
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            // A file still open (a store left behind by a panic): detach it anyway, so the
            // temporary directory is removed from the file system underneath.
            let _ = Command::new("umount").arg("-l").arg(path).status();
        }
    }
}
