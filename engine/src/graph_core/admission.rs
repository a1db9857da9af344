//! Admission of a link: every rule that accepts or refuses an incoming CONNECT, and the
//! code an outgoing attempt ends with (docs/PROTOCOL.md §3.1-§3.3, §3.6).
//!
//! The checks that need the link itself (the membership proof is bound to the TLS session)
//! come in as their outcome: the driver verifies a proof when the rules ask for it, so
//! the order of the checks, and so what a refused node learns, is decided here.

use std::collections::HashMap;
use std::sync::Arc;

use crate::ids::{GraphId, PeerId, PeerKey};
use crate::result::{PeerError, ResultCode};
use crate::wire::{Connect, RefuseReason, Welcome, PROTOCOL_VERSION};

/// The keys a graph admits, and the peer id each may use. Without a list every key is
/// admitted (the TLS handshake still verifies that the node holds it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList(Arc<HashMap<PeerKey, PeerId>>);

impl AllowList {
    /// A list holding `entries`.
    pub fn new(entries: HashMap<PeerKey, PeerId>) -> Self {
        AllowList(Arc::new(entries))
    }

    /// The same list with `key` allowed as `peer_id` (replacing what `key` had).
    #[must_use]
    pub fn with(&self, key: PeerKey, peer_id: PeerId) -> Self {
        let mut entries = (*self.0).clone();
        entries.insert(key, peer_id);
        AllowList::new(entries)
    }

    /// The peer id `key` may use, if it is listed.
    pub fn peer_id_of(&self, key: &PeerKey) -> Option<&PeerId> {
        self.0.get(key)
    }

    /// Whether a node with `key` claiming `peer_id` may be linked with: `NotAuthorized`
    /// for a key off the list, `KeyMismatch` for a listed key used with another peer id.
    ///
    /// # Errors
    /// The reason to refuse, as above.
    pub fn check(&self, key: &PeerKey, peer_id: &PeerId) -> Result<(), RefuseReason> {
        match self.0.get(key) {
            None => Err(RefuseReason::NotAuthorized),
            Some(listed) if listed != peer_id => Err(RefuseReason::KeyMismatch),
            Some(_) => Ok(()),
        }
    }
}

/// Who may be linked with: a shared secret proved on every link, an allow-list of keys,
/// both or neither.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Every link must carry a valid membership proof (the graph has a secret).
    pub proof_required: bool,
    /// The admitted keys; `None` admits every key.
    pub allowed: Option<AllowList>,
}

impl Admission {
    /// Whether the node reached with `key` may be linked with as `peer_id` (the allow-list
    /// rule alone; used for both directions).
    ///
    /// # Errors
    /// `NotAuthorized` or `KeyMismatch`, as [`AllowList::check`].
    pub fn check_key(&self, key: &PeerKey, peer_id: &PeerId) -> Result<(), RefuseReason> {
        self.allowed
            .as_ref()
            .map_or(Ok(()), |list| list.check(key, peer_id))
    }

    /// Whether the node an outgoing attempt reached may be linked with, judged on the key
    /// its TLS certificate `presented` before CONNECT is sent: it must be the key the
    /// application pinned for this attempt (`expected`, from a ticket), if any, then be on
    /// the allow-list as `target`, the peer asked for.
    ///
    /// # Errors
    /// `PEER_E_CONNECTION_NOT_AUTHENTICATED` for a key other than the pinned one ("node
    /// key mismatch: expected ..., the node presented ...") or one the allow-list holds for
    /// another peer; `PEER_E_NOT_AUTHORIZED` for a key off the allow-list.
    pub fn check_reached(
        &self,
        presented: &PeerKey,
        target: &PeerId,
        expected: Option<&PeerKey>,
    ) -> Result<(), PeerError> {
        if let Some(expected) = expected.filter(|expected| *expected != presented) {
            return Err(PeerError::with_cause(
                ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED,
                format!(
                    "node key mismatch: expected {expected} (node {}), the node presented \
                     {presented} (node {})",
                    expected.node_id(),
                    presented.node_id()
                ),
            ));
        }
        self.check_key(presented, target).map_err(|reason| {
            let cause = match reason {
                RefuseReason::KeyMismatch => format!(
                    "this node's allow-list holds key {presented} for another peer than {target}"
                ),
                _ => format!(
                    "node key not allowed: the node presented {presented} (node {}), which \
                     this node's allow-list does not hold",
                    presented.node_id()
                ),
            };
            PeerError::with_cause(refusal_code(reason), cause)
        })
    }
}

/// What a node knows about an incoming CONNECT when it judges it: the frame, the key the
/// TLS handshake verified, and the node's own state.
#[derive(Debug)]
pub struct IncomingConnect<'a> {
    /// The CONNECT frame.
    pub connect: &'a Connect,
    /// The connecting node's verified key.
    pub peer_key: PeerKey,
    /// Whether this node takes direct connections (an application registered for
    /// DIRECT_CONNECTION events).
    pub accepts_direct: bool,
}

