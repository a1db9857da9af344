//! The CONNECT / WELCOME / REFUSE exchange on a new link, for both sides.
//!
//! These are plain async functions: the graph actor runs them as futures in its context,
//! bounded by the connect timeout, and decides with its own state what to answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use peergraph_engine::graph_core::{judge_answer, Answer, HandshakeFailure};
use peergraph_engine::wire::{close_code, Connect, Message, RefuseReason};
use peergraph_engine::{PeerError, PeerKey, ResultCode};
use peergraph_transport::{
    client_config, membership_proof, peer_key_of, peer_public_key, resuming_client_config,
    ticket_name, verify_membership_proof, write_message, EndpointError, FrameReader, LinkOptions,
    NodeIdentity, ProofRole, ReadFrameError, TicketStore, SERVER_NAME,
};

use crate::connection::LinkParts;
use crate::options::Membership;

/// A link whose peer key is known: its TLS handshake is done, or (on the accepting side)
/// resumed and waiting for the client's Finished (`confirmation`).
pub(crate) struct Link {
    pub(crate) parts: LinkParts,
    pub(crate) peer_key: PeerKey,
    pub(crate) address: SocketAddr,
    /// On an accepted link whose CONNECT came before its handshake completed: when it does.
    /// `None` once the handshake is done.
    pub(crate) confirmation: Option<Confirmation>,
    /// What became of 0-RTT on the link.
    pub(crate) zero_rtt: ZeroRtt,
}

/// The rest of a resumed handshake whose CONNECT came as 0-RTT data: it must complete
/// (the client's Finished verified) by `by`, or the link is dropped unadmitted.
pub(crate) struct Confirmation {
    pub(crate) completed: quinn::ZeroRttAccepted,
    pub(crate) by: tokio::time::Instant,
}

/// What became of 0-RTT on a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ZeroRtt {
    /// No ticket for the node, or the graph sends no CONNECT early; on the accepting side,
    /// CONNECT came on a completed handshake.
    NotTried,
    /// CONNECT rode the first flight and the node took it; on the accepting side, CONNECT
    /// was read on a resumed handshake before it was seen complete.
    Accepted,
    /// The node refused the 0-RTT data (it no longer had the session); CONNECT went again
    /// once the handshake completed.
    Rejected,
}

/// How a graph's links go out: the client configuration (keeping the graph's tickets, when
/// it resumes) and whether CONNECT may ride the first flight.
#[derive(Clone)]
pub(crate) struct Dialer {
    config: quinn::ClientConfig,
    tickets: Option<Arc<TicketStore>>,
    /// Tickets are kept and the graph has no secret (its proof needs the completed
    /// handshake).
    early_connect: bool,
    /// Attempts whose 0-RTT data the other node refused.
    early_rejected: Arc<AtomicU64>,
}

impl Dialer {
    /// The dialer of a graph with `identity`, its link settings and `membership`.
    pub(crate) fn new(
        identity: &NodeIdentity,
        options: &LinkOptions,
        membership: &Membership,
    ) -> Result<Dialer, EndpointError> {
        if !options.zero_rtt {
            return Ok(Dialer {
                config: client_config(identity, options)?,
                tickets: None,
                early_connect: false,
                early_rejected: Arc::default(),
            });
        }
        let tickets = TicketStore::new();
        Ok(Dialer {
            config: resuming_client_config(identity, options, tickets.clone())?,
            tickets: Some(tickets),
            early_connect: membership.secret.is_none(),
            early_rejected: Arc::default(),
        })
    }

    /// How many attempts had their 0-RTT data refused so far.
    pub(crate) fn early_rejected(&self) -> u64 {
        self.early_rejected.load(Ordering::Relaxed)
    }

    /// The name a link to `address` (pinned to `pinned`, if any) connects with: its ticket
    /// name when tickets are kept.
    fn name(&self, address: SocketAddr, pinned: Option<&PeerKey>) -> String {
        match self.tickets {
            Some(_) => ticket_name(address, pinned),
            None => SERVER_NAME.to_owned(),
        }
    }

