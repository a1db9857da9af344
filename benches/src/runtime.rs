//! A current-thread tokio runtime on a thread of its own: how the raw quinn side (and, in
//! the peers workspace, which builds this same file, iroh and rust-libp2p) runs, the
//! equivalent of a peergraph worker arbiter (which is one too, under actix).

use std::future::Future;
use std::io;
use std::thread::JoinHandle;

use anyhow::Context as _;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// A thread running a current-thread tokio runtime until dropped. Tasks spawned on it run
/// on that thread only, like everything on a peergraph worker.
pub struct RuntimeThread {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RuntimeThread {
    /// Starts the thread, named `name`, and its runtime (with I/O and timers).
    ///
    /// # Errors
    /// When the thread or the runtime cannot be made.
    pub fn start(name: &str) -> io::Result<RuntimeThread> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => {
                        let _ = handle_tx.send(Ok(runtime.handle().clone()));
                        runtime.block_on(async {
                            let _ = stopped.await;
                        });
                    }
                    Err(error) => {
                        let _ = handle_tx.send(Err(error));
                    }
                }
            })?;
        let handle = handle_rx
            .recv()
            .map_err(|_| io::Error::other("runtime thread did not start"))??;
        Ok(RuntimeThread {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `future` on this thread and waits for its output.
    ///
    /// # Errors
    /// When the task panics or the runtime is gone.
    pub async fn run<F>(&self, future: F) -> anyhow::Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle
            .spawn(future)
            .await
            .context("task on a runtime thread failed")
    }

    /// Starts `future` on this thread without waiting for it.
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
