//! The handlers of the API's messages: each checks what only the driver knows (the
//! engine is started, an endpoint binds), asks the graph core for the rest, and carries
//! out its decision.

use std::net::SocketAddr;

use actix::prelude::*;
use peergraph_engine::wire::DisconnectReason;
use peergraph_engine::{
    ConnectionId, ConnectionInfo, EventFilter, GraphStatus, NodeInfo, PeerError, ResultCode,
};
use peergraph_transport::{random_nonzero_u64, RenewableEndpoint};
use tokio::sync::oneshot;

use super::renewal::{accept_from, drain};
use super::{
    send_many_now, send_now, CloseAnswer, CloseDirectConnection, CloseGraph, ConnectionStats,
    EnumConnections, GetConnectionStats, GetCounters, GetMetrics, GetNodeInfo, GetStatus,
    GraphActor, GraphCounters, Listen, OpenDirectConnection, RegisterEvent, RegisterEventRecipient,
    Release, SendData, SendDataMany, StartClose, UnregisterEvent,
};
use crate::connection::{Close, CloseReply};
use crate::handshake;
use crate::metrics::{Current, GraphMetrics};
use crate::table::ConnectionEntry;

impl Handler<Listen> for GraphActor {
    type Result = Result<SocketAddr, PeerError>;

    fn handle(&mut self, message: Listen, ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        self.core.check_listen()?;
        let listener =
            RenewableEndpoint::bind(message.address, &self.identity, &self.link_options(), true)
                .map_err(|error| {
                    tracing::debug!(%error, address = %message.address, "cannot listen");
                    PeerError::with_cause(
                        ResultCode::PEER_E_INVALID_ADDRESS,
                        format!("cannot listen at {}: {error}", message.address),
                    )
                })?;
        let local = listener
            .local_addr()
            .map_err(|error| PeerError::with_cause(ResultCode::PEER_E_INVALID_ADDRESS, error))?;
        self.accepting = Some(accept_from(listener.endpoint().clone(), self.renewals, ctx));
        self.listener = Some(listener);
        self.core.listening_started();
        self.publish_events();
        Ok(local)
    }
}

impl Handler<OpenDirectConnection> for GraphActor {
    type Result = Result<ConnectionId, PeerError>;

    fn handle(&mut self, message: OpenDirectConnection, ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        let OpenDirectConnection {
            peer_id,
            address,
            expected_key,
        } = message;
        self.core
            .check_open(&peer_id, &address, &self.listen_addresses())?;
        let endpoint = self.endpoint_for(&address)?;
        let dialer = self.dialer()?;
        let request = self
            .core
            .start_outgoing(peer_id, address, random_nonzero_u64);
        let connection_id = request.connection_id;
        let membership = self.options.membership.clone();
        let timeout = self.options.connect_timeout;
        let handshake = handshake::connect(
            endpoint,
            dialer,
            address,
            request,
            expected_key,
            membership,
            timeout,
        );
        self.start_outgoing(connection_id, handshake, ctx);
        Ok(connection_id)
    }
}

impl Handler<SendData> for GraphActor {
    type Result = ResponseFuture<Result<(), PeerError>>;

    fn handle(&mut self, message: SendData, _ctx: &mut Self::Context) -> Self::Result {
        let SendData {
            connection_id,
            data_type,
            data,
        } = message;
        let waiting = self
            .ready()
            .and_then(|()| send_now(&self.table, connection_id, data_type, data));
        Box::pin(async move {
            match waiting? {
                None => Ok(()),
                Some((outbox, data)) => outbox.send_data(data_type, data).await,
            }
        })
    }
}

impl Handler<SendDataMany> for GraphActor {
    type Result = ResponseFuture<Result<(), PeerError>>;

    fn handle(&mut self, message: SendDataMany, _ctx: &mut Self::Context) -> Self::Result {
        let SendDataMany {
            connection_id,
            data_type,
            data,
        } = message;
        // What fits is queued here, and the rest keeps its place in line, before the next
        // message is handled: a SendData sent after this message goes after the batch.
        let pending = self
            .ready()
            .and_then(|()| send_many_now(&self.table, connection_id, data_type, data))
            .and_then(|(outbox, items)| outbox.start_all(items));
        Box::pin(async move {
            match pending? {
                None => Ok(()),
                Some(pending) => pending.finish().await,
            }
        })
    }
}

impl GraphActor {
    /// Starts the close of direct connection `id` (docs/PROTOCOL.md §3.4): answers at once
    /// where the documented codes say so, otherwise the core takes the entry out of the
    /// table (a second close of the id now finds nothing) and the close goes to the
    /// connection actor, which answers on `reply` once it is gone.
    fn start_close(&mut self, id: ConnectionId, reply: CloseReply) {
        let entry = match self.take_for_close(id) {
            Ok(entry) => entry,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        // DISCONNECT is queued here, behind everything SendData accepted, rather than by
        // the connection actor once Close reaches it: the writer runs next, ahead of the
        // actor and of the caller. The actor's machine asks for it too and finds it
        // queued; if the writer is gone, the actor's ask fails and the machine answers.
        // This relies on the actor running on this arbiter (`run_link` starts it here): the
        // Close is in its mailbox before it can run again, and actix handles the mailbox
        // before the reader, so the machine knows of the close before it can read the
        // peer's answer (read first, the answer would look like the peer closing first).
        let _ = entry
            .outbox
            .disconnect(DisconnectReason::AppDisconnect, false);
        // One Close per entry taken out: bounded by the table, like ConnectionEnded.
        entry.actor.do_send(Close { reply });
    }

    /// The entry of direct connection `id`, taken out of the table for its close, or the
    /// code the close is answered with at once.
    fn take_for_close(&mut self, id: ConnectionId) -> Result<ConnectionEntry, PeerError> {
        self.ready()?;
        let closing = self.core.start_close(id)?;
        let (_, entry) = self
            .table
            .remove(&id)
            .ok_or(PeerError::CONNECTION_NOT_FOUND)?;
        if closing.shrink {
            self.table.shrink_to_fit();
        }
        Ok(entry)
    }
}

impl Handler<StartClose> for GraphActor {
    type Result = ();