    /// Drops the tickets under `name`: the node reached there failed a check.
    fn forget(&self, name: &str) {
        if let Some(tickets) = &self.tickets {
            tickets.forget(name);
        }
    }

    /// Notes that the node reached under `name` proved `key` and passed the checks.
    fn remember(&self, name: &str, key: PeerKey) {
        if let Some(tickets) = &self.tickets {
            tickets.remember(name, key);
        }
    }

    /// Whether CONNECT for `request` may go as 0-RTT data under `name`: the graph sends
    /// CONNECT early, and the key the node under `name` last proved passes the checks a
    /// full handshake runs before CONNECT (pinned key, allow-list for the target peer id).
    fn may_connect_early(
        &self,
        name: &str,
        request: &Connect,
        expected_key: Option<&PeerKey>,
        membership: &Membership,
    ) -> bool {
        let known = self
            .tickets
            .as_ref()
            .and_then(|tickets| tickets.key_of(name));
        self.early_connect
            && known.is_some_and(|key| {
                membership
                    .admission()
                    .check_reached(&key, &request.target_peer_id, expected_key)
                    .is_ok()
            })
    }
}

/// How long a refusing node waits for the refused peer to close after reading REFUSE,
/// before it closes the link itself. REFUSE must be read before the close, or the peer
/// would only see a bare QUIC close.
const REFUSE_LINGER: Duration = Duration::from_secs(2);

/// PEER_E_CONNECTION_FAILED because of `cause`.
fn failed(cause: impl std::fmt::Display) -> PeerError {
    PeerError::with_cause(ResultCode::PEER_E_CONNECTION_FAILED, cause.to_string())
}

