//! Graph membership by shared secret, proved on each link without the secret crossing
//! the wire.
//!
//! Each side of a link sends `HMAC-SHA256(secret, exporter)` where `exporter` is 32 bytes
//! of TLS keying material exported from this very link's TLS 1.3 session (RFC 8446, 7.5)
//! with the label `EXPORTER-peergraph-membership` and a context of the role byte (1 for
//! the CONNECT side, 2 for the WELCOME side) followed by the connection id (u64,
//! big-endian). The exporter differs for every TLS session, so a proof seen on one link is
//! worthless on any other; the roles differ, so a proof cannot be reflected back.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use peergraph_engine::ConnectionId;

/// The TLS exporter label of membership proofs.
pub const MEMBERSHIP_EXPORTER_LABEL: &[u8] = b"EXPORTER-peergraph-membership";
/// The shortest secret accepted: 16 bytes (128 bits), so a secret cannot be guessed
/// from proofs by brute force.
pub const MIN_SECRET_LEN: usize = 16;

/// A graph's shared secret (the Windows model's graph password). Its bytes never leave
/// the process; `Debug` does not print them.
#[derive(Clone)]
pub struct GraphSecret(Arc<[u8]>);

impl GraphSecret {
    /// A secret of at least [`MIN_SECRET_LEN`] bytes; `None` if shorter.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<Self> {
        let bytes = bytes.into();
        (bytes.len() >= MIN_SECRET_LEN).then(|| GraphSecret(bytes.into()))
    }
}

impl fmt::Debug for GraphSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GraphSecret(..)")
    }
}

/// Which side of the handshake a proof speaks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum ProofRole {
    /// The connecting node (sent in CONNECT).
    Connect = 1,
    /// The accepting node (sent in WELCOME).
    Welcome = 2,
}

fn exporter(
    connection: &quinn::Connection,
    role: ProofRole,
    connection_id: ConnectionId,
) -> Option<[u8; 32]> {
    let mut context = [0u8; 9];
    context[0] = role as u8;
    context[1..].copy_from_slice(&connection_id.get().to_be_bytes());
    let mut output = [0u8; 32];
    connection
        .export_keying_material(&mut output, MEMBERSHIP_EXPORTER_LABEL, &context)
        .ok()?;
    Some(output)
}

/// The proof this node sends in `role` on `connection`; `None` if the TLS session cannot
/// export keying material (it always can once the handshake completed).
pub fn membership_proof(
    connection: &quinn::Connection,
    secret: &GraphSecret,
    role: ProofRole,
    connection_id: ConnectionId,
) -> Option<Bytes> {
    let material = exporter(connection, role, connection_id)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret.0);
    Some(Bytes::copy_from_slice(
        ring::hmac::sign(&key, &material).as_ref(),
    ))
}

/// True when `proof` is the peer's valid proof in `role` on `connection` (compared in
/// constant time).
pub fn verify_membership_proof(
    connection: &quinn::Connection,
    secret: &GraphSecret,
    role: ProofRole,
    connection_id: ConnectionId,
    proof: &[u8],
) -> bool {
    let Some(material) = exporter(connection, role, connection_id) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret.0);
    ring::hmac::verify(&key, &material, proof).is_ok()
}
