//! QUIC endpoints: the transport settings of a link and the endpoint a graph binds.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use thiserror::Error;

use crate::drivers::Drivers;
use crate::identity::NodeIdentity;
use crate::tls::{client_tls_config, server_tls_config, ServerSessions, TicketStore};

/// A server name for links that keep no tickets (a node's endpoints connect with
/// [`client_config`], which resumes nothing). Certificates are not checked against names
/// (identity is the key), and a node's client sends none; a node that resumes connects
/// with a name of [`ticket_name`](crate::ticket_name) instead.
pub const SERVER_NAME: &str = "peergraph";

/// The default idle timeout: a link with no traffic (keep-alives included) for this long is
/// considered gone. Ten seconds detects a vanished peer quickly on a LAN while tolerating
/// a few lost keep-alives.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest idle timeout a link may be given.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_millis(100);

/// The longest idle timeout a link may be given: one day. A link silent for longer is
/// gone for any practical purpose, and QUIC's own limit is far above it.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// The congestion controller of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Congestion {
    /// CUBIC (quinn's default): the usual choice on wired networks.
    #[default]
    Cubic,
    /// NewReno.
    NewReno,
    /// BBR: models bandwidth and round-trip time instead of reacting to each loss, so it
    /// keeps its rate on links with random (non-congestion) loss, such as radio links.
    Bbr,
}

/// Transport settings shared by every link of one graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkOptions {
    /// How long a silent link lives; keep-alives go out at a third of it.
    pub idle_timeout: Duration,
    /// The congestion controller.
    pub congestion: Congestion,
    /// Where quinn runs the endpoint's tasks.
    pub drivers: Drivers,
    /// Whether the endpoint's server hands out single-use TLS 1.3 tickets and takes 0-RTT
    /// data from clients that resume with one (`peergraph_transport::tls` says how that
    /// is kept safe). On by default; off, every link is a full handshake.
    pub zero_rtt: bool,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            congestion: Congestion::default(),
            drivers: Drivers::default(),
            zero_rtt: true,
        }
    }
}

/// Why an endpoint could not be made.
#[derive(Debug, Error)]
pub enum EndpointError {
    /// The TLS configuration could not be built from the identity.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The socket could not be bound.
    #[error("cannot bind: {0}")]
    Bind(#[from] io::Error),
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Setting(String),
}

/// The QUIC transport settings of a link.
///
/// One bidirectional stream per link (the control stream, opened by the connecting side),
/// no unidirectional streams and no datagrams: anything more a peer tries is refused by
/// QUIC flow control. Stream windows are quinn's defaults, so a benchmark against raw quinn
/// with default settings compares like with like; the connection window starts at
/// `INITIAL_RECEIVE_WINDOW` and the graph sets it to the link's share of its receive
/// budget (at most the stream window) once the link is adopted.
///
/// # Errors
/// [`EndpointError::Setting`] for an idle timeout outside
/// [`MIN_IDLE_TIMEOUT`]..=[`MAX_IDLE_TIMEOUT`].
pub fn transport_config(
    options: &LinkOptions,
    accepts_streams: bool,
) -> Result<TransportConfig, EndpointError> {
    if !(MIN_IDLE_TIMEOUT..=MAX_IDLE_TIMEOUT).contains(&options.idle_timeout) {
        return Err(EndpointError::Setting(format!(
            "idle timeout {:?} is outside {:?}..={:?}",
            options.idle_timeout, MIN_IDLE_TIMEOUT, MAX_IDLE_TIMEOUT
        )));
    }
    let idle = IdleTimeout::try_from(options.idle_timeout)
        .map_err(|_| EndpointError::Setting("idle timeout too large".into()))?;
    let mut config = TransportConfig::default();
    config
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(options.idle_timeout / 3))
        .max_concurrent_bidi_streams(VarInt::from_u32(u32::from(accepts_streams)))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .datagram_receive_buffer_size(None)
        // The connection's window starts at the smallest share of a graph's receive
        // budget; the graph raises it to the link's share once the link is adopted. Credit
        // once granted cannot be taken back, so a link may not start with more.
        .receive_window(VarInt::from_u32(INITIAL_RECEIVE_WINDOW));
    let mut mtu_discovery = quinn::MtuDiscoveryConfig::default();
    mtu_discovery.minimum_change(MTU_SEARCH_STEP);
    config.mtu_discovery_config(Some(mtu_discovery));
    match options.congestion {
        Congestion::Cubic => {}
        Congestion::NewReno => {
            config.congestion_controller_factory(Arc::new(
                quinn::congestion::NewRenoConfig::default(),
            ));
        }
        Congestion::Bbr => {
            config.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
        }
    }
    Ok(config)
}