/// QUIC carries TLS alerts as transport error codes 0x100 to 0x1ff (RFC 9000, 20.1).
fn is_crypto(code: quinn::TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

/// Reads a TLS or QUIC failure during the handshake as the graph core's
/// [`HandshakeFailure`], whose code the CONNECTION_FAILED event reports.
fn handshake_failure(error: &quinn::ConnectionError, timeout: Duration) -> PeerError {
    let failure = match error {
        quinn::ConnectionError::TransportError(transport) if is_crypto(transport.code) => {
            HandshakeFailure::Crypto
        }
        quinn::ConnectionError::ConnectionClosed(close) if is_crypto(close.error_code) => {
            HandshakeFailure::Crypto
        }
        quinn::ConnectionError::ConnectionClosed(close)
            if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
        {
            HandshakeFailure::Refused
        }
        quinn::ConnectionError::TimedOut => HandshakeFailure::WentIdle,
        _ => HandshakeFailure::Failed,
    };
    failure.error(timeout, &error.to_string())
}

/// Opens a link to `address` and performs the connecting side's handshake within
/// `timeout`: TLS (the key the node presents must be `expected_key`, when given), then
/// CONNECT, then WELCOME (checked against what was asked) or REFUSE.
///
/// With a ticket for the address (and pinned key), whose node's last proved key passes the
/// checks below, CONNECT rides the first flight as 0-RTT data and WELCOME comes back with
/// the handshake: one round trip in all. The link is
/// returned only once the handshake has completed and the reached node's key passed the
/// same checks as on a full handshake; if the node refused the 0-RTT data, CONNECT goes
/// again on the completed handshake. A node that fails the key checks loses its tickets
/// here, so no CONNECT goes to it early again.
///
/// A handshake that fails after TLS closes the link with REFUSED, one that runs out of
/// time with HANDSHAKE_TIMEOUT.
///
/// # Errors
/// The reason for the CONNECTION_FAILED event: `PEER_E_CONNECTION_REFUSED`,
/// `PEER_E_CONNECTION_NOT_AUTHENTICATED`, `PEER_E_NOT_AUTHORIZED` or
/// `PEER_E_CONNECTION_FAILED`.
pub(crate) async fn connect(
    endpoint: quinn::Endpoint,
    dialer: Dialer,
    address: SocketAddr,
    mut request: Connect,
    expected_key: Option<PeerKey>,
    membership: Membership,
    timeout: Duration,
) -> Result<Link, PeerError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let name = dialer.name(address, expected_key.as_ref());
    let connecting = endpoint
        .connect_with(dialer.config.clone(), address, &name)
        .map_err(|error| failed(format_args!("cannot connect to {address}: {error}")))?;
    let no_answer = || HandshakeFailure::TimedOut.error(timeout, "no answer to the QUIC handshake");
    let complete = |connecting: quinn::Connecting| async move {
        tokio::time::timeout_at(deadline, connecting)
            .await
            .map_err(|_elapsed| no_answer())?
            .map_err(|error| handshake_failure(&error, timeout))
    };
    let early = dialer.may_connect_early(&name, &request, expected_key.as_ref(), &membership);
    let (connection, early) = match early {
        true => match connecting.into_0rtt() {
            Ok((connection, completed)) => (connection, Some(completed)),
            Err(connecting) => (complete(connecting).await?, None),
        },
        false => (complete(connecting).await?, None),
    };
    let mut zero_rtt = ZeroRtt::NotTried;
    let mut answered = None;
    if let Some(completed) = early {
        let Ok((opened, accepted)) =
            tokio::time::timeout_at(deadline, connect_early(&connection, &request, completed))
                .await
        else {
            connection.close(close_code::HANDSHAKE_TIMEOUT.into(), b"handshake timeout");
            return Err(no_answer());
        };
        if let Some(error) = connection.close_reason() {
            return Err(handshake_failure(&error, timeout));
        }
        if accepted {
            zero_rtt = ZeroRtt::Accepted;
            match opened {
                Ok(opened) => answered = Some(opened),
                Err(cause) => {
                    connection.close(close_code::REFUSED.into(), b"handshake failed");
                    return Err(failed(cause));
                }
            }
        } else {
            // The node no longer had the session: the handshake went on as a full one, and
            // the stream and CONNECT sent early were dropped. CONNECT goes again below.
            zero_rtt = ZeroRtt::Rejected;
            dialer.early_rejected.fetch_add(1, Ordering::Relaxed);
        }
    }
    let Some(peer_key) = peer_public_key(&connection).map(|key| peer_key_of(&key)) else {
        connection.close(close_code::PROTOCOL_ERROR.into(), b"no peer key");
        return Err(PeerError::with_cause(
            ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED,
            "the node presented no public key",
        ));
    };
    // The node we reached must show the pinned key, if any, and be on the allow-list as the
    // peer we asked for. One that does not keeps no ticket of ours: no CONNECT goes to it
    // as 0-RTT data again.
    if let Err(error) = membership.admission().check_reached(
        &peer_key,
        &request.target_peer_id,
        expected_key.as_ref(),
    ) {
        connection.close(close_code::REFUSED.into(), b"handshake failed");
        dialer.forget(&name);
        return Err(error);
    }
    dialer.remember(&name, peer_key);
    let result = tokio::time::timeout_at(deadline, async {
        let (send, reader, first) = match answered {
            Some(answered) => answered,
            None => {
                if let Some(secret) = &membership.secret {
                    request.proof = membership_proof(
                        &connection,
                        secret,
                        ProofRole::Connect,
                        request.connection_id,
                    )
                    .ok_or_else(|| failed("no membership proof could be derived from the link"))?;
                }
                send_connect(&connection, &request).await.map_err(failed)?
            }
        };
        let answer = match &first {
            Ok(Some(Message::Welcome(welcome))) => Answer::Welcome(welcome),
            Ok(Some(Message::Refuse(reason))) => Answer::Refuse(*reason),
            _ => Answer::Other,
        };
        let verify = |welcome: &peergraph_engine::wire::Welcome| {
            membership.secret.as_ref().is_some_and(|secret| {
                verify_membership_proof(
                    &connection,
                    secret,
                    ProofRole::Welcome,
                    request.connection_id,
                    &welcome.proof,
                )
            })
        };
        judge_answer(&request, answer, membership.secret.is_some(), verify)?;
        Ok((send, reader))
    })
    .await;
    match result {
        Ok(Ok((send, reader))) => Ok(Link {
            parts: LinkParts {
                connection,
                send,
                reader,
            },
            peer_key,
            address,
            confirmation: None,
            zero_rtt,
        }),
        Ok(Err(error)) => {
            connection.close(close_code::REFUSED.into(), b"handshake failed");
            Err(error)
        }
        Err(_elapsed) => {
            connection.close(close_code::HANDSHAKE_TIMEOUT.into(), b"handshake timeout");
            Err(HandshakeFailure::TimedOut.error(timeout, "no WELCOME"))
        }
    }
}

