//! Addresses as the user writes them and as a ticket lists them.
//!
//! `open PEER_ID ADDR` and `--listen ADDR` take an IP socket address (`127.0.0.1:4000`,
//! `[::1]:4000`) or a host name and port (`localhost:4000`), resolved when it is used
//! with the system's resolver, bounded by [`RESOLVE_TIMEOUT`]. A name that does not
//! resolve is answered with PEER_E_INVALID_ADDRESS and what the resolver said.
//!
//! A node bound to an unspecified address (`0.0.0.0:4000`, `[::]:4000`) cannot hand that
//! address out: its ticket lists instead the address this machine reaches other hosts
//! from (the one its default route uses), then the loopback address, each with the bound
//! port.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::time::Duration;

use peergraph::{PeerError, ResultCode, MAX_TICKET_ADDRESSES};

/// How long resolving a host name may take: the system resolver retries a lost query
/// after 5 s, so a name that needs more than that is better reported than waited for.
pub(crate) const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest host name (RFC 1035: 253 characters written out).
const MAX_HOST_LEN: usize = 253;

/// Where to connect or listen: an IP socket address, or a host name to resolve and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// An IP address and port.
    Socket(SocketAddr),
    /// A host name and port, resolved when used.
    Name { host: String, port: u16 },
}

