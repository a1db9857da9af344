//! Helpers shared by the transport's integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;

/// How long any one step may take. Loopback handshakes finish in milliseconds; ten seconds
/// only bounds a hang, it never paces a test.
pub const WAIT: Duration = Duration::from_secs(10);

/// 127.0.0.1, any port.
pub fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// `future`'s output, or an error naming `step` if it takes longer than [`WAIT`].
pub async fn within<T>(step: &str, future: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(WAIT, future)
        .await
        .with_context(|| format!("timed out: {step}"))
}

/// Presents one node's certificate but signs the handshake with another node's key.
#[derive(Debug)]
pub struct BorrowedCertificate(pub std::sync::Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for BorrowedCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