/// The control stream, the CONNECT sent on it, and the first frame read back.
type Answered = (
    quinn::SendStream,
    FrameReader,
    Result<Option<Message>, ReadFrameError>,
);

/// Opens the control stream, sends `request` and reads the answer's first frame.
async fn send_connect(
    connection: &quinn::Connection,
    request: &Connect,
) -> Result<Answered, String> {
    let (mut send, recv) = connection
        .open_bi()
        .await
        .map_err(|error| format!("cannot open the control stream: {error}"))?;
    write_message(&mut send, &Message::Connect(request.clone()))
        .await
        .map_err(|error| format!("cannot send CONNECT: {error}"))?;
    let mut reader = FrameReader::new(recv);
    let first = reader.read().await;
    Ok((send, reader, first))
}

/// CONNECT as 0-RTT data on a resumed link, and the answer read back, then the end of the
/// handshake: whether the node took the 0-RTT data. When it did not, quinn fails the
/// stream's reads and writes as the handshake completes, so this ends then too.
async fn connect_early(
    connection: &quinn::Connection,
    request: &Connect,
    completed: quinn::ZeroRttAccepted,
) -> (Result<Answered, String>, bool) {
    let opened = send_connect(connection, request).await;
    (opened, completed.await)
}

/// The bounds on the accepting side's handshake.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AcceptTimeouts {
    /// QUIC and TLS: until the peer has proved it holds a key.
    pub(crate) tls: Duration,
    /// The whole handshake, CONNECT included.
    pub(crate) total: Duration,
}