/// The smallest change of the path MTU that quinn's search for it probes (its
/// `MtuDiscoveryConfig::minimum_change`): 127 bytes, against quinn's 20.
///
/// quinn searches between the 1200 bytes every QUIC path carries and its upper bound of
/// 1452 (what a 1500-byte Ethernet path carries over IPv6), bisecting until a step would be
/// smaller than this. With 20 that is four probes, each a full-size datagram the peer
/// acknowledges: on a link that lives for a handshake, CONNECT, WELCOME and a close, eight
/// of its 30 datagrams, and about 15% of the CPU time of an open and close (measured in
/// `benches/RESULTS.md`, open_close_cycles). With 127 the first step is the upper bound
/// itself: one probe on the common path, which reaches 1452 at once; where that probe is
/// lost, one more at 1325, then the search ends. A path whose MTU lies between the two
/// (some tunnels) runs at 1325 bytes where quinn's search would find up to 126 more.
pub const MTU_SEARCH_STEP: u16 = 127;

/// The connection-level receive window a link starts with: 16 KiB, the smallest share of a
/// graph's receive budget (`peergraph_engine::graph_core::MIN_LINK_WINDOW`), enough for
/// the handshake's CONNECT and WELCOME.
pub const INITIAL_RECEIVE_WINDOW: u32 = 16 * 1024;

const _: () =
    assert!(INITIAL_RECEIVE_WINDOW as u64 == peergraph_engine::graph_core::MIN_LINK_WINDOW);

/// The quinn server configuration of a node: with [`LinkOptions::zero_rtt`], keeping its
/// sessions in a cache of its own.
///
/// # Errors
/// [`EndpointError::Tls`] or [`EndpointError::Setting`].
pub fn server_config(
    identity: &NodeIdentity,
    options: &LinkOptions,
) -> Result<quinn::ServerConfig, EndpointError> {
    let sessions = options.zero_rtt.then(ServerSessions::new);
    server_config_with(identity, options, sessions)
}

