//! A node's identity: its key pair, its self-signed certificate, and the node id derived
//! from the public key.

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use peergraph_engine::{NodeId, PeerKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use thiserror::Error;

/// The subject name in every node certificate. Identity is the key, not the name, so the
/// name is the same for all nodes and is never checked.
pub const CERTIFICATE_NAME: &str = "peergraph";

/// Why an identity could not be made, loaded or saved.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// Key generation or certificate signing failed.
    #[error("cannot generate a key pair or certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The identity file could not be read or written.
    #[error("identity file: {0}")]
    Io(#[from] io::Error),
    /// The identity file does not hold a certificate and a private key in PEM.
    #[error("identity file is not a PEM certificate followed by a PEM private key: {0}")]
    Format(String),
}

/// A node's key pair and self-signed certificate. Cheap to clone.
///
/// The node id is the first eight bytes of the SHA-256 digest of the public key
/// (SubjectPublicKeyInfo DER), so it cannot be claimed without the private key: every link
/// proves possession of the key in the TLS 1.3 handshake.
#[derive(Clone)]
pub struct NodeIdentity {
    inner: Arc<Inner>,
}

struct Inner {
    certificate: CertificateDer<'static>,
    private_key_pkcs8: Vec<u8>,
    pem: String,
    public_key: Vec<u8>,
    node_id: NodeId,
}

impl NodeIdentity {
    /// A new identity: a fresh ECDSA P-256 key pair and a self-signed certificate.
    ///
    /// # Errors
    /// [`IdentityError::Generate`] if the system's random source fails.
    pub fn generate() -> Result<Self, IdentityError> {
        let key_pair = rcgen::KeyPair::generate()?;
        Self::from_key_pair(key_pair)
    }

    fn from_key_pair(key_pair: rcgen::KeyPair) -> Result<Self, IdentityError> {
        let params = rcgen::CertificateParams::new(vec![CERTIFICATE_NAME.to_owned()])?;
        let certificate = params.self_signed(&key_pair)?;
        let public_key = key_pair.public_key_der();
        Ok(NodeIdentity {
            inner: Arc::new(Inner {
                certificate: certificate.der().clone(),
                private_key_pkcs8: key_pair.serialize_der(),
                pem: format!("{}{}", certificate.pem(), key_pair.serialize_pem()),
                node_id: node_id_of(&public_key),
                public_key,
            }),
        })
    }

    /// Loads the identity stored at `path` (see [`NodeIdentity::to_pem`]), or generates a
    /// new one and stores it there (readable by the owner only) when the file does not exist.
    ///
    /// # Errors
    /// [`IdentityError::Io`] when the file cannot be read or written,
    /// [`IdentityError::Format`] when it holds something else.
    pub fn load_or_generate(path: impl AsRef<Path>) -> Result<Self, IdentityError> {
        let path = path.as_ref();
        match fs::read_to_string(path) {
            Ok(pem) => Self::from_pem(&pem),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let identity = Self::generate()?;
                write_private(path, identity.to_pem().as_bytes())?;
                Ok(identity)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The identity from PEM text holding a `PRIVATE KEY` (PKCS#8) block. A certificate
    /// block may be present; the certificate is always made anew from the key, so the file
    /// cannot pair a key with someone else's certificate.
    ///
    /// # Errors
    /// [`IdentityError::Format`] when no usable private key is found.
    pub fn from_pem(pem: &str) -> Result<Self, IdentityError> {
        // rcgen's `KeyPair::from_pem` parses only the first PEM block, which in our file is
        // the certificate; so find the PKCS#8 block by its label first.
        let key = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|error| IdentityError::Format(error.to_string()))?;
        let key_pair = rcgen::KeyPair::try_from(&key)
            .map_err(|error| IdentityError::Format(error.to_string()))?;
        Self::from_key_pair(key_pair)
    }

    /// The identity as PEM: the certificate, then the PKCS#8 private key.
    pub fn to_pem(&self) -> String {
        self.inner.pem.clone()
    }

    /// The node id derived from the public key.
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// The key fingerprint (SHA-256 of the public key), for allow-lists.
    pub fn peer_key(&self) -> PeerKey {
        peer_key_of(&self.inner.public_key)
    }

    /// The public key (SubjectPublicKeyInfo DER).
    pub fn public_key(&self) -> &[u8] {
        &self.inner.public_key
    }

    /// The certificate (DER).
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.inner.certificate.clone()
    }

    /// The private key (PKCS#8 DER).
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            self.inner.private_key_pkcs8.clone(),
        ))
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("node_id", &self.inner.node_id)
            .finish_non_exhaustive()
    }
}

/// The node id bound to a public key (SubjectPublicKeyInfo DER): the first eight bytes of
/// its SHA-256 digest, big-endian.
pub fn node_id_of(public_key: &[u8]) -> NodeId {
    peer_key_of(public_key).node_id()
}

/// The fingerprint of a public key (SubjectPublicKeyInfo DER): its SHA-256 digest.
pub fn peer_key_of(public_key: &[u8]) -> PeerKey {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    PeerKey(key)
}

fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    options.open(path)?.write_all(contents)
}

/// A random 64-bit value from the system's secure random source, never zero (used for
/// connection ids, which must be unpredictable and unique among a node's links).
pub fn random_nonzero_u64() -> u64 {
    use ring::rand::SecureRandom;
    let random = ring::rand::SystemRandom::new();
    loop {
        let mut bytes = [0u8; 8];
        if random.fill(&mut bytes).is_ok() {
            let value = u64::from_ne_bytes(bytes);
            if value != 0 {
                return value;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_differ_and_node_id_follows_the_key() {
        let a = NodeIdentity::generate().expect("generate");
        let b = NodeIdentity::generate().expect("generate");
        assert_ne!(a.node_id(), b.node_id());
        assert_eq!(a.node_id(), node_id_of(a.public_key()));
    }

    #[test]
    fn pem_round_trip_keeps_the_node_id() {
        let identity = NodeIdentity::generate().expect("generate");
        let pem = identity.to_pem();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        let loaded = NodeIdentity::from_pem(&pem).expect("load");
        assert_eq!(loaded.node_id(), identity.node_id());
        assert!(NodeIdentity::from_pem("not pem").is_err());
    }

    #[test]
    fn load_or_generate_creates_then_reloads() {
        let dir = std::env::temp_dir().join(format!("peergraph-identity-{}", std::process::id()));
        let _ = fs::remove_file(&dir);
        let first = NodeIdentity::load_or_generate(&dir).expect("create");
        let second = NodeIdentity::load_or_generate(&dir).expect("reload");
        assert_eq!(first.node_id(), second.node_id());
        fs::remove_file(&dir).expect("clean up");
    }
}