/// The graph-side facts a CONNECT is judged against.
#[derive(Debug)]
pub(crate) struct Judge<'a> {
    pub(crate) graph_id: &'a GraphId,
    pub(crate) peer_id: &'a PeerId,
    pub(crate) admission: &'a Admission,
    /// Connections and outgoing attempts at or above the graph's limit.
    pub(crate) graph_full: bool,
    /// Live links with the connecting node at or above the per-node limit.
    pub(crate) node_full: bool,
    /// The connection id is taken by a connection or an outgoing attempt.
    pub(crate) id_taken: bool,
}

impl Judge<'_> {
    /// Decides a CONNECT, in the order docs/PROTOCOL.md §3.3 gives: identity and
    /// membership before anything about this node's state is revealed. `verify_proof` is
    /// asked only when the graph requires a proof and every earlier check passed.
    pub(crate) fn decide(
        &self,
        incoming: &IncomingConnect<'_>,
        verify_proof: impl FnOnce(&Connect) -> bool,
    ) -> Result<(), RefuseReason> {
        let connect = incoming.connect;
        if connect.version != PROTOCOL_VERSION {
            return Err(RefuseReason::UnsupportedVersion);
        }
        if &connect.graph_id != self.graph_id {
            return Err(RefuseReason::WrongGraph);
        }
        if &connect.target_peer_id != self.peer_id {
            return Err(RefuseReason::WrongPeer);
        }
        self.admission
            .check_key(&incoming.peer_key, &connect.source_peer_id)?;
        if self.admission.proof_required && !verify_proof(connect) {
            return Err(RefuseReason::NotAuthorized);
        }
        if !connect.direct {
            // Neighbor connections come with records and flooding; until then a node has
            // no room for neighbors.
            return Err(RefuseReason::Busy);
        }
        if !incoming.accepts_direct {
            return Err(RefuseReason::DirectConnectionDisallowed);
        }
        if self.graph_full || self.node_full {
            return Err(RefuseReason::LimitReached);
        }
        if self.id_taken {
            return Err(RefuseReason::DuplicateConnection);
        }
        Ok(())
    }
}

/// The CONNECTION_FAILED reason for a REFUSE: the reference's reasons mean the node would
/// not take the connection; the protocol's own mean it is not the node that was asked for.
pub fn refusal_code(reason: RefuseReason) -> ResultCode {
    match reason {
        RefuseReason::Busy
        | RefuseReason::AlreadyConnected
        | RefuseReason::DuplicateConnection
        | RefuseReason::DirectConnectionDisallowed
        | RefuseReason::LimitReached => ResultCode::PEER_E_CONNECTION_REFUSED,
        RefuseReason::WrongGraph
        | RefuseReason::WrongPeer
        | RefuseReason::UnsupportedVersion
        | RefuseReason::KeyMismatch => ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED,
        RefuseReason::NotAuthorized => ResultCode::PEER_E_NOT_AUTHORIZED,
    }
}

/// The CONNECTION_FAILED reason for a REFUSE of our `request`, with what the refusal
/// means as its cause (the code is [`refusal_code`]'s).
pub fn refusal_error(reason: RefuseReason, request: &Connect) -> PeerError {
    let cause = match reason {
        RefuseReason::Busy => "the node is busy".to_owned(),
        RefuseReason::AlreadyConnected => "the node is already connected to this one".to_owned(),
        RefuseReason::DuplicateConnection => {
            format!("the node already has connection {}", request.connection_id)
        }
        RefuseReason::DirectConnectionDisallowed => {
            "the node takes no direct connections (nothing there is registered for \
             DIRECT_CONNECTION events)"
                .to_owned()
        }
        RefuseReason::LimitReached => "the node is at its connection limit".to_owned(),
        RefuseReason::WrongGraph => format!(
            "graph id differs: the node is not in graph {}",
            request.graph_id
        ),
        RefuseReason::WrongPeer => format!(
            "peer id mismatch: the node there is not {}",
            request.target_peer_id
        ),
        RefuseReason::UnsupportedVersion => format!(
            "the node does not speak protocol version {}",
            request.version
        ),
        RefuseReason::KeyMismatch => format!(
            "the node's allow-list holds another key for {}",
            request.source_peer_id
        ),
        // The node does not say which rule refused: a proof, or the key.
        RefuseReason::NotAuthorized if request.proof.is_empty() => {
            "the node admits only the keys on its allow-list, or members that prove a \
             graph secret this node does not have"
                .to_owned()
        }
        RefuseReason::NotAuthorized => "membership proof failed: the graph secrets differ, \
                                        or the node's allow-list does not hold this node's key"
            .to_owned(),
    };
    PeerError::with_cause(refusal_code(reason), cause)
}

