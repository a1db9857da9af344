//! The engine inside an existing actix `System`: the graph actor runs on the current
//! arbiter, and the application talks to it with plain actix messages.

use std::time::Duration;

use bytes::Bytes;
use peergraph::{
    reply, CloseDirectConnection, ConnectionId, ConnectionStatus, DataType, Engine,
    EventRegistration, EventType, GraphEvent, GraphId, GraphOptions, GraphProperties, Listen,
    OpenDirectConnection, PeerId, RegisterEvent, ResultCode, SendData, Version,
};

async fn next_matching(
    events: &mut peergraph::EventStream,
    mut pred: impl FnMut(&GraphEvent) -> bool,
) -> GraphEvent {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let event = events.recv().await.expect("stream open");
            if pred(&event) {
                return event;
            }
        }
    })
    .await
    .expect("event in time")
}

#[actix_rt::test]
async fn messages_to_the_graph_actor_inside_a_system() {
    let registrations = vec![
        EventRegistration::new(EventType::DirectConnection),
        EventRegistration::new(EventType::IncomingData),
    ];
    let mut addrs = Vec::new();
    let mut streams = Vec::new();
    let mut listen_at = Vec::new();
    // Two nodes of one graph: each on its own engine (a graph id is open once per engine),
    // both engines embedded in this test's actix System, on its arbiter.
    for peer in ["alice", "bob"] {
        let engine = Engine::new().expect("engine");
        engine.startup(Version::V1_0).expect("startup");
        let properties = GraphProperties::new(
            GraphId::new("embedded").expect("id"),
            PeerId::new(peer).expect("peer"),
        );
        let graph = engine
            .create_graph(properties, GraphOptions::default())
            .expect("create");
        let addr = graph.addr();
        let stream =
            reply(addr.send(RegisterEvent::new(registrations.clone())).await).expect("register");
        let address = reply(
            addr.send(Listen {
                address: "127.0.0.1:0".parse().expect("address"),
            })
            .await,
        )
        .expect("listen");
        addrs.push((engine, addr));
        streams.push(stream);
        listen_at.push(address);
    }
    let alice = addrs[0].1.clone();
    let bob = addrs[1].1.clone();
    let id = reply(
        alice
            .send(OpenDirectConnection {
                peer_id: PeerId::new("bob").expect("peer id"),
                address: listen_at[1],
                expected_key: None,
            })
            .await,
    )
    .expect("open");
    for stream in streams.iter_mut() {
        next_matching(stream, |e| {
            matches!(e, GraphEvent::DirectConnection(c)
                if c.connection_id == id && c.status == ConnectionStatus::Connected)
        })
        .await;
    }
    reply(
        alice
            .send(SendData {
                connection_id: id,
                data_type: DataType::from_u128(5),
                data: Bytes::from_static(b"from inside actix"),
            })
            .await,
    )
    .expect("send");
    let event = next_matching(&mut streams[1], |e| {
        matches!(e, GraphEvent::IncomingData { .. })
    })
    .await;
    assert!(
        matches!(event, GraphEvent::IncomingData { data, .. } if &data[..] == b"from inside actix")
    );
    assert_eq!(
        reply(bob.send(CloseDirectConnection { connection_id: id }).await),
        Ok(())
    );
    next_matching(&mut streams[0], |e| {
        matches!(e, GraphEvent::DirectConnection(c)
            if c.connection_id == id && c.status == ConnectionStatus::Disconnected)
    })
    .await;
    assert_eq!(
        ConnectionId::new(0).map_err(|e| e.code()),
        Err(ResultCode::E_INVALIDARG)
    );
}