/// The accepting side's first half: TLS within `timeouts.tls` (a peer that has not proved
/// a key holds its slot no longer), then the control stream and its CONNECT, all within
/// `timeouts.total`. A link that sends anything but CONNECT first is closed with
/// PROTOCOL_ERROR; one that is too slow after TLS, with HANDSHAKE_TIMEOUT. One too slow
/// in TLS is dropped, which closes it at the QUIC level.
///
/// When `early` and the client resumed a session (its key known from the session at its
/// first flight), CONNECT is read as soon as it comes, 0-RTT data included, and the link is
/// returned with a [`Confirmation`]: its handshake must still complete within
/// `timeouts.tls`, and the graph admits it only then.
pub(crate) async fn accept(
    incoming: quinn::Incoming,
    timeouts: AcceptTimeouts,
    early: bool,
) -> Option<(Link, Connect)> {
    let started = tokio::time::Instant::now();
    let deadline = started + timeouts.total;
    let tls_deadline = deadline.min(started + timeouts.tls);
    let connecting = incoming.accept().ok()?;
    // On the accepting side this always succeeds: the link may answer before the client's
    // Finished (0.5-RTT data), and `completed` resolves when the handshake ends.
    let (connection, completed) = connecting.into_0rtt().ok()?;
    let mut completed = Some(completed);
    // A resumed handshake carries the key from its first flight; a full one only once it
    // completes.
    let resumed_key = early.then(|| peer_public_key(&connection)).flatten();
    let public_key = match resumed_key {
        Some(key) => Some(key),
        None => {
            tokio::time::timeout_at(tls_deadline, completed.take()?)
                .await
                .ok()?;
            if connection.close_reason().is_some() {
                return None;
            }
            peer_public_key(&connection)
        }
    };
    let Some(peer_key) = public_key.map(|key| peer_key_of(&key)) else {
        connection.close(close_code::PROTOCOL_ERROR.into(), b"no peer key");
        return None;
    };
    let read = async {
        let (send, recv) = connection.accept_bi().await.ok()?;
        let mut reader = FrameReader::new(recv);
        Some((send, reader.read().await, reader))
    };
    // CONNECT read on a resumed handshake before it was seen complete: 0-RTT data, as far
    // as this side can tell (or a CONNECT that came in the same datagram as the Finished).
    let read_early = std::cell::Cell::new(false);
    let first_frame = tokio::time::timeout_at(deadline, async {
        let Some(mut pending) = completed.take() else {
            return read.await.map(|first| (first, None));
        };
        // A resumed handshake: CONNECT may come before it completes (0-RTT data), but it
        // must still complete by the TLS deadline, CONNECT or not.
        tokio::pin!(read);
        let finished = {
            let handshake = tokio::time::timeout_at(tls_deadline, &mut pending);
            tokio::pin!(handshake);
            tokio::select! {
                biased;
                first = &mut read => Err(first),
                finished = &mut handshake => Ok(finished.is_ok()),
            }
        };
        match finished {
            Err(first) => {
                let first = first?;
                read_early.set(true);
                // CONNECT is here; the handshake may have completed with it (a CONNECT sent
                // right behind the client's Finished, not as 0-RTT data).
                match futures_util::FutureExt::now_or_never(&mut pending) {
                    None => Some((
                        first,
                        Some(Confirmation {
                            completed: pending,
                            by: tls_deadline,
                        }),
                    )),
                    Some(_) if connection.close_reason().is_none() => Some((first, None)),
                    Some(_) => None,
                }
            }
            Ok(true) if connection.close_reason().is_none() => {
                read.await.map(|first| (first, None))
            }
            Ok(_) => None,
        }
    })
    .await;
    let first_frame = first_frame.map(|first| {
        first.map(|((send, first, reader), confirmation)| (send, first, reader, confirmation))
    });
    match first_frame {
        Ok(Some((send, Ok(Some(Message::Connect(connect))), reader, confirmation))) => {
            let address = connection.remote_address();
            Some((
                Link {
                    parts: LinkParts {
                        connection,
                        send,
                        reader,
                    },
                    peer_key,
                    address,
                    confirmation,
                    zero_rtt: match read_early.get() {
                        true => ZeroRtt::Accepted,
                        false => ZeroRtt::NotTried,
                    },
                },
                connect,
            ))
        }
        Ok(Some(_)) => {
            connection.close(close_code::PROTOCOL_ERROR.into(), b"expected CONNECT");
            None
        }
        Ok(None) => None,
        Err(_elapsed) => {
            connection.close(close_code::HANDSHAKE_TIMEOUT.into(), b"handshake timeout");
            None
        }
    }
}

/// Sends REFUSE, lets the peer read it and close, then makes sure the link is closed.
pub(crate) async fn refuse(mut link: Link, reason: RefuseReason) {
    let connection = link.parts.connection.clone();
    if write_message(&mut link.parts.send, &Message::Refuse(reason))
        .await
        .is_ok()
    {
        let _ = link.parts.send.finish();
        let _ = tokio::time::timeout(REFUSE_LINGER, connection.closed()).await;
    }
    connection.close(close_code::REFUSED.into(), b"refused");
}
