//! The CONNECT / WELCOME / REFUSE exchange on a new link, for both sides.
//!
//! These are plain async functions: the graph actor runs them as futures in its context,
//! bounded by the connect timeout, and decides with its own state what to answer.

use std::net::SocketAddr;
use std::time::Duration;

use peergraph_engine::graph_core::{judge_answer, Answer, HandshakeFailure};
use peergraph_engine::wire::{close_code, Connect, Message, RefuseReason};
use peergraph_engine::{PeerError, PeerKey, ResultCode};
use peergraph_transport::{
    membership_proof, peer_key_of, peer_public_key, verify_membership_proof, write_message,
    FrameReader, ProofRole, SERVER_NAME,
};

use crate::connection::LinkParts;
use crate::options::Membership;

/// A link whose TLS handshake is done and whose peer key is known.
pub(crate) struct Link {
    pub(crate) parts: LinkParts,
    pub(crate) peer_key: PeerKey,
    pub(crate) address: SocketAddr,
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
/// A handshake that fails after TLS closes the link with REFUSED, one that runs out of
/// time with HANDSHAKE_TIMEOUT.
///
/// # Errors
/// The reason for the CONNECTION_FAILED event: `PEER_E_CONNECTION_REFUSED`,
/// `PEER_E_CONNECTION_NOT_AUTHENTICATED`, `PEER_E_NOT_AUTHORIZED` or
/// `PEER_E_CONNECTION_FAILED`.
pub(crate) async fn connect(
    endpoint: quinn::Endpoint,
    address: SocketAddr,
    mut request: Connect,
    expected_key: Option<PeerKey>,
    membership: Membership,
    timeout: Duration,
) -> Result<Link, PeerError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let connecting = endpoint
        .connect(address, SERVER_NAME)
        .map_err(|error| failed(format_args!("cannot connect to {address}: {error}")))?;
    let connection = tokio::time::timeout_at(deadline, connecting)
        .await
        .map_err(|_elapsed| {
            HandshakeFailure::TimedOut.error(timeout, "no answer to the QUIC handshake")
        })?
        .map_err(|error| handshake_failure(&error, timeout))?;
    let Some(peer_key) = peer_public_key(&connection).map(|key| peer_key_of(&key)) else {
        connection.close(close_code::PROTOCOL_ERROR.into(), b"no peer key");
        return Err(PeerError::with_cause(
            ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED,
            "the node presented no public key",
        ));
    };
    let result = tokio::time::timeout_at(deadline, async {
        // The node we reached must show the pinned key, if any, and be on the allow-list
        // as the peer we asked for.
        membership.admission().check_reached(
            &peer_key,
            &request.target_peer_id,
            expected_key.as_ref(),
        )?;
        if let Some(secret) = &membership.secret {
            request.proof = membership_proof(
                &connection,
                secret,
                ProofRole::Connect,
                request.connection_id,
            )
            .ok_or_else(|| failed("no membership proof could be derived from the link"))?;
        }
        let (mut send, recv) = connection
            .open_bi()
            .await
            .map_err(|error| failed(format_args!("cannot open the control stream: {error}")))?;
        write_message(&mut send, &Message::Connect(request.clone()))
            .await
            .map_err(|error| failed(format_args!("cannot send CONNECT: {error}")))?;
        let mut reader = FrameReader::new(recv);
        let first = reader.read().await;
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
pub(crate) async fn accept(
    incoming: quinn::Incoming,
    timeouts: AcceptTimeouts,
) -> Option<(Link, Connect)> {
    let started = tokio::time::Instant::now();
    let deadline = started + timeouts.total;
    let tls_deadline = deadline.min(started + timeouts.tls);
    let connection = tokio::time::timeout_at(tls_deadline, incoming)
        .await
        .ok()?
        .ok()?;
    let Some(peer_key) = peer_public_key(&connection).map(|key| peer_key_of(&key)) else {
        connection.close(close_code::PROTOCOL_ERROR.into(), b"no peer key");
        return None;
    };
    let first_frame = tokio::time::timeout_at(deadline, async {
        let (send, recv) = connection.accept_bi().await.ok()?;
        let mut reader = FrameReader::new(recv);
        Some((send, reader.read().await, reader))
    })
    .await;
    match first_frame {
        Ok(Some((send, Ok(Some(Message::Connect(connect))), reader))) => {
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
