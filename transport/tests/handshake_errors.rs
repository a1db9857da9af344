//! What a peer sees when a handshake with a node fails, pinned to the QUIC error codes
//! `docs/PROTOCOL.md` §4.2 names: the TLS alert of each failure travels as QUIC transport
//! error 0x100 + alert (RFC 9001 §4.8) in a CONNECTION_CLOSE of type 0x1c, and the node
//! itself ends the attempt with the same code.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, bail, ensure};
use common::{loopback, within, BorrowedCertificate};
use peergraph_engine::wire::ALPN;
use peergraph_transport::quinn;
use peergraph_transport::{
    bind_endpoint, client_tls_config, crypto_provider, LinkOptions, NodeIdentity, PeerCertVerifier,
    SERVER_NAME,
};
use quinn::crypto::rustls::QuicClientConfig;

/// TLS alert certificate_required (116), raised when a client presents no certificate.
const CERTIFICATE_REQUIRED: u64 = 0x100 + 116;
/// TLS alert decrypt_error (51), raised when CertificateVerify does not verify.
const DECRYPT_ERROR: u64 = 0x100 + 51;
/// TLS alert no_application_protocol (120), raised when ALPN does not agree.
const NO_APPLICATION_PROTOCOL: u64 = 0x100 + 120;

/// The QUIC error code that ended a connection, and whether this side raised it.
fn error_code(error: &quinn::ConnectionError) -> anyhow::Result<(u64, bool)> {
    match error {
        quinn::ConnectionError::TransportError(error) => Ok((u64::from(error.code), true)),
        quinn::ConnectionError::ConnectionClosed(close) => Ok((u64::from(close.error_code), false)),
        other => bail!("not a transport error: {other:?}"),
    }
}

/// Connects to a fresh node with `tls` as the client's TLS configuration and returns the
/// QUIC error code the node raised and the one the client received.
async fn failed_handshake(tls: rustls::ClientConfig) -> anyhow::Result<(u64, u64)> {
    let server = bind_endpoint(
        loopback(),
        &NodeIdentity::generate()?,
        &LinkOptions::default(),
        true,
    )?;
    let address: SocketAddr = server.local_addr()?;
    let client = bind_endpoint(
        loopback(),
        &NodeIdentity::generate()?,
        &LinkOptions::default(),
        false,
    )?;
    let config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    let connecting = client.connect_with(config, address, SERVER_NAME)?;
    let (client_side, server_side) = within("handshake", async {
        tokio::join!(connecting, async {
            server
                .accept()
                .await
                .ok_or_else(|| anyhow!("server endpoint closed"))?
                .await
                .map_err(anyhow::Error::from)
        })
    })
    .await?;
    let node_error = match server_side {
        Ok(_) => bail!("the node accepted the handshake"),
        Err(error) => error
            .downcast::<quinn::ConnectionError>()
            .map_err(|error| anyhow!("{error}"))?,
    };
    let (node_code, raised) = error_code(&node_error)?;
    ensure!(
        raised,
        "the node did not raise the error itself: {node_error:?}"
    );
    // In TLS 1.3 the client's handshake completes before the node has checked the client's
    // last flight; the node's close then ends the connection just after.
    let client_error = match client_side {
        Ok(connection) => within("the client hears the close", connection.closed()).await?,
        Err(error) => error,
    };
    let (client_code, raised) = error_code(&client_error)?;
    ensure!(!raised, "the client raised the error: {client_error:?}");
    Ok((node_code, client_code))
}

/// A client TLS configuration like a node's, but with `auth` deciding its certificate.
fn client_tls(
    auth: impl FnOnce(
        rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    ) -> anyhow::Result<rustls::ClientConfig>,
) -> anyhow::Result<rustls::ClientConfig> {
    let provider = crypto_provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerCertVerifier::new(provider)));
    let mut tls = auth(builder)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    Ok(tls)
}

#[tokio::test]
async fn no_client_certificate_is_certificate_required() -> anyhow::Result<()> {
    let tls = client_tls(|builder| Ok(builder.with_no_client_auth()))?;
    let (node, client) = failed_handshake(tls).await?;
    assert_eq!((node, client), (CERTIFICATE_REQUIRED, CERTIFICATE_REQUIRED));
    Ok(())
}

#[tokio::test]
async fn a_certificate_verify_by_another_key_is_decrypt_error() -> anyhow::Result<()> {
    let victim = NodeIdentity::generate()?;
    let mallory = NodeIdentity::generate()?;
    let signing_key = crypto_provider()
        .key_provider
        .load_private_key(mallory.private_key())
        .map_err(|error| anyhow!("load key: {error}"))?;
    let borrowed = rustls::sign::CertifiedKey::new(vec![victim.certificate()], signing_key);
    let tls = client_tls(|builder| {
        Ok(builder.with_client_cert_resolver(Arc::new(BorrowedCertificate(Arc::new(borrowed)))))
    })?;
    let (node, client) = failed_handshake(tls).await?;
    assert_eq!((node, client), (DECRYPT_ERROR, DECRYPT_ERROR));
    Ok(())
}

#[tokio::test]
async fn another_alpn_is_no_application_protocol() -> anyhow::Result<()> {
    let mut tls = client_tls_config(&NodeIdentity::generate()?, None)?;
    tls.alpn_protocols = vec![b"peergraph/2".to_vec()];
    let (node, client) = failed_handshake(tls).await?;
    assert_eq!(
        (node, client),
        (NO_APPLICATION_PROTOCOL, NO_APPLICATION_PROTOCOL)
    );
    Ok(())
}

#[tokio::test]
async fn no_alpn_is_no_application_protocol() -> anyhow::Result<()> {
    let mut tls = client_tls_config(&NodeIdentity::generate()?, None)?;
    tls.alpn_protocols = Vec::new();
    let (node, client) = failed_handshake(tls).await?;
    assert_eq!(
        (node, client),
        (NO_APPLICATION_PROTOCOL, NO_APPLICATION_PROTOCOL)
    );
    Ok(())
}