    fn handle(&mut self, message: StartClose, _ctx: &mut Self::Context) {
        self.start_close(message.connection_id, message.reply);
    }
}

impl Handler<CloseDirectConnection> for GraphActor {
    type Result = ResponseFuture<Result<(), PeerError>>;

    fn handle(&mut self, message: CloseDirectConnection, _ctx: &mut Self::Context) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        self.start_close(message.connection_id, reply);
        Box::pin(CloseAnswer(answer).outcome())
    }
}

impl Handler<EnumConnections> for GraphActor {
    type Result = Result<Vec<ConnectionInfo>, PeerError>;

    fn handle(&mut self, message: EnumConnections, _ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        self.core.enum_connections(message.flags)
    }
}

impl Handler<GetNodeInfo> for GraphActor {
    type Result = Result<NodeInfo, PeerError>;

    fn handle(&mut self, message: GetNodeInfo, _ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        self.core
            .node_info(message.node_id, self.listen_addresses())
    }
}

impl Handler<GetStatus> for GraphActor {
    type Result = Result<GraphStatus, PeerError>;

    fn handle(&mut self, _: GetStatus, _ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        Ok(self.core.status())
    }
}

impl Handler<GetCounters> for GraphActor {
    type Result = Result<GraphCounters, PeerError>;

    fn handle(&mut self, _: GetCounters, _ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        Ok(GraphCounters {
            connections: self.core.connection_count(),
            pending_outgoing: self.core.outgoing_count(),
            pending_incoming: self.core.incoming_count(),
            quic_connections: self.quic_connections(),
            endpoint_renewals: self.renewals,
        })
    }
}

impl Handler<GetMetrics> for GraphActor {
    type Result = Result<GraphMetrics, PeerError>;

    fn handle(&mut self, _: GetMetrics, _ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        // Clone the links out of the table first, so no table lock is held while quinn
        // takes each connection's lock.
        let links: Vec<quinn::Connection> = self
            .table
            .iter()
            .map(|entry| entry.connection.clone())
            .collect();
        let (mut live_sent, mut live_received) = (0u64, 0u64);
        for link in links {
            let stats = link.stats();
            live_sent = live_sent.saturating_add(stats.udp_tx.bytes);
            live_received = live_received.saturating_add(stats.udp_rx.bytes);
        }
        Ok(self.tally.metrics(Current {
            direct_connections: self.core.connection_count(),
            pending_outgoing: self.core.outgoing_count(),
            pending_incoming: self.core.incoming_count(),
            live_sent,
            live_received,
            events_lost: self.subscribers.lost(),
            early_rejected: self
                .dialer
                .as_ref()
                .map_or(0, |dialer| dialer.early_rejected()),
        }))
    }
}

impl Handler<GetConnectionStats> for GraphActor {
    type Result = Result<ConnectionStats, PeerError>;

    fn handle(&mut self, message: GetConnectionStats, _ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        let id = message.connection_id;
        // Clone the link out of the table before asking quinn, so no table lock is held
        // while quinn takes its own connection lock.
        let connection = self
            .table
            .get(&id)
            .map(|entry| entry.connection.clone())
            .ok_or(PeerError::CONNECTION_NOT_FOUND)?;
        Ok(ConnectionStats::from_quinn(id, &connection.stats()))
    }
}

impl Handler<RegisterEvent> for GraphActor {
    type Result = Result<crate::EventStream, PeerError>;

    fn handle(&mut self, message: RegisterEvent, _ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        if message.limits.events == 0 || message.limits.bytes == 0 {
            return Err(PeerError::INVALID_ARG);
        }
        let filter = EventFilter::new(message.registrations)?;
        Ok(self.subscribers.add_stream(filter, message.limits))
    }
}

impl Handler<RegisterEventRecipient> for GraphActor {
    type Result = Result<crate::EventHandle, PeerError>;

    fn handle(
        &mut self,
        message: RegisterEventRecipient,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        self.ready()?;
        let filter = EventFilter::new(message.registrations)?;
        Ok(self.subscribers.add_recipient(filter, message.recipient))
    }
}

impl Handler<UnregisterEvent> for GraphActor {
    type Result = Result<(), PeerError>;

    fn handle(&mut self, message: UnregisterEvent, _ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        if self.subscribers.remove(message.handle) {
            Ok(())
        } else {
            Err(PeerError::INVALID_ARG)
        }
    }
}

impl Handler<CloseGraph> for GraphActor {
    type Result = ResponseFuture<Result<(), PeerError>>;

    fn handle(&mut self, _: CloseGraph, ctx: &mut Self::Context) -> Self::Result {
        if let Err(error) = self.ready() {
            return Box::pin(async move { Err(error) });
        }
        let endpoints = self.release(ctx);
        let database = self.shut_down_records(ctx);
        Box::pin(async move {
            let drained = drain(endpoints).await;
            // Writes in flight finish and the database file closes before the reply, so
            // the graph can be opened again at once.
            let _ = database.await;
            drained
        })
    }
}

impl Handler<Release> for GraphActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Release, ctx: &mut Self::Context) -> Self::Result {
        let endpoints = self.release(ctx);
        let database = self.shut_down_records(ctx);
        Box::pin(async move {
            let _ = drain(endpoints).await;
            let _ = database.await;
        })
    }
}
