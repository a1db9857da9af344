//! Mutual TLS 1.3 for peergraph links: both sides present a certificate, and each side
//! verifies that the other holds the private key of the certificate it presented.
//!
//! Identity is the key, not a name or a certificate chain: nodes use self-signed
//! certificates, and what is verified on every link is
//! 1. the certificate parses as X.509 (anything else ends the handshake),
//! 2. the TLS 1.3 CertificateVerify signature checks against the certificate's public key
//!    (proof of possession; TLS 1.2 is not offered),
//! 3. ALPN is `peergraph/1` (quinn ends the handshake otherwise),
//! 4. a full handshake, or a resumed one whose session came from a full handshake of this
//!    node's that passed 1 and 2 (see below).
//!
//! The node id and key fingerprint derived from the verified key ([`crate::node_id_of`],
//! [`crate::peer_key_of`]) identify the peer from then on; a graph with an allow-list or a
//! secret authorises it (see the `membership` module). There is no "skip verification"
//! path.
//!
//! # Resumption and 0-RTT
//! With [`LinkOptions::zero_rtt`](crate::LinkOptions) (the default), a node's server hands
//! out TLS 1.3 tickets and its client keeps them, so that a second link to the same node
//! resumes: the handshake needs no certificate signature, and the connecting side's CONNECT
//! rides its first flight as 0-RTT data, which saves the link a round trip. A resumed
//! handshake carries no Certificate and no CertificateVerify: the peer's certificate is
//! carried over from the full handshake the session came from, through the ticket's
//! pre-shared key, which only the two ends of that handshake hold (the client proves it
//! with the ClientHello's binder, the server by completing the handshake with it). So the
//! key a resumed link reports is one that signed an earlier handshake of this node's, never
//! one that was not verified. What keeps it safe:
//! - **Single-use tickets.** The server keeps its sessions in a bounded cache
//!   ([`ServerSessions`], at most [`SERVER_SESSIONS`], emptied when the node renews its
//!   endpoint after a peak of links) and takes a session out as a ticket is offered; no
//!   ticket encryption key exists, so a ticket offered twice resumes once at most. A replayed first
//!   flight therefore finds no session (or, replayed before the original arrives, makes the
//!   original fall back to a full handshake, whose CONNECT then displaces the replay's).
//! - **Nothing is admitted before the handshake completes.** 0-RTT data can be replayed, so
//!   the accepting node answers a CONNECT that came as 0-RTT data (WELCOME goes as 0.5-RTT
//!   data, readable only by the holder of the session), but the connection enters its
//!   table, and CONNECTED is raised, only once the client's Finished has been verified. A
//!   replayed flight never gets that far.
//! - **Tickets are kept per peer, never shared.** A client keeps its tickets under a name of
//!   its own making from the address it connects to and the key it pinned, if any
//!   ([`ticket_name`]), and sends no server name at all: a ticket is only ever offered to
//!   the address (and pinned key) whose handshake issued it, so a peer never sees a ticket
//!   another peer issued (unless it took over that address: a single-use random id, which
//!   links nothing). The store is bounded ([`TICKET_NAMES`] names of up to eight tickets).
//! - **CONNECT goes early only where it would go anyway.** The store keeps the key each
//!   name's node proved on its last checked link; CONNECT goes as 0-RTT data only when
//!   that key passes the same checks (pinned key, allow-list for the target peer id) that a
//!   full handshake would run before sending CONNECT, and the checks run again on the key
//!   the handshake carries. A node that fails them loses its tickets and known key
//!   ([`TicketStore::forget`]).
//! - **Admission is judged as before**, on the key the session carries: an allow-list
//!   changed since the ticket was issued applies to the resumed link. A graph with a
//!   secret sends and accepts no CONNECT before the handshake completes, since its
//!   membership proof is bound to the completed handshake.
//!
//! With `zero_rtt` off, a node's server keeps no sessions and issues no tickets, and every
//! link is a full handshake.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use peergraph_engine::wire::ALPN;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption};
use rustls::client::{Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::crypto::{verify_tls13_signature, CryptoProvider};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache, StoresServerSessions};
use rustls::{DigitallySignedStruct, DistinguishedName, NamedGroup, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use peergraph_engine::PeerKey;

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

/// The sessions a node's server keeps for resumption, at most: 2,048 per endpoint, about
/// 1 KiB each (the client's certificate and the session's secret; measured in the
/// 10,000-link soak). Past it the oldest goes, and the client holding its ticket makes a
/// full handshake instead.
pub const SERVER_SESSIONS: usize = 2048;

/// The tickets a node's server sends after each handshake: one. A resumed link uses one
/// and brings one, so a client linking again and again holds steady, and so does the
/// server's cache; a client that opens several links at once gets one ticket from each
/// full handshake, so as many of its links resume next time. (Two, rustls' default, would
/// leave one unused session in the server's cache for every resumed link.) A link closed
/// before its ticket arrived costs its client one full handshake later, which brings a
/// ticket again.
pub const TICKETS_PER_HANDSHAKE: usize = 1;

/// The names a node's [`TicketStore`] keeps tickets under, at most, up to eight tickets
/// each: 256 peers' worth, about a megabyte at most. Past it, the name added first goes.
pub const TICKET_NAMES: usize = 256;

/// The rustls server configuration of a node: its certificate, mandatory client
/// certificates verified by [`PeerCertVerifier`], TLS 1.3, ALPN `peergraph/1`.
///
/// With `sessions`, the server keeps its sessions there (at most [`SERVER_SESSIONS`]),
/// sends [`TICKETS_PER_HANDSHAKE`] single-use ticket after each handshake, and takes 0-RTT
/// data from a client that resumes; without, it keeps no sessions and issues no tickets,
/// so every client proves its key on every link (see the module doc).
///
/// # Errors
/// A rustls error if the identity's key is not usable.
pub fn server_tls_config(
    identity: &NodeIdentity,
    sessions: Option<Arc<ServerSessions>>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = crypto_provider();
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(PeerCertVerifier::new(provider)))
        .with_single_cert(vec![identity.certificate()], identity.private_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    match sessions {
        Some(sessions) => {
            // A stateful cache and no ticket key: rustls takes a session out of the cache
            // as its ticket is offered, so every ticket is single-use.
            config.session_storage = sessions;
            config.send_tls13_tickets = TICKETS_PER_HANDSHAKE;
            // QUIC takes 0-RTT data without a byte limit of TLS's own (flow control bounds
            // it).
            config.max_early_data_size = u32::MAX;
        }
        None => {
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
    }
    Ok(config)
}

/// The sessions a node's server keeps for resumption: rustls' in-memory cache of at most
/// [`SERVER_SESSIONS`], which the node can empty ([`clear`](Self::clear)) when it gives
/// back what a peak of links took (an endpoint renewal): the sessions of that peak's links
/// are most of it, and a client whose session went makes a full handshake.
#[derive(Debug)]
pub struct ServerSessions {
    cache: RwLock<Arc<ServerSessionMemoryCache>>,
}

impl ServerSessions {
    /// An empty cache of at most [`SERVER_SESSIONS`] sessions.
    pub fn new() -> Arc<ServerSessions> {
        Arc::new(ServerSessions {
            cache: RwLock::new(fresh_cache()),
        })
    }

    /// Drops every session: tickets issued so far resume nothing (their clients make a
    /// full handshake, which brings a new one).
    pub fn clear(&self) {
        *self
            .cache
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = fresh_cache();
    }

    fn cache(&self) -> Arc<ServerSessionMemoryCache> {
        self.cache
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

fn fresh_cache() -> Arc<ServerSessionMemoryCache> {
    ServerSessionMemoryCache::new(SERVER_SESSIONS)
}

impl StoresServerSessions for ServerSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.cache().put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.cache().get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.cache().take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// The rustls client configuration of a node: its certificate as the client certificate,
/// the server's verified by [`PeerCertVerifier`], TLS 1.3, ALPN `peergraph/1`, and no server
/// name sent (identity is the key, not a name).
///
/// With `tickets`, the client keeps the tickets servers send in that store and offers them,
/// with 0-RTT data, to the name they came under (see [`ticket_name`]); without, it neither
/// stores nor offers any, so every server proves its key on every link.
///
/// # Errors
/// A rustls error if the identity's key is not usable.
pub fn client_tls_config(
    identity: &NodeIdentity,
    tickets: Option<Arc<TicketStore>>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = crypto_provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerCertVerifier::new(provider)))
        .with_client_auth_cert(vec![identity.certificate()], identity.private_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    // The server name is only the ticket store's key (see `ticket_name`): sending it would
    // tell an observer which address and pinned key the client had in mind.
    config.enable_sni = false;
    match tickets {
        Some(store) => {
            config.resumption = Resumption::store(store);
            config.enable_early_data = true;
        }
        None => config.resumption = Resumption::disabled(),
    }
    Ok(config)
}

/// The name a client keeps the tickets of a link to `address` under, and connects with:
/// the address, and the key the client pinned for the link, if any. Tickets a node issued
/// are offered to that address (and pinned key) only. The name never leaves the client (no
/// server name is sent); it is a DNS name only because rustls keys its store by one.
pub fn ticket_name(address: SocketAddr, pinned: Option<&PeerKey>) -> String {
    let mut name = String::with_capacity(128);
    if let Some(key) = pinned {
        // Two labels of 32 hex digits: a DNS label holds at most 63 characters.
        name.push('k');
        hex_into(&mut name, &key.0[..16]);
        name.push_str(".k");
        hex_into(&mut name, &key.0[16..]);
        name.push('.');
    }
    name.push('a');
    match address.ip() {
        std::net::IpAddr::V4(ip) => hex_into(&mut name, &ip.octets()),
        std::net::IpAddr::V6(ip) => hex_into(&mut name, &ip.octets()),
    }
    name.push_str(&format!("p{}.peergraph", address.port()));
    name
}

fn hex_into(name: &mut String, bytes: &[u8]) {
    use std::fmt::Write;
    for byte in bytes {
        let _ = write!(name, "{byte:02x}");
    }
}

/// The TLS 1.3 tickets a node's client keeps, by [`ticket_name`], with the key each name's
/// node proved on its last checked link: rustls' in-memory cache, bounded to
/// [`TICKET_NAMES`] names of up to eight tickets each, and a map as bounded. The
/// connecting side sends CONNECT as 0-RTT data only under a name whose known key passes
/// its checks ([`key_of`](Self::key_of)), and forgets a name whose node failed them. TLS 1.2
/// sessions are never kept (TLS 1.2 is not offered).
#[derive(Debug)]
pub struct TicketStore {
    cache: ClientSessionMemoryCache,
    keys: Mutex<KnownKeys>,
}

/// Names and the key each one's node proved, oldest first out past [`TICKET_NAMES`].
#[derive(Debug, Default)]
struct KnownKeys {
    keys: HashMap<String, PeerKey>,
    order: VecDeque<String>,
}

impl TicketStore {
    /// An empty store of at most [`TICKET_NAMES`] names.
    pub fn new() -> Arc<TicketStore> {
        Arc::new(TicketStore {
            // rustls sizes its cache in tickets, eight per name.
            cache: ClientSessionMemoryCache::new(TICKET_NAMES * 8),
            keys: Mutex::default(),
        })
    }

    /// Notes that the node reached under `name` proved `key` and passed the connecting
    /// side's checks.
    ///
    /// When the name had no key, or another one, the tickets kept under it are dropped
    /// first: they may come from the node that held the address before, and a CONNECT
    /// judged on this key must not go to that node as 0-RTT data. Call it as the handshake
    /// completes, before this link's own ticket can arrive (half a round trip later).
    pub fn remember(&self, name: &str, key: PeerKey) {
        let changed = {
            let mut known = self
                .keys
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            match known.keys.get_mut(name) {
                Some(known_key) if *known_key == key => false,
                Some(known_key) => {
                    *known_key = key;
                    true
                }
                None => {
                    if known.keys.len() >= TICKET_NAMES {
                        if let Some(oldest) = known.order.pop_front() {
                            known.keys.remove(&oldest);
                        }
                    }
                    known.keys.insert(name.to_owned(), key);
                    known.order.push_back(name.to_owned());
                    true
                }
            }
        };
        if changed {
            self.drop_tickets(name);
        }
    }

    /// The key the node under `name` proved on its last checked link, if any is known.
    pub fn key_of(&self, name: &str) -> Option<PeerKey> {
        let known = self
            .keys
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        known.keys.get(name).copied()
    }

    /// Drops every ticket kept under `name`, and its known key: the node reached there
    /// failed a check, so no CONNECT may go to it as 0-RTT data. Call it after closing the
    /// link, so no ticket of that link arrives afterwards. An invalid name holds nothing.
    pub fn forget(&self, name: &str) {
        {
            let mut known = self
                .keys
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            if known.keys.remove(name).is_some() {
                known.order.retain(|each| each != name);
            }
        }
        self.drop_tickets(name);
    }

    /// Takes every ticket kept under `name` out of the cache.
    fn drop_tickets(&self, name: &str) {
        let Ok(name) = ServerName::try_from(name.to_owned()) else {
            return;
        };
        while self.cache.take_tls13_ticket(&name).is_some() {}
    }
}

impl ClientSessionStore for TicketStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.cache.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.cache.kx_hint(server_name)
    }

    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.cache.insert_tls13_ticket(server_name, value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.cache.take_tls13_ticket(server_name)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> PeerKey {
        PeerKey([byte; 32])
    }

    #[test]
    fn ticket_names_are_dns_names_that_tell_addresses_ports_and_pins_apart() {
        let v4: SocketAddr = "127.0.0.1:4433".parse().expect("address");
        let other_port: SocketAddr = "127.0.0.1:4434".parse().expect("address");
        let v6: SocketAddr = "[2001:db8::1]:65535".parse().expect("address");
        let names = [
            ticket_name(v4, None),
            ticket_name(other_port, None),
            ticket_name(v6, None),
            ticket_name(v4, Some(&key(1))),
            ticket_name(v4, Some(&key(2))),
            ticket_name(v6, Some(&key(0xff))),
        ];
        for (index, name) in names.iter().enumerate() {
            assert!(
                ServerName::try_from(name.clone()).is_ok(),
                "not a DNS name: {name}"
            );
            assert!(
                names[index + 1..].iter().all(|other| other != name),
                "{name} twice"
            );
        }
        assert_eq!(ticket_name(v4, None), "a7f000001p4433.peergraph");
    }

    #[test]
    fn the_store_keeps_one_key_per_name_forgets_on_request_and_stays_bounded() {
        let store = TicketStore::new();
        store.remember("a.peergraph", key(1));
        store.remember("a.peergraph", key(2));
        assert_eq!(store.key_of("a.peergraph"), Some(key(2)));
        store.forget("a.peergraph");
        assert_eq!(store.key_of("a.peergraph"), None);
        store.forget("not a dns name");

        for index in 0..TICKET_NAMES + 10 {
            store.remember(&format!("n{index}.peergraph"), key(3));
        }
        let known = store.keys.lock().expect("lock");
        assert_eq!(known.keys.len(), TICKET_NAMES);
        assert_eq!(known.order.len(), TICKET_NAMES);
        assert!(
            !known.keys.contains_key("n0.peergraph"),
            "the oldest went first"
        );
        assert!(known
            .keys
            .contains_key(&format!("n{}.peergraph", TICKET_NAMES + 9)));
    }
}