/// What becomes of an incoming QUIC connection before any of its handshake runs
/// ([`GraphCore::incoming_started`](super::GraphCore::incoming_started)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeAdmission {
    /// Take a handshake slot and run the handshake (TLS, then CONNECT).
    Accept,
    /// Answer with a QUIC Retry and keep nothing: the client comes back with a token that
    /// proves it receives at its address. A spoofed source never does, so it costs this
    /// node one packet and no slot.
    Retry,
    /// Refuse at the QUIC level (CONNECTION_REFUSED): the connecting node sees
    /// PEER_E_CONNECTION_REFUSED.
    Refuse,
}

/// How an outgoing handshake failed below CONNECT/WELCOME, as the driver saw it on its
/// QUIC stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// TLS failed: a certificate or key did not verify (QUIC crypto errors 0x100-0x1ff,
    /// sent or received).
    Crypto,
    /// The node refused the link at the QUIC level (CONNECTION_REFUSED: it has too many
    /// handshakes going).
    Refused,
    /// No answer within the connect timeout.
    TimedOut,
    /// The QUIC handshake went idle: nothing came from the node for the link's idle
    /// timeout, before the connect timeout ran out.
    WentIdle,
    /// Anything else: unreachable, reset, the stream failed, an unexpected frame.
    Failed,
}

impl HandshakeFailure {
    /// The CONNECTION_FAILED reason the application sees, with what happened as its
    /// cause; `timeout` is the connect timeout (for [`HandshakeFailure::TimedOut`]) and
    /// `detail` what the QUIC stack said.
    pub fn error(self, timeout: std::time::Duration, detail: &str) -> PeerError {
        let cause = match self {
            HandshakeFailure::Crypto => {
                format!("TLS failed: the node's certificate or key did not verify ({detail})")
            }
            HandshakeFailure::Refused => {
                format!("the node refused at the QUIC level: too many handshakes ({detail})")
            }
            HandshakeFailure::TimedOut => format!("no answer within {timeout:?}"),
            HandshakeFailure::WentIdle => {
                format!("the QUIC handshake went idle: nothing from the node within the idle timeout ({detail})")
            }
            HandshakeFailure::Failed => format!("the link failed: {detail}"),
        };
        PeerError::with_cause(self.code(), cause)
    }

    /// The CONNECTION_FAILED reason the application sees.
    pub fn code(self) -> ResultCode {
        match self {
            HandshakeFailure::Crypto => ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED,
            HandshakeFailure::Refused => ResultCode::PEER_E_CONNECTION_REFUSED,
            HandshakeFailure::TimedOut | HandshakeFailure::WentIdle | HandshakeFailure::Failed => {
                ResultCode::PEER_E_CONNECTION_FAILED
            }
        }
    }
}

/// The connecting side's reading of the first frame it gets back.
#[derive(Debug)]
pub enum Answer<'a> {
    /// WELCOME.
    Welcome(&'a Welcome),
    /// REFUSE with its reason.
    Refuse(RefuseReason),
    /// Any other frame, or the stream ended.
    Other,
}

/// Judges the answer to our CONNECT `request`: a WELCOME must echo the connection id, the
/// graph and the peer asked for, and carry a valid proof when the graph requires one
/// (`verify_proof`, asked only then).
///
/// # Errors
/// The CONNECTION_FAILED reason, with its cause: `PEER_E_CONNECTION_NOT_AUTHENTICATED`
/// for a WELCOME from another node or graph, `PEER_E_NOT_AUTHORIZED` for a bad proof, the
/// refusal's code for REFUSE ([`refusal_error`]), `PEER_E_CONNECTION_FAILED` for
/// anything else.
pub fn judge_answer(
    request: &Connect,
    answer: Answer<'_>,
    proof_required: bool,
    verify_proof: impl FnOnce(&Welcome) -> bool,
) -> Result<(), PeerError> {
    let not_authenticated = |cause: String| {
        PeerError::with_cause(ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED, cause)
    };
    match answer {
        Answer::Welcome(welcome) if welcome.peer_id != request.target_peer_id => {
            Err(not_authenticated(format!(
                "peer id mismatch: asked for {}, the node presented {}",
                request.target_peer_id, welcome.peer_id
            )))
        }
        Answer::Welcome(welcome) if welcome.graph_id != request.graph_id => {
            Err(not_authenticated(format!(
                "graph id differs: asked for {}, the node is in {}",
                request.graph_id, welcome.graph_id
            )))
        }
        Answer::Welcome(welcome) if welcome.connection_id != request.connection_id => {
            Err(not_authenticated(format!(
                "the WELCOME names connection {}, not {}",
                welcome.connection_id, request.connection_id
            )))
        }
        Answer::Welcome(welcome) => {
            if proof_required && !verify_proof(welcome) {
                return Err(PeerError::with_cause(
                    ResultCode::PEER_E_NOT_AUTHORIZED,
                    "membership proof failed: the graph secrets differ",
                ));
            }
            Ok(())
        }
        Answer::Refuse(reason) => Err(refusal_error(reason, request)),
        Answer::Other => Err(PeerError::with_cause(
            ResultCode::PEER_E_CONNECTION_FAILED,
            "the node answered CONNECT with neither WELCOME nor REFUSE",
        )),
    }
}
