//! The QUIC handshake between peergraph nodes over loopback: mutual TLS links two nodes and
//! binds each side to the other's key; a client without a certificate or with another ALPN
//! never gets a link; the verifier refuses bytes that are not a certificate; a second link
//! between the same two nodes resumes when both ends have resumption on (the default),
//! and is a full handshake again when either end has it off.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, ensure, Context};
use common::{loopback, within, BorrowedCertificate};
use peergraph_engine::wire::{DisconnectReason, Message, ALPN};
use peergraph_transport::quinn;
use peergraph_transport::{
    bind_endpoint, client_tls_config, crypto_provider, node_id_of, peer_public_key, write_message,
    FrameReader, LinkOptions, NodeIdentity, PeerCertVerifier, TicketStore, SERVER_NAME,
};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::danger::ClientCertVerifier;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The application close code the tests end their connections with.
const DONE: u32 = 0;

/// A listening endpoint on loopback and the address it bound.
fn listening(identity: &NodeIdentity) -> anyhow::Result<(quinn::Endpoint, SocketAddr)> {
    let endpoint = bind_endpoint(loopback(), identity, &LinkOptions::default(), true)?;
    let address = endpoint.local_addr()?;
    Ok((endpoint, address))
}

/// A listening endpoint on loopback with resumption off ([`LinkOptions::zero_rtt`]).
fn listening_without_resumption(
    identity: &NodeIdentity,
) -> anyhow::Result<(quinn::Endpoint, SocketAddr)> {
    let options = LinkOptions {
        zero_rtt: false,
        ..LinkOptions::default()
    };
    let endpoint = bind_endpoint(loopback(), identity, &options, true)?;
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

    let mut tls = client_tls_config(&NodeIdentity::generate()?, None)?;
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

/// A client's [`PeerCertVerifier`] that counts the server handshake signatures it checks.
///
/// A full TLS 1.3 handshake has the server prove its key with a CertificateVerify, which the
/// client checks here; a resumed one has neither Certificate nor CertificateVerify (the
/// identity comes from the earlier session, through the ticket's pre-shared key), so the
/// count does not move. Counting is the observable: quinn's `HandshakeData` does not say
/// whether a handshake resumed.
#[derive(Debug)]
struct CountingVerifier {
    inner: PeerCertVerifier,
    signatures: AtomicUsize,
}

impl CountingVerifier {
    fn new() -> Arc<CountingVerifier> {
        Arc::new(CountingVerifier {
            inner: PeerCertVerifier::new(crypto_provider()),
            signatures: AtomicUsize::new(0),
        })
    }

    /// How many server signatures passed so far.
    fn signatures(&self) -> usize {
        self.signatures.load(Ordering::SeqCst)
    }
}

impl ServerCertVerifier for CountingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(&self.inner, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let valid = ServerCertVerifier::verify_tls13_signature(&self.inner, message, cert, dss)?;
        self.signatures.fetch_add(1, Ordering::SeqCst);
        Ok(valid)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(&self.inner)
    }
}

/// A quinn client configuration from `tls`, with the server's signatures counted by
/// `counter`. Everything else (resumption included) is `tls`'s own.
fn counted_client(
    mut tls: rustls::ClientConfig,
    counter: &Arc<CountingVerifier>,
) -> anyhow::Result<quinn::ClientConfig> {
    tls.dangerous().set_certificate_verifier(counter.clone());
    Ok(quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(tls)?,
    )))
}

/// Links `client` to the node `server` at `address` twice in a row with `config`, each time
/// with one round trip on a stream before a close both sides have heard. The round trip
/// means the client has read everything the server sent after its handshake, session
/// tickets included, before the next link starts: ends that resume do resume the second
/// link.
async fn link_twice(
    client: &quinn::Endpoint,
    config: &quinn::ClientConfig,
    server: &quinn::Endpoint,
    address: SocketAddr,
) -> anyhow::Result<()> {
    for _ in 0..2 {
        let connecting = client.connect_with(config.clone(), address, SERVER_NAME)?;
        let (client_connection, server_connection) = within("handshake", async {
            tokio::join!(connecting, accept_one(server))
        })
        .await?;
        let client_connection = client_connection?;
        let server_connection = server_connection?;

        let (mut send, mut recv) = within("open stream", client_connection.open_bi()).await??;
        within("ping", send.write_all(b"ping")).await??;
        send.finish()?;
        let (mut server_send, mut server_recv) =
            within("accept stream", server_connection.accept_bi()).await??;
        assert_eq!(
            within("read ping", server_recv.read_to_end(4)).await??,
            b"ping"
        );
        within("pong", server_send.write_all(b"pong")).await??;
        server_send.finish()?;
        assert_eq!(within("read pong", recv.read_to_end(4)).await??, b"pong");

        client_connection.close(quinn::VarInt::from_u32(DONE), b"done");
        within("server heard the close", server_connection.closed()).await?;
    }
    Ok(())
}

/// The server signatures a client verifies over two links in a row between the same two
/// endpoints, each end with resumption on or off (`server_resumes`, `client_resumes`).
async fn signatures_over_two_links(
    server_resumes: bool,
    client_resumes: bool,
) -> anyhow::Result<usize> {
    let client_identity = NodeIdentity::generate()?;
    let server_identity = NodeIdentity::generate()?;
    let (server, address) = if server_resumes {
        listening(&server_identity)?
    } else {
        listening_without_resumption(&server_identity)?
    };
    let client = bind_endpoint(loopback(), &client_identity, &LinkOptions::default(), false)?;
    let tls = client_tls_config(&client_identity, client_resumes.then(TicketStore::new))?;
    let counter = CountingVerifier::new();
    let config = counted_client(tls, &counter)?;

    link_twice(&client, &config, &server, address).await?;
    shut_down(&client).await?;
    shut_down(&server).await?;
    Ok(counter.signatures())
}

/// With resumption on at both ends (the default), the second link between the same two
/// endpoints resumes: it skips the server's signature. This also shows the harness sees a
/// resumption when there is one, so the tests below cannot pass because nothing resumes.
#[tokio::test]
async fn with_resumption_on_the_second_link_resumes() -> anyhow::Result<()> {
    let signatures = signatures_over_two_links(true, true).await?;
    assert_eq!(signatures, 1, "the second link did not resume");
    Ok(())
}

/// Two links in a row between the same two nodes, both with resumption off: the second
/// handshake proves the server's key again.
#[tokio::test]
async fn a_second_link_is_a_full_handshake() -> anyhow::Result<()> {
    let signatures = signatures_over_two_links(false, false).await?;
    assert_eq!(
        signatures, 2,
        "the second link resumed instead of verifying the key"
    );
    Ok(())
}

/// A node's client with resumption off offers no ticket, even to a server that hands
/// them out.
#[tokio::test]
async fn a_node_does_not_resume_with_a_server_that_offers_it() -> anyhow::Result<()> {
    let signatures = signatures_over_two_links(true, false).await?;
    assert_eq!(signatures, 2, "the node's client resumed");
    Ok(())
}

/// A node's server with resumption off grants none, even to a client that would take it.
#[tokio::test]
async fn a_node_does_not_resume_with_a_client_that_asks() -> anyhow::Result<()> {
    let signatures = signatures_over_two_links(false, true).await?;
    assert_eq!(signatures, 2, "the node's server resumed a session");
    Ok(())
}
