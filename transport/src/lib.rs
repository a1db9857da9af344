//! The QUIC transport of peergraph: node identity, mutual TLS 1.3 with key verification,
//! endpoint and link settings, and frames over QUIC streams.
//!
//! Nothing here knows about graphs or actors; the `peergraph` crate drives it.
//!
//! # Layout
//! - `identity`: [`NodeIdentity`] (key pair, self-signed certificate, node id).
//! - `tls`: [`PeerCertVerifier`] and the rustls configurations of both sides.
//! - `endpoint`: [`LinkOptions`], quinn configurations, [`bind_endpoint`].
//! - `renewable`: [`RenewableEndpoint`], an endpoint renewed on its own socket.
//! - `framed`: [`FrameReader`], [`write_message`], [`DataFrame`].
//! - `membership`: [`GraphSecret`] and the TLS-bound membership proofs.

mod drivers;
mod endpoint;
mod framed;
mod identity;
mod membership;
mod renewable;
mod tls;

pub use crate::drivers::Drivers;
pub use crate::endpoint::{
    bind_endpoint, client_config, resuming_client_config, server_config, server_config_with,
    transport_config, Congestion, EndpointError, LinkOptions, DEFAULT_IDLE_TIMEOUT,
    MAX_IDLE_TIMEOUT, MIN_IDLE_TIMEOUT, MTU_SEARCH_STEP, SERVER_NAME, SOCKET_BUFFER_BYTES,
};
pub use crate::framed::{write_message, DataFrame, FrameReader, ReadFrameError};
pub use crate::identity::{
    node_id_of, peer_key_of, random_nonzero_u64, IdentityError, NodeIdentity, CERTIFICATE_NAME,
};
pub use crate::membership::{
    membership_proof, verify_membership_proof, GraphSecret, ProofRole, MEMBERSHIP_EXPORTER_LABEL,
    MIN_SECRET_LEN,
};
pub use crate::renewable::RenewableEndpoint;
pub use crate::tls::{
    client_tls_config, crypto_provider, peer_public_key, server_tls_config, ticket_name,
    PeerCertVerifier, ServerSessions, TicketStore, SERVER_SESSIONS, TICKETS_PER_HANDSHAKE,
    TICKET_NAMES,
};
pub use quinn;
