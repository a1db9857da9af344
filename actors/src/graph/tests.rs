//! The graph actor over live QUIC: races between a handshake's end and the graph's close,
//! and the renewal of its endpoints.

use super::*;
use crate::connection::close_tests::{hold, quic_pair, system, within};
use crate::connection::LinkParts;
use crate::lifecycle::EngineState;
use peergraph_engine::{EventRegistration, GraphId};
use peergraph_engine::{PeerId, PeerKey, ResultCode};
use peergraph_transport::FrameReader;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::oneshot;

/// Starts an outgoing attempt whose handshake ends with what comes on `outcome`, as
/// `OpenDirectConnection` does with a real handshake.
struct OpenWith {
    outcome: oneshot::Receiver<Result<Link, PeerError>>,
}

impl Message for OpenWith {
    type Result = ConnectionId;
}

impl Handler<OpenWith> for GraphActor {
    type Result = MessageResult<OpenWith>;

    fn handle(&mut self, message: OpenWith, ctx: &mut Self::Context) -> Self::Result {
        let peer_id = PeerId::new("bob").expect("peer id");
        let address = SocketAddr::from(([127, 0, 0, 1], 9));
        let connection_id = self
            .core
            .start_outgoing(peer_id, address, peergraph_transport::random_nonzero_u64)
            .connection_id;
        let handshake = async move {
            message
                .outcome
                .await
                .unwrap_or(Err(PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED)))
        };
        self.start_outgoing(connection_id, handshake, ctx);
        MessageResult(connection_id)
    }
}

/// A QUIC link to a raw peer, as an outgoing handshake hands it over, and the peer's
/// side of it.
async fn raw_link() -> (Link, quinn::Connection, [quinn::Endpoint; 2]) {
    let (local, peer, address, endpoints) = quic_pair().await;
    let (send, recv) = within("open", local.open_bi()).await.expect("open");
    let link = Link {
        parts: LinkParts {
            connection: local,
            send,
            reader: FrameReader::new(recv),
        },
        peer_key: PeerKey([7; 32]),
        address,
        confirmation: None,
        zero_rtt: crate::handshake::ZeroRtt::NotTried,
    };
    (link, peer, endpoints)
}

/// A graph actor on `arbiter`, on an engine that is started; its table and its count
/// of live connection actors.
fn start_graph(
    arbiter: &actix_rt::ArbiterHandle,
    options: GraphOptions,
) -> (Addr<GraphActor>, Arc<ConnectionTable>, Arc<AtomicUsize>) {
    let state = EngineState::started();
    let live = state.live_connection_actors.clone();
    let table = Arc::new(ConnectionTable::default());
    let properties = GraphProperties::new(
        GraphId::new("g").expect("graph id"),
        PeerId::new("alice").expect("peer id"),
    );
    let database = crate::database::Database::open(&properties, &options, true).expect("in memory");
    let setup = GraphSetup {
        handle: GraphHandle::new(1).expect("handle"),
        state,
        forget: Box::new(|| {}),
        properties,
        identity: NodeIdentity::generate().expect("identity"),
        options,
        database,
        table: table.clone(),
    };
    let graph = GraphActor::start_in_arbiter(arbiter, move |_| GraphActor::new(setup));
    (graph, table, live)
}

/// Ends a renewal's wait with the graph idle after a peak, and `client` (holding a
/// QUIC connection the wait did not cover) as its IPv4 client endpoint: the state a
/// link that started and ended during the wait, on an endpoint bound meanwhile, leaves.
struct EndRenewalWait {
    client: quinn::Endpoint,
}

impl Message for EndRenewalWait {
    type Result = ();
}

impl Handler<EndRenewalWait> for GraphActor {
    type Result = ();

    fn handle(&mut self, message: EndRenewalWait, ctx: &mut Self::Context) {
        self.link_peak = self.options.renew_endpoints_after;
        self.client_v4 = Some(message.client);
        self.renewal_waiting = true;
        self.renewal_wait_ended(ctx);
    }
}

/// A renewal's wait ends while quinn still holds a connection it did not cover. The
/// renewal used to give up until some later link came and went; now it waits again and
/// renews once that connection is gone.
#[tokio::test]
async fn a_renewal_whose_wait_missed_a_connection_waits_again() {
    let (system, arbiter) = system();
    let options = GraphOptions::default().with_renew_endpoints_after(1);
    let (graph, _table, _live) = start_graph(&arbiter, options);
    let (client, _server, _address, [_accepting, connecting]) = quic_pair().await;
    within(
        "the wait ends",
        graph.send(EndRenewalWait { client: connecting }),
    )
    .await
    .expect("graph runs");
    let counters = || async {
        within("counters", graph.send(GetCounters))
            .await
            .expect("graph runs")
            .expect("counters")
    };
    let before = counters().await;
    assert_eq!(before.quic_connections, 1);
    assert_eq!(
        before.endpoint_renewals, 0,
        "renewed under a live connection"
    );
    client.close(0u32.into(), b"done");
    drop(client);
    within("the renewal", async {
        while counters().await.endpoint_renewals == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(counters().await.quic_connections, 0);
    system.stop();
}

/// An outgoing handshake completes, and CloseGraph arrives before the graph actor runs
/// again. The graph closes first and cancels the handshake's future, but actix cancels
/// lazily: a spawned future that is ready is still polled in that same turn, so its
/// outcome came through on a closed graph. It adopted the link: a connection actor
/// started and an entry went into the closed graph's table that nothing ever removes
/// (ConnectionEnded ignores a closed graph), and the link stayed up. Now the link is
/// closed with LEAVING, as an incoming one that completes after the close is.
#[tokio::test]
async fn an_outgoing_handshake_done_as_the_graph_closes_is_not_adopted() {
    let (system, arbiter) = system();
    let (graph, table, live) = start_graph(&arbiter, GraphOptions::default());
    let mut events = within(
        "register",
        graph.send(RegisterEvent {
            registrations: vec![EventRegistration::new(EventType::DirectConnection)],
            limits: crate::QueueLimits::default(),
        }),
    )
    .await
    .expect("graph runs")
    .expect("registered");
    let (link, peer, _endpoints) = raw_link().await;
    let (outcome_tx, outcome) = oneshot::channel();
    within("open", graph.send(OpenWith { outcome }))
        .await
        .expect("graph runs");
    let counters = within("counters", graph.send(GetCounters))
        .await
        .expect("graph runs")
        .expect("counters");
    assert_eq!(counters.pending_outgoing, 1);

    // While the graph's thread is held: the handshake ends, and CloseGraph is queued.
    let release = hold(&arbiter).await;
    assert!(outcome_tx.send(Ok(link)).is_ok());
    let closed = graph.send(CloseGraph);
    let _ = release.send(());
    within("CloseGraph", closed)
        .await
        .expect("graph runs")
        .expect("closed");

    assert_eq!(within("the stream ends", events.recv()).await, None);
    assert_eq!(table.len(), 0, "a closed graph's table stays empty");
    assert_eq!(
        live.load(Ordering::Relaxed),
        0,
        "no connection actor started"
    );
    let reason = within("the peer hears the close", peer.closed()).await;
    assert!(
        matches!(
            &reason,
            quinn::ConnectionError::ApplicationClosed(close)
                if close.error_code
                    == quinn::VarInt::from(peergraph_engine::wire::close_code::LEAVING)
        ),
        "{reason:?}"
    );
    system.stop();
}