impl FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Ok(address) = text.parse::<SocketAddr>() {
            return Ok(Target::Socket(address));
        }
        let malformed = || {
            format!(
                "`{text}` is not an address: HOST:PORT such as 127.0.0.1:5000, [::1]:5000 or \
                 localhost:5000"
            )
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(malformed)?;
        let port: u16 = port.parse().map_err(|_| malformed())?;
        // An IPv6 address needs its brackets; any other colon is no host name's.
        let name_like = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
        if host.is_empty() || host.len() > MAX_HOST_LEN || !host.chars().all(name_like) {
            return Err(malformed());
        }
        Ok(Target::Name {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Socket(address) => write!(f, "{address}"),
            Target::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl Target {
    /// The socket addresses to try, in order: the address itself, or what the name
    /// resolves to, IPv4 first (a node listening at `127.0.0.1` is the common case, and
    /// an attempt at an address nobody listens at costs the whole connect timeout), at
    /// most [`MAX_TICKET_ADDRESSES`].
    ///
    /// # Errors
    /// `PEER_E_INVALID_ADDRESS`, with the resolver's answer as the cause: the name does
    /// not resolve, resolves to nothing, or the resolver took over [`RESOLVE_TIMEOUT`].
    pub(crate) async fn resolve(&self) -> Result<Vec<SocketAddr>, PeerError> {
        let (host, port) = match self {
            Target::Socket(address) => return Ok(vec![*address]),
            Target::Name { host, port } => (host.as_str(), *port),
        };
        let invalid =
            |cause: String| PeerError::with_cause(ResultCode::PEER_E_INVALID_ADDRESS, cause);
        let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| {
                invalid(format!(
                    "cannot resolve {host}: no answer within {RESOLVE_TIMEOUT:?}"
                ))
            })?
            .map_err(|error| invalid(format!("cannot resolve {host}: {error}")))?;
        let mut addresses: Vec<SocketAddr> = Vec::new();
        // The resolver's list is short, but bounded here all the same.
        for address in found.take(4 * MAX_TICKET_ADDRESSES) {
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
        addresses.sort_by_key(SocketAddr::is_ipv6);
        addresses.truncate(MAX_TICKET_ADDRESSES);
        if addresses.is_empty() {
            return Err(invalid(format!("{host} resolves to no address")));
        }
        Ok(addresses)
    }
}

/// The addresses a ticket lists for a node bound at `bound`: each concrete address as it
/// is; for an unspecified one, the address the default route leaves from, then loopback,
/// with the bound port. At most [`MAX_TICKET_ADDRESSES`].
pub(crate) fn ticket_addresses(bound: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut addresses = Vec::new();
    for address in bound {
        let candidates = if address.ip().is_unspecified() {
            let (outbound, loopback) = if address.is_ipv4() {
                (outbound_ip(true), IpAddr::V4(Ipv4Addr::LOCALHOST))
            } else {
                (outbound_ip(false), IpAddr::V6(Ipv6Addr::LOCALHOST))
            };
            outbound.into_iter().chain([loopback]).collect()
        } else {
            vec![address.ip()]
        };
        for ip in candidates {
            let address = SocketAddr::new(ip, address.port());
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
    }
    addresses.truncate(MAX_TICKET_ADDRESSES);
    addresses
}

/// The local IP the system would send from to reach another network: a UDP socket
/// "connected" to a documentation address (RFC 5737, RFC 3849) picks its route and source
/// without sending anything. `None` without a route (an offline machine).
fn outbound_ip(v4: bool) -> Option<IpAddr> {
    let (local, remote): (SocketAddr, SocketAddr) = if v4 {
        (
            (Ipv4Addr::UNSPECIFIED, 0).into(),
            (Ipv4Addr::new(192, 0, 2, 1), 9).into(),
        )
    } else {
        (
            (Ipv6Addr::UNSPECIFIED, 0).into(),
            (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 9).into(),
        )
    };
    let socket = UdpSocket::bind(local).ok()?;
    socket.connect(remote).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_socket_addresses_or_names_with_ports() {
        let socket = |text: &str| Target::Socket(text.parse().expect("address"));
        assert_eq!("127.0.0.1:5000".parse(), Ok(socket("127.0.0.1:5000")));
        assert_eq!("[::1]:5000".parse(), Ok(socket("[::1]:5000")));
        assert_eq!(
            "localhost:4000".parse(),
            Ok(Target::Name {
                host: "localhost".into(),
                port: 4000
            })
        );
        assert_eq!(
            "node-1.example.org:1"
                .parse::<Target>()
                .map(|t| t.to_string()),
            Ok("node-1.example.org:1".to_owned())
        );
        for bad in [
            "localhost",
            "localhost:",
            ":4000",
            "localhost:65536",
            "localhost:port",
            "::1:4000",
            "a b:4000",
            "pg1abc",
        ] {
            let message = bad.parse::<Target>().expect_err(bad);
            assert!(message.contains("is not an address"), "{message}");
        }
        let long = format!("{}:1", "a".repeat(MAX_HOST_LEN + 1));
        assert!(long.parse::<Target>().is_err());
    }

    #[tokio::test]
    async fn localhost_resolves_and_a_bad_name_says_why() {
        let local = Target::Name {
            host: "localhost".into(),
            port: 4000,
        };
        let addresses = local.resolve().await.expect("localhost resolves");
        assert!(addresses
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 4000));
        // IPv4 first.
        assert!(addresses[0].is_ipv4() || addresses.iter().all(SocketAddr::is_ipv6));
        // `.invalid` never resolves (RFC 2606).
        let nowhere = Target::Name {
            host: "nowhere.invalid".into(),
            port: 1,
        };
        let error = nowhere.resolve().await.expect_err("does not resolve");
        assert_eq!(error.code(), ResultCode::PEER_E_INVALID_ADDRESS);
        assert!(
            error.to_string().contains("cannot resolve nowhere.invalid"),
            "{error}"
        );
    }

    #[test]
    fn a_ticket_lists_concrete_addresses_for_an_unspecified_bind() {
        let bound: SocketAddr = "127.0.0.1:4000".parse().expect("address");
        assert_eq!(ticket_addresses(&[bound]), vec![bound]);
        let any: SocketAddr = "0.0.0.0:4000".parse().expect("address");
        let listed = ticket_addresses(&[any]);
        assert!(!listed.is_empty());
        assert!(listed
            .iter()
            .all(|a| a.port() == 4000 && !a.ip().is_unspecified() && a.is_ipv4()));
        assert_eq!(
            listed.last(),
            Some(&"127.0.0.1:4000".parse().expect("address"))
        );
    }
}
