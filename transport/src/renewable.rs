//! An endpoint that can be renewed on its own socket, to give back the memory quinn keeps.
//!
//! quinn keeps the tables of an endpoint (its connection slab, the connection-id maps and
//! the per-connection channels) at the size of the most connections it ever held: about
//! 0.5 KiB per connection of the peak, reused but never shrunk. A node that once held
//! 10,000 links keeps about 5 MB after they have all gone. [`RenewableEndpoint::renew`]
//! replaces an idle endpoint with a fresh one on the same UDP socket (same address, same
//! port), so the old one's tables are freed. It empties the server's TLS session cache
//! too ([`ServerSessions`]), the other thing a peak of links leaves behind (about 1 KiB a
//! session, up to [`SERVER_SESSIONS`](crate::SERVER_SESSIONS)): a client holding a ticket
//! from before makes a full handshake, which brings it a new one.
//!
//! ```text
//!                 ┌── Turn (reading: false) ──▶ old quinn::Endpoint (no connections; ends)
//!  UDP socket ────┤
//!                 └── Turn (reading: true)  ──▶ new quinn::Endpoint
//! ```
//!
//! Each endpoint reads the socket through a [`Turn`]. Renewing first ends the old turn
//! (under the lock its reads take, so it can never read again), then starts a new endpoint
//! on a new turn. Datagrams that arrive in between wait in the kernel's buffer. A
//! connection attempt the old endpoint had read but not yet handed out is dropped without
//! an answer (quinn's `ignore`): the client sends its Initial again after a probe timeout
//! and the new endpoint takes it.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, UdpPoller};

use crate::endpoint::{
    bound_socket, client_config, endpoint_config, server_config_with, EndpointError, LinkOptions,
};
use crate::identity::NodeIdentity;
use crate::tls::ServerSessions;

/// A QUIC endpoint on a UDP socket that outlives it, so that it can be renewed to give back
/// the memory quinn keeps at the size of its peak ([`renew`](Self::renew)).
///
/// Each endpoint reads the socket in turn: renewing ends the old endpoint's turn (it never
/// reads again) and starts a new endpoint on the same socket, so the address stays and
/// datagrams that arrive meanwhile wait in the kernel's buffer. A connection attempt the
/// old endpoint had read but not handed out is dropped without an answer; the client sends
/// it again after a probe timeout and the new endpoint takes it.
pub struct RenewableEndpoint {
    endpoint: quinn::Endpoint,
    turn: Arc<Turn>,
    socket: Arc<dyn AsyncUdpSocket>,
    server: Option<quinn::ServerConfig>,
    /// The server's TLS sessions, when it resumes: emptied at each renewal.
    sessions: Option<Arc<ServerSessions>>,
    client: quinn::ClientConfig,
    runtime: Arc<dyn Runtime>,
    renewals: u64,
}

impl fmt::Debug for RenewableEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenewableEndpoint")
            .field("local_addr", &self.socket.local_addr().ok())
            .field("listening", &self.server.is_some())
            .field("renewals", &self.renewals)
            .finish()
    }
}

impl RenewableEndpoint {
    /// Binds a socket at `address` (with [`SOCKET_BUFFER_BYTES`](crate::SOCKET_BUFFER_BYTES)
    /// each way) and starts an endpoint on it that connects out with `identity` and, when
    /// `listen` is true, accepts incoming links too. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`EndpointError::Bind`] when the address cannot be bound, or a configuration error.
    pub fn bind(
        address: SocketAddr,
        identity: &NodeIdentity,
        options: &LinkOptions,
        listen: bool,
    ) -> Result<Self, EndpointError> {
        let sessions = (listen && options.zero_rtt).then(ServerSessions::new);
        let server = if listen {
            Some(server_config_with(identity, options, sessions.clone())?)
        } else {
            None
        };
        let client = client_config(identity, options)?;
        let runtime = options.drivers.runtime()?;
        let socket = runtime.wrap_udp_socket(bound_socket(address)?)?;
        let (endpoint, turn) = start(&socket, server.clone(), client.clone(), runtime.clone())?;
        Ok(RenewableEndpoint {
            endpoint,
            turn,
            socket,
            server,
            sessions,
            client,
            runtime,
            renewals: 0,
        })
    }

