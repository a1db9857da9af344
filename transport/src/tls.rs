//! Mutual TLS 1.3 for peergraph links: both sides present a certificate, and each side
//! verifies that the other holds the private key of the certificate it presented.
//!
//! Identity is the key, not a name or a certificate chain: nodes use self-signed
//! certificates, and what is verified on every link is
//! 1. the certificate parses as X.509 (anything else ends the handshake),
//! 2. the TLS 1.3 CertificateVerify signature checks against the certificate's public key
//!    (proof of possession; TLS 1.2 is not offered),
//! 3. ALPN is `peergraph/1` (quinn ends the handshake otherwise),
//! 4. every handshake is a full one, so 1 and 2 happen on every link, not once per pair of
//!    nodes: session resumption is off on both sides (see below).
//!
//! The node id and key fingerprint derived from the verified key ([`crate::node_id_of`],
//! [`crate::peer_key_of`]) identify the peer from then on; a graph with an allow-list or a
//! secret authorises it (see the `membership` module). There is no "skip verification"
//! path.
//!
//! # No session resumption
//! A resumed TLS 1.3 handshake has no Certificate and no CertificateVerify: the peer's
//! identity is carried over from an earlier session by the ticket's pre-shared key. Such a
//! link would be reported as being with a key that did not sign its handshake, and a check
//! added to the verifier would never run on it. And every node connects with the same
//! server name ([`crate::SERVER_NAME`]), so a client's cache would offer the ticket one peer
//! issued to any other peer, in the clear in its ClientHello: an identifier that links the
//! client's links across peers. What resumption would save is small: not a round trip,
//! since 0-RTT stays off (it is replayable, and it needs a ticket anyway), only one
//! signature and one verification per side. So a node's server keeps no sessions and issues
//! no tickets, and its client stores and offers none.

use std::sync::Arc;

use peergraph_engine::wire::ALPN;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls13_signature, CryptoProvider};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::NoServerSessionStorage;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::identity::NodeIdentity;

/// The crypto provider every peergraph link uses: ring, TLS 1.3 only.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Verifies a peer's certificate and handshake signature as the module doc describes.
#[derive(Debug)]
pub struct PeerCertVerifier {
    provider: Arc<CryptoProvider>,
}

impl PeerCertVerifier {
    /// A verifier using `provider`'s signature algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        PeerCertVerifier { provider }
    }

    fn check_certificate(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        webpki::EndEntityCert::try_from(end_entity)
            .map(|_| ())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))
    }

    fn check_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic)
}

impl ServerCertVerifier for PeerCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check_certificate(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for PeerCertVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check_certificate(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// The rustls server configuration of a node: its certificate, mandatory client
/// certificates verified by [`PeerCertVerifier`], TLS 1.3, ALPN `peergraph/1`.
///
/// Session resumption is off: no session cache and no TLS 1.3 tickets, so every client
/// proves its key on every link (see the module doc for why).
///
/// # Errors
/// A rustls error if the identity's key is not usable.
pub fn server_tls_config(identity: &NodeIdentity) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = crypto_provider();
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(PeerCertVerifier::new(provider)))
        .with_single_cert(vec![identity.certificate()], identity.private_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// The rustls client configuration of a node: its certificate as the client certificate,
/// the server's verified by [`PeerCertVerifier`], TLS 1.3, ALPN `peergraph/1`.
///
/// Session resumption is off: tickets are neither stored nor offered, so every server
/// proves its key on every link, and no peer sees a ticket another peer issued (see the
/// module doc for why).
///
/// # Errors
/// A rustls error if the identity's key is not usable.
pub fn client_tls_config(identity: &NodeIdentity) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = crypto_provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerCertVerifier::new(provider)))
        .with_client_auth_cert(vec![identity.certificate()], identity.private_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// The verified public key (SubjectPublicKeyInfo DER) of the peer on `connection`, taken
/// from the certificate the handshake verified; `None` if there is none (which the
/// verifiers above never allow once the handshake completed).
pub fn peer_public_key(connection: &quinn::Connection) -> Option<Vec<u8>> {
    let identity = connection.peer_identity()?;
    let certificates = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let end_entity = certificates.first()?;
    let parsed = webpki::EndEntityCert::try_from(end_entity).ok()?;
    Some(parsed.subject_public_key_info().as_ref().to_vec())
}
