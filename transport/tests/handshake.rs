//! The QUIC handshake between peergraph nodes over loopback: mutual TLS links two nodes and
//! binds each side to the other's key; a client without a certificate or with another ALPN
//! never gets a link; the verifier refuses bytes that are not a certificate.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, ensure, Context};
use common::{loopback, within};
use peergraph_engine::wire::{DisconnectReason, Message, ALPN};
use peergraph_transport::quinn;
use peergraph_transport::{
    bind_endpoint, client_tls_config, crypto_provider, node_id_of, peer_public_key, write_message,
    FrameReader, LinkOptions, NodeIdentity, PeerCertVerifier, SERVER_NAME,
};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::client::danger::ServerCertVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The application close code the tests end their connections with.
const DONE: u32 = 0;

/// A listening endpoint on loopback and the address it bound.
fn listening(identity: &NodeIdentity) -> anyhow::Result<(quinn::Endpoint, SocketAddr)> {
    let endpoint = bind_endpoint(loopback(), identity, &LinkOptions::default(), true)?;
    let address = endpoint.local_addr()?;
    Ok((endpoint, address))
}

/// Accepts the next connection attempt on `server` and runs its handshake to the end.
async fn accept_one(server: &quinn::Endpoint) -> anyhow::Result<quinn::Connection> {
    let incoming = server
        .accept()
        .await
        .ok_or_else(|| anyhow!("server endpoint closed"))?;
    Ok(incoming.await?)
}

/// Closes `endpoint` and waits until its peers have heard the close.
async fn shut_down(endpoint: &quinn::Endpoint) -> anyhow::Result<()> {
    endpoint.close(quinn::VarInt::from_u32(DONE), b"done");
    within("endpoint idle", endpoint.wait_idle()).await
}

/// Connects to a node at `address` with `tls` instead of a node's own client config, and
/// checks that the node's side of the handshake fails and that no client-side connection
/// outlives it. Returns whether the client saw its handshake fail.
async fn assert_refused(
    address: SocketAddr,
    server: &quinn::Endpoint,
    tls: rustls::ClientConfig,
) -> anyhow::Result<bool> {
    let client_identity = NodeIdentity::generate()?;
    let client = bind_endpoint(loopback(), &client_identity, &LinkOptions::default(), false)?;
    let config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    let connecting = client.connect_with(config, address, SERVER_NAME)?;

    let (client_side, server_side) = within("handshake", async {
        tokio::join!(connecting, accept_one(server))
    })
    .await?;
    ensure!(
        server_side.is_err(),
        "the server accepted a connection it must refuse"
    );
    // In TLS 1.3 the client may finish its side of the handshake before the server has
    // checked the client's flight; the server's refusal must then close the connection.
    let client_failed = match client_side {
        Ok(connection) => {
            within("client connection closed", connection.closed()).await?;
            false
        }
        Err(_) => true,
    };
    shut_down(&client).await?;
    Ok(client_failed)
}