    /// The current endpoint. Clones of it are cheap; a clone kept across a
    /// [`renew`](Self::renew) keeps the old endpoint's memory alive until it is dropped.
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// The address the socket is bound to.
    ///
    /// # Errors
    /// The socket's error, if the system cannot tell.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// How many times the endpoint has been renewed.
    pub fn renewals(&self) -> u64 {
        self.renewals
    }

    /// Replaces the endpoint with a fresh one on the same socket and returns the old one,
    /// which no longer reads the socket. Meant for an endpoint with no connections: any
    /// connection the old endpoint still holds can send but never receives again, so it
    /// dies of its idle timeout. The old endpoint's memory is freed once the returned
    /// handle and every other clone of it are dropped. The server's TLS sessions are
    /// dropped too: tickets issued before resume nothing.
    ///
    /// # Errors
    /// [`EndpointError::Bind`] if the new endpoint cannot start (the old one then keeps
    /// reading, as before).
    pub fn renew(&mut self) -> Result<quinn::Endpoint, EndpointError> {
        let was_reading = self.turn.end();
        // Before the new endpoint reads anything: no handshake resumes a session of the
        // old one's after this.
        if let Some(sessions) = &self.sessions {
            sessions.clear();
        }
        match start(
            &self.socket,
            self.server.clone(),
            self.client.clone(),
            self.runtime.clone(),
        ) {
            Ok((endpoint, turn)) => {
                self.turn = turn;
                self.renewals += 1;
                Ok(std::mem::replace(&mut self.endpoint, endpoint))
            }
            Err(error) => {
                if was_reading {
                    self.turn.resume();
                }
                Err(error)
            }
        }
    }
}

/// Starts an endpoint reading `socket` through a new [`Turn`].
fn start(
    socket: &Arc<dyn AsyncUdpSocket>,
    server: Option<quinn::ServerConfig>,
    client: quinn::ClientConfig,
    runtime: Arc<dyn Runtime>,
) -> Result<(quinn::Endpoint, Arc<Turn>), EndpointError> {
    let turn = Arc::new(Turn {
        socket: socket.clone(),
        state: Mutex::new(TurnState {
            reading: true,
            parked: None,
        }),
    });
    let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
        endpoint_config(),
        server,
        turn.clone(),
        runtime,
    )?;
    endpoint.set_default_client_config(client);
    Ok((endpoint, turn))
}

/// One endpoint's turn on a shared socket: it sends through the socket, and reads it
/// only until its turn ends.
struct Turn {
    socket: Arc<dyn AsyncUdpSocket>,
    /// Held while reading, so that [`Turn::end`] waits for a read in progress and no read
    /// starts after it.
    state: Mutex<TurnState>,
}

struct TurnState {
    reading: bool,
    /// The endpoint driver that found the turn ended, woken if it resumes.
    parked: Option<Waker>,
}

impl Turn {
    fn state(&self) -> std::sync::MutexGuard<'_, TurnState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends the turn: no read happens after this returns. Returns whether it was reading.
    fn end(&self) -> bool {
        std::mem::replace(&mut self.state().reading, false)
    }

    /// Undoes [`end`](Self::end), when no endpoint could take over, and wakes the driver if
    /// it found the turn ended meanwhile.
    fn resume(&self) {
        let parked = {
            let mut state = self.state();
            state.reading = true;
            state.parked.take()
        };
        if let Some(waker) = parked {
            waker.wake();
        }
    }
}

impl fmt::Debug for Turn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Turn")
            .field("socket", &self.socket)
            .field("reading", &self.state().reading)
            .finish()
    }
}

impl AsyncUdpSocket for Turn {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.socket.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.socket.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut state = self.state();
        if state.reading {
            self.socket.poll_recv(cx, bufs, meta)
        } else {
            // Woken only by `resume`: otherwise the endpoint ends when its last handle is
            // dropped.
            state.parked = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.socket.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.socket.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.socket.may_fragment()
    }
}