/// The quinn server configuration of a node that keeps its sessions in `sessions` (none:
/// no resumption, whatever [`LinkOptions::zero_rtt`] says).
///
/// # Errors
/// [`EndpointError::Tls`] or [`EndpointError::Setting`].
pub fn server_config_with(
    identity: &NodeIdentity,
    options: &LinkOptions,
    sessions: Option<Arc<ServerSessions>>,
) -> Result<quinn::ServerConfig, EndpointError> {
    let tls = QuicServerConfig::try_from(server_tls_config(identity, sessions)?)
        .map_err(|error| EndpointError::Setting(error.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(tls));
    config.transport_config(Arc::new(transport_config(options, true)?));
    Ok(config)
}

/// The quinn client configuration of a node that resumes nothing: the default client of
/// the endpoints [`bind_endpoint`] makes.
///
/// # Errors
/// [`EndpointError::Tls`] or [`EndpointError::Setting`].
pub fn client_config(
    identity: &NodeIdentity,
    options: &LinkOptions,
) -> Result<quinn::ClientConfig, EndpointError> {
    quinn_client(client_tls_config(identity, None)?, options)
}

/// The quinn client configuration of a node that keeps its tickets in `tickets` and offers
/// them, with 0-RTT data, when it connects with a [`ticket_name`](crate::ticket_name).
///
/// # Errors
/// [`EndpointError::Tls`] or [`EndpointError::Setting`].
pub fn resuming_client_config(
    identity: &NodeIdentity,
    options: &LinkOptions,
    tickets: Arc<TicketStore>,
) -> Result<quinn::ClientConfig, EndpointError> {
    quinn_client(client_tls_config(identity, Some(tickets))?, options)
}

fn quinn_client(
    tls: rustls::ClientConfig,
    options: &LinkOptions,
) -> Result<quinn::ClientConfig, EndpointError> {
    let tls = QuicClientConfig::try_from(tls)
        .map_err(|error| EndpointError::Setting(error.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(tls));
    config.transport_config(Arc::new(transport_config(options, false)?));
    Ok(config)
}

/// The UDP socket buffer size asked for, each way: 2 MiB. The kernel default (about
/// 200 KiB) overflows when a burst arrives for many links at once (a node with thousands of
/// connections, or a fast transfer), and every datagram dropped there is a loss QUIC must
/// recover from. The kernel caps it at `net.core.rmem_max` / `wmem_max`; asking is best
/// effort.
pub const SOCKET_BUFFER_BYTES: usize = 2 * 1024 * 1024;

/// Binds an endpoint at `address` that connects out with `identity` and, when `listen` is
/// true, accepts incoming links too. Must be called inside a tokio runtime: the endpoint's
/// I/O runs on it.
///
/// # Errors
/// [`EndpointError::Bind`] when the address cannot be bound, or a configuration error.
pub fn bind_endpoint(
    address: SocketAddr,
    identity: &NodeIdentity,
    options: &LinkOptions,
    listen: bool,
) -> Result<quinn::Endpoint, EndpointError> {
    let server = if listen {
        Some(server_config(identity, options)?)
    } else {
        None
    };
    let socket = bound_socket(address)?;
    let runtime = options.drivers.runtime()?;
    let mut endpoint = quinn::Endpoint::new(endpoint_config(), server, socket, runtime)?;
    endpoint.set_default_client_config(client_config(identity, options)?);
    Ok(endpoint)
}

/// The length of the connection ids an endpoint gives its links: 8 random bytes.
const CONNECTION_ID_BYTES: usize = 8;

/// The endpoint-wide settings of every endpoint the transport binds: quinn's defaults but
/// for the connection-id generator, which draws all [`CONNECTION_ID_BYTES`] at random.
///
/// quinn's default generator draws 3 random bytes and fills the other 5 with a keyed hash
/// of them, so an endpoint has 2^24 ids to choose from. quinn checks the ids of a link
/// against those in use, but not the one it puts in a Retry, which the client then
/// addresses its next Initial to. An endpoint holding 2,000 links (about 10,000 ids) that
/// sends 1,500 Retries gave one a live link's id about every other run: the client's
/// Initial went to that link, which dropped it, and the handshake went idle. With 2^64
/// ids the chance is nil at any load. The cost: a packet to an unknown id can no longer
/// be told forged by its id alone, so the endpoint answers it with a stateless reset, at
/// most one per `min_reset_interval` (20 ms) and always smaller than what came in.
pub(crate) fn endpoint_config() -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    config.cid_generator(connection_id_generator);
    config
}

fn connection_id_generator() -> Box<dyn quinn::ConnectionIdGenerator> {
    Box::new(quinn_proto::RandomConnectionIdGenerator::new(
        CONNECTION_ID_BYTES,
    ))
}

/// A UDP socket bound at `address`, with [`SOCKET_BUFFER_BYTES`] asked for each way.
/// When the kernel grants less for receiving, says so once per process (a warning in the
/// log): bursts for many links at once then overflow it, and every datagram it drops is a
/// loss QUIC must detect and resend.
pub(crate) fn bound_socket(address: SocketAddr) -> io::Result<std::net::UdpSocket> {
    static SMALL_BUFFER_TOLD: std::sync::Once = std::sync::Once::new();
    let socket = std::net::UdpSocket::bind(address)?;
    if let Ok(state) = quinn::udp::UdpSocketState::new((&socket).into()) {
        let _ = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER_BYTES);
        let _ = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER_BYTES);
        match state.recv_buffer_size((&socket).into()) {
            Ok(granted) if granted < SOCKET_BUFFER_BYTES => SMALL_BUFFER_TOLD.call_once(|| {
                tracing::warn!(
                    granted,
                    asked = SOCKET_BUFFER_BYTES,
                    "UDP receive buffer smaller than asked: the kernel caps it at \
                     net.core.rmem_max; raise that for nodes with many links"
                );
            }),
            _ => {}
        }
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::connection_id_generator;

    /// quinn's default generator has 2^24 ids: 20,000 draws repeat one about a dozen times
    /// (the birthday bound), and a Retry given a live link's id stalls its handshake. The
    /// endpoint's generator must not repeat at that scale.
    #[test]
    fn connection_ids_do_not_repeat_across_twenty_thousand_draws() {
        let mut generator = connection_id_generator();
        assert_eq!(generator.cid_len(), super::CONNECTION_ID_BYTES);
        let mut seen = HashSet::new();
        for draw in 0..20_000 {
            let id = generator.generate_cid();
            assert_eq!(id.len(), super::CONNECTION_ID_BYTES);
            assert!(seen.insert(id), "draw {draw} repeated an id");
        }
    }
}