#[tokio::test]
async fn mutual_tls_links_two_nodes() -> anyhow::Result<()> {
    let server_identity = NodeIdentity::generate()?;
    let client_identity = NodeIdentity::generate()?;
    let (server, address) = listening(&server_identity)?;
    let client = bind_endpoint(loopback(), &client_identity, &LinkOptions::default(), false)?;

    let connecting = client.connect(address, SERVER_NAME)?;
    let (client_connection, server_connection) = within("handshake", async {
        tokio::join!(connecting, accept_one(&server))
    })
    .await?;
    let client_connection = client_connection?;
    let server_connection = server_connection?;

    // Each side sees the key the other holds, and so the other's node id.
    let seen_by_client =
        peer_public_key(&client_connection).context("client sees no server key")?;
    let seen_by_server =
        peer_public_key(&server_connection).context("server sees no client key")?;
    assert_eq!(seen_by_client, server_identity.public_key());
    assert_eq!(seen_by_server, client_identity.public_key());
    assert_eq!(node_id_of(&seen_by_client), server_identity.node_id());
    assert_eq!(node_id_of(&seen_by_server), client_identity.node_id());

    // A frame crosses the control stream intact. quinn announces a stream to the peer only
    // once something is written on it, so write before accepting.
    let message = Message::Disconnect(DisconnectReason::AppDisconnect);
    let (mut send, _client_recv) = within("open stream", client_connection.open_bi()).await??;
    within("write", write_message(&mut send, &message)).await??;
    send.finish()?;
    let (_server_send, recv) = within("accept stream", server_connection.accept_bi()).await??;
    let mut reader = FrameReader::new(recv);
    assert_eq!(within("read", reader.read()).await??, Some(message));
    assert_eq!(within("read end", reader.read()).await??, None);

    client_connection.close(quinn::VarInt::from_u32(DONE), b"done");
    shut_down(&client).await?;
    shut_down(&server).await
}

#[tokio::test]
async fn client_without_certificate_is_refused() -> anyhow::Result<()> {
    let server_identity = NodeIdentity::generate()?;
    let (server, address) = listening(&server_identity)?;

    let provider = crypto_provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerCertVerifier::new(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];

    // Whether the client sees its handshake fail or complete depends on timing (see
    // `assert_refused`); either way it gets no link.
    assert_refused(address, &server, tls).await?;
    shut_down(&server).await
}

#[tokio::test]
async fn wrong_alpn_is_refused() -> anyhow::Result<()> {
    let server_identity = NodeIdentity::generate()?;
    let (server, address) = listening(&server_identity)?;

    let mut tls = client_tls_config(&NodeIdentity::generate()?)?;
    tls.alpn_protocols = vec![b"other/1".to_vec()];

    // The server refuses the ClientHello itself, so the client never completes either.
    ensure!(
        assert_refused(address, &server, tls).await?,
        "the client completed a handshake with the wrong ALPN"
    );
    shut_down(&server).await
}

#[test]
fn garbage_certificate_is_refused() -> anyhow::Result<()> {
    let verifier = PeerCertVerifier::new(crypto_provider());
    let garbage = CertificateDer::from(vec![1, 2, 3]);
    let real = NodeIdentity::generate()?.certificate();
    let name = ServerName::try_from(SERVER_NAME)?;
    let now = UnixTime::now();

    assert!(verifier.verify_client_cert(&garbage, &[], now).is_err());
    assert!(verifier.verify_client_cert(&real, &[], now).is_ok());
    assert!(verifier
        .verify_server_cert(&garbage, &[], &name, &[], now)
        .is_err());
    assert!(verifier
        .verify_server_cert(&real, &[], &name, &[], now)
        .is_ok());
    Ok(())
}

/// Presents one node's certificate but signs the handshake with another node's key.
#[derive(Debug)]
struct BorrowedCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for BorrowedCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_certificate_without_its_key_is_refused() -> anyhow::Result<()> {
    let server_identity = NodeIdentity::generate()?;
    let (server, address) = listening(&server_identity)?;

    // Mallory shows the victim's certificate, but only holds her own private key.
    let victim = NodeIdentity::generate()?;
    let mallory = NodeIdentity::generate()?;
    let provider = crypto_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(mallory.private_key())
        .map_err(|error| anyhow!("load key: {error}"))?;
    let borrowed = rustls::sign::CertifiedKey::new(vec![victim.certificate()], signing_key);
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerCertVerifier::new(provider)))
        .with_client_cert_resolver(Arc::new(BorrowedCertificate(Arc::new(borrowed))));
    tls.alpn_protocols = vec![ALPN.to_vec()];

    // The CertificateVerify signature does not check against the presented certificate's
    // key: the node refuses the handshake, so the victim's node id cannot be claimed.
    assert_refused(address, &server, tls).await?;
    shut_down(&server).await
}
