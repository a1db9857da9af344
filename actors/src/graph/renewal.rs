//! The graph's QUIC endpoints: the listening one and its accept stream, the client-only
//! ones bound on first use, and their renewal once the graph is idle after a peak (quinn
//! keeps an endpoint's tables at the size of its peak and never shrinks them).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use actix::prelude::*;
use peergraph_engine::graph_core::HandshakeAdmission;
use peergraph_engine::{PeerError, ResultCode};
use peergraph_transport::{bind_endpoint, RenewableEndpoint};

use super::GraphActor;
use crate::handshake;
use crate::metrics::Refusal;

/// How long closing a graph waits for its endpoint to go idle, so that peers receive the
/// LEAVING close code rather than timing out.
const ENDPOINT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

impl GraphActor {
    /// The graph's endpoints: the listening one and the client-only ones it has bound.
    pub(super) fn endpoints(&self) -> Vec<quinn::Endpoint> {
        [
            self.listener.as_ref().map(RenewableEndpoint::endpoint),
            self.client_v4.as_ref(),
            self.client_v6.as_ref(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// QUIC connections the graph's endpoints hold, closing and draining ones included.
    pub(super) fn quic_connections(&self) -> usize {
        // Called on every new link (see `note_links`), so it does not collect `endpoints()`.
        [
            self.listener.as_ref().map(RenewableEndpoint::endpoint),
            self.client_v4.as_ref(),
            self.client_v6.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(quinn::Endpoint::open_connections)
        .sum()
    }

    /// Called when a link or handshake starts: keeps [`GraphActor::link_peak`].
    pub(super) fn note_links(&mut self) {
        let links = self.core.link_count();
        // quinn's own count also holds links still draining or being refused: its tables
        // grow to whichever is more.
        self.link_peak = self.link_peak.max(links).max(self.quic_connections());
    }

    /// Called when a link or handshake has gone: once the graph is idle after a peak of
    /// [`GraphOptions::renew_endpoints_after`](crate::GraphOptions::renew_endpoints_after) links, waits (bounded by the idle and close
    /// timeouts) for quinn to free the last QUIC connections, then renews the endpoints.
    pub(super) fn renew_when_idle(&mut self, ctx: &mut Context<Self>) {
        if self.core.is_closed()
            || self.renewal_waiting
            || self.link_peak < self.options.renew_endpoints_after
            || !self.core.is_idle()
        {
            return;
        }
        self.renewal_waiting = true;
        let endpoints = self.endpoints();
        let bound = self.options.idle_timeout + self.options.close_timeout;
        ctx.spawn(
            async move {
                let all_idle = async {
                    for endpoint in &endpoints {
                        endpoint.wait_idle().await;
                    }
                };
                let _ = tokio::time::timeout(bound, all_idle).await;
            }
            .into_actor(self)
            .map(|(), act, ctx| act.renewal_wait_ended(ctx)),
        );
    }

    /// The end of a renewal's wait: renews the endpoints, or waits again if the graph is
    /// idle but quinn still holds a connection. A link that started and ended during the
    /// wait could not arm a wait of its own (there is one at a time), and quinn may still
    /// hold it, perhaps on a client endpoint bound meanwhile that the wait did not cover.
    /// The new wait covers the endpoints as they are now; each wait ends once they hold no
    /// connection, or after its bound, so this does not spin.
    pub(super) fn renewal_wait_ended(&mut self, ctx: &mut Context<Self>) {
        self.renewal_waiting = false;
        if self.core.is_idle() && self.quic_connections() > 0 {
            self.renew_when_idle(ctx);
        } else {
            self.renew_endpoints(ctx);
        }
    }

    /// Renews the endpoints if the graph is still idle and quinn holds no connection: the
    /// client-only ones are dropped (bound again on next use), the listening one is renewed
    /// on its socket and its accept stream moved to the new endpoint.
    pub(super) fn renew_endpoints(&mut self, ctx: &mut Context<Self>) {
        if self.core.is_closed() || !self.core.is_idle() || self.quic_connections() > 0 {
            // Tried again when the graph is next idle: the peak is kept.
            return;
        }
        if let Some(listener) = &mut self.listener {
            match listener.renew() {
                Ok(old) => {
                    if let Some(accepting) = self.accepting.take() {
                        ctx.cancel_future(accepting);
                    }
                    drop(old);
                    self.renewals += 1;
                    self.accepting =
                        Some(accept_from(listener.endpoint().clone(), self.renewals, ctx));
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot renew the listening endpoint");
                    return;
                }
            }
        } else {
            self.renewals += 1;
        }
        self.client_v4 = None;
        self.client_v6 = None;
        self.link_peak = 0;
        tracing::debug!(renewals = self.renewals, "endpoints renewed");
    }

    /// The endpoint to connect to `address` from: the listening one when the address
    /// family matches, else a client-only endpoint bound on first use.
    pub(super) fn endpoint_for(
        &mut self,
        address: &SocketAddr,
    ) -> Result<quinn::Endpoint, PeerError> {
        if let Some(listener) = &self.listener {
            if listener
                .local_addr()
                .map(|local| local.is_ipv4() == address.is_ipv4())
                .unwrap_or(false)
            {
                return Ok(listener.endpoint().clone());
            }
        }
        let link_options = self.link_options();
        let (slot, bind) = if address.is_ipv4() {
            (
                &mut self.client_v4,
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            )
        } else {
            (
                &mut self.client_v6,
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
            )
        };
        if let Some(endpoint) = slot {
            return Ok(endpoint.clone());
        }
        let endpoint = bind_endpoint(bind, &self.identity, &link_options, false)
            .map_err(|_| PeerError::new(ResultCode::E_FAIL))?;
        *slot = Some(endpoint.clone());
        Ok(endpoint)
    }
}

impl StreamHandler<Accepted> for GraphActor {
    fn handle(&mut self, accepted: Accepted, ctx: &mut Self::Context) {
        let Accepted {
            generation,
            incoming,
        } = accepted;
        if generation != self.renewals {
            // From an endpoint renewed since (actix may still deliver an item of a stream
            // it has been told to cancel): that endpoint no longer reads, so a handshake
            // on it would hang. Dropped without an answer, the attempt is sent again by
            // the client and the current endpoint takes it.
            incoming.ignore();
            return;
        }
        // The core decides (docs/PROTOCOL.md §3.1); this only carries it out.
        let source = incoming.remote_address().ip();
        match self
            .core
            .incoming_started(source, incoming.remote_address_validated())
        {
            HandshakeAdmission::Accept => {}
            HandshakeAdmission::Retry => {
                self.tally.handshakes_retried += 1;
                // Stateless: quinn sends the Retry and forgets the connection. `retry`
                // fails only for an address already validated, which the core never sends
                // here; refusing is the answer that keeps nothing either.
                if let Err(error) = incoming.retry() {
                    error.into_incoming().refuse();
                }
                return;
            }
            HandshakeAdmission::Refuse => {
                // Refused for its load; a closed graph refuses everything, uncounted.
                if !self.core.is_closed() {
                    self.tally.refused(Refusal::TooManyHandshakes);
                }
                incoming.refuse();
                return;
            }
        }
        self.note_links();
        let timeouts = handshake::AcceptTimeouts {
            tls: self.options.tls_handshake_timeout,
            total: self.options.connect_timeout,
        };
        // A graph with a secret takes CONNECT only on a completed handshake: its proof is
        // bound to it.
        let early = self.options.zero_rtt && self.options.membership.secret.is_none();
        ctx.spawn(
            handshake::accept(incoming, timeouts, early)
                .into_actor(self)
                .map(move |accepted, act, ctx| {
                    act.on_accepted(source, accepted, ctx);
                    act.renew_when_idle(ctx);
                }),
        );
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

/// Hands the incoming connections of `endpoint` to the graph actor, as a stream.
/// Each incoming connection is tagged with `generation`, the renewal count when the stream
/// started, so that one from a renewed endpoint is told apart.
pub(super) fn accept_from(
    endpoint: quinn::Endpoint,
    generation: u64,
    ctx: &mut Context<GraphActor>,
) -> SpawnHandle {
    ctx.add_stream(futures_util::stream::unfold(
        endpoint,
        move |endpoint| async move {
            let incoming = endpoint.accept().await?;
            Some((
                Accepted {
                    generation,
                    incoming,
                },
                endpoint,
            ))
        },
    ))
}

/// An incoming connection from the accept stream of endpoint generation `generation`.
struct Accepted {
    generation: u64,
    incoming: quinn::Incoming,
}

/// Waits (bounded) until closed endpoints are idle, so peers hear the close code.
pub(super) async fn drain(endpoints: Vec<quinn::Endpoint>) -> Result<(), PeerError> {
    for endpoint in endpoints {
        let _ = tokio::time::timeout(ENDPOINT_DRAIN_TIMEOUT, endpoint.wait_idle()).await;
    }
    Ok(())
}
