//! The web gateway's routes, called in process (actix-web's `test` service) against two
//! graphs in this test: the gateway's node and a peer node, bob, that it connects to.
//! What bob receives is read from bob's own events, with timeouts.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{test, App};
use peergraph::{
    ConnectionStatus, Engine, EventRegistration, EventStream, EventType, Graph, GraphEvent,
    GraphId, GraphOptions, GraphProperties, PeerId, Version, MAX_DATA_LEN,
};
use peergraph_examples::web::{Gateway, TEXT};
use serde_json::{json, Value};

/// The longest wait for one event. On loopback each comes within milliseconds; the bound
/// turns a hang into a failure that names what was missing.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A node of graph `chat`: its engine, its graph, listening on loopback, registered for
/// DIRECT_CONNECTION (so that it takes direct connections) and INCOMING_DATA.
struct Node {
    engine: Engine,
    graph: Graph,
    address: SocketAddr,
    events: EventStream,
}

impl Node {
    async fn start(peer: &str) -> Node {
        let engine = Engine::new().expect("engine");
        engine.startup(Version::V1_0).expect("startup");
        let properties = GraphProperties::new(
            GraphId::new("chat").expect("graph id"),
            PeerId::new(peer).expect("peer id"),
        );
        let graph = engine
            .create_graph(properties, GraphOptions::default())
            .expect("graph");
        let events = graph
            .register_event(vec![
                EventRegistration::new(EventType::DirectConnection),
                EventRegistration::new(EventType::IncomingData),
            ])
            .await
            .expect("registered");
        let address = graph
            .listen("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("listening");
        Node {
            engine,
            graph,
            address,
            events,
        }
    }

    /// The next DIRECT_CONNECTION or INCOMING_DATA event, within [`EVENT_TIMEOUT`].
    async fn next_event(&mut self) -> GraphEvent {
        tokio::time::timeout(EVENT_TIMEOUT, self.events.recv())
            .await
            .expect("an event within the timeout")
            .expect("the registration is open")
    }

    async fn stop(self) {
        self.graph.close().await.expect("graph closed");
        self.engine.shutdown().await.expect("engine shut down");
    }
}

/// A response's status and its body as JSON.
async fn answer(response: ServiceResponse) -> (StatusCode, Value) {
    let status = response.status();
    let body = test::read_body(response).await;
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|error| panic!("{status}: not JSON ({error}): {body:?}"));
    (status, json)
}

/// Asserts an error answer: its status, and the code's name and value.
fn assert_error(answer: &(StatusCode, Value), status: StatusCode, name: &str, hr: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["name"], name, "{}", answer.1);
    assert_eq!(answer.1["hr"], hr, "{}", answer.1);
    assert!(
        answer.1["message"]
            .as_str()
            .is_some_and(|text| !text.is_empty()),
        "{}",
        answer.1
    );
}

#[actix_web::test]
async fn open_send_list_close_and_the_errors_over_http() {
    let mut gateway_node = Node::start("gateway").await;
    let mut bob = Node::start("bob").await;
    let app = test::init_service(App::new().configure(|config| {
        Gateway::new(gateway_node.graph.addr()).configure(config);
    }))
    .await;

    // GET /info: this node.
    let request = test::TestRequest::get().uri("/info").to_request();
    let (status, info) = answer(app.call(request).await.expect("served")).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["graph_id"], "chat");
    assert_eq!(info["peer_id"], "gateway");
    assert_eq!(info["addresses"], json!([gateway_node.address.to_string()]));

    // POST /connections: 201 once CONNECTED, with the id bob sees too.
    let request = test::TestRequest::post()
        .uri("/connections")
        .set_payload(format!(
            r#"{{"peer_id": "bob", "address": "{}"}}"#,
            bob.address
        ))
        .to_request();
    let (status, opened) = answer(app.call(request).await.expect("served")).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let id = opened["connection_id"].as_str().expect("an id").to_owned();
    let bob_node = bob.graph.node_info(None).await.expect("bob's node").node_id;
    assert_eq!(opened["peer_id"], "bob");
    assert_eq!(opened["node_id"], bob_node.to_string());
    let GraphEvent::DirectConnection(change) = bob.next_event().await else {
        panic!("bob: expected DIRECT_CONNECTION");
    };
    assert_eq!(change.status, ConnectionStatus::Connected);
    assert_eq!(change.connection_id.to_string(), id);
    assert_eq!(change.peer_id.as_str(), "gateway");

    // POST /connections/{id}/messages: bob receives exactly the body, text or not.
    for data in [&b"hello, bob"[..], &[0, 0xff, b'\n', 0x80, 1][..]] {
        let request = test::TestRequest::post()
            .uri(&format!("/connections/{id}/messages"))
            .set_payload(data.to_vec())
            .to_request();
        let (status, sent) = answer(app.call(request).await.expect("served")).await;
        assert_eq!(status, StatusCode::OK, "{sent}");
        assert_eq!(sent, json!({"connection_id": id, "bytes": data.len()}));
        let GraphEvent::IncomingData {
            connection_id,
            data_type,
            data: received,
        } = bob.next_event().await
        else {
            panic!("bob: expected INCOMING_DATA");
        };
        assert_eq!(connection_id.to_string(), id);
        assert_eq!(data_type, TEXT);
        assert_eq!(&received[..], data);
    }

    // A body over MAX_DATA_LEN: 413, and nothing is sent (bob's next data is the next
    // message).
    let request = test::TestRequest::post()
        .uri(&format!("/connections/{id}/messages"))
        .set_payload(vec![b'x'; MAX_DATA_LEN + 1])
        .to_request();
    let too_large = answer(app.call(request).await.expect("served")).await;
    assert_error(
        &too_large,
        StatusCode::PAYLOAD_TOO_LARGE,
        "E_INVALIDARG",
        "0x80070057",
    );
    let request = test::TestRequest::post()
        .uri(&format!("/connections/{id}/messages"))
        .set_payload(vec![b'y'; MAX_DATA_LEN])
        .to_request();
    let (status, sent) = answer(app.call(request).await.expect("served")).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let GraphEvent::IncomingData { data, .. } = bob.next_event().await else {
        panic!("bob: expected INCOMING_DATA");
    };
    assert_eq!(data.len(), MAX_DATA_LEN);
    assert!(data.iter().all(|&byte| byte == b'y'));

    // GET /connections lists it.
    let request = test::TestRequest::get().uri("/connections").to_request();
    let (status, list) = answer(app.call(request).await.expect("served")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(
        list,
        json!([{
            "connection_id": id,
            "peer_id": "bob",
            "node_id": bob_node.to_string(),
            "address": bob.address.to_string(),
        }])
    );

    // DELETE: 200 once bob has read everything; bob sees DISCONNECTED.
    let request = test::TestRequest::delete()
        .uri(&format!("/connections/{id}"))
        .to_request();
    let (status, closed) = answer(app.call(request).await.expect("served")).await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    assert_eq!(
        closed,
        json!({"connection_id": id, "status": "disconnected"})
    );
    let GraphEvent::DirectConnection(change) = bob.next_event().await else {
        panic!("bob: expected DIRECT_CONNECTION");
    };
    assert_eq!(change.status, ConnectionStatus::Disconnected);
    assert_eq!(change.connection_id.to_string(), id);

    let request = test::TestRequest::get().uri("/connections").to_request();
    let (status, list) = answer(app.call(request).await.expect("served")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list, json!([]));

    // The connection is gone: 404 with its code, for a close and for a send.
    let request = test::TestRequest::delete()
        .uri(&format!("/connections/{id}"))
        .to_request();
    let again = answer(app.call(request).await.expect("served")).await;
    assert_error(
        &again,
        StatusCode::NOT_FOUND,
        "PEER_E_CONNECTION_NOT_FOUND",
        "0x80630103",
    );
    let request = test::TestRequest::post()
        .uri(&format!("/connections/{id}/messages"))
        .set_payload("late")
        .to_request();
    let late = answer(app.call(request).await.expect("served")).await;
    assert_error(
        &late,
        StatusCode::NOT_FOUND,
        "PEER_E_CONNECTION_NOT_FOUND",
        "0x80630103",
    );

    // Bad input: 400 with E_INVALIDARG (PEER_E_INVALID_ADDRESS for an address).
    for (body, name, hr) in [
        ("{not json", "E_INVALIDARG", "0x80070057"),
        (
            r#"{"address": "127.0.0.1:4000"}"#,
            "E_INVALIDARG",
            "0x80070057",
        ),
        (
            r#"{"peer_id": "bob", "address": "bob's house"}"#,
            "PEER_E_INVALID_ADDRESS",
            "0x80637007",
        ),
    ] {
        let request = test::TestRequest::post()
            .uri("/connections")
            .set_payload(body)
            .to_request();
        let bad = answer(app.call(request).await.expect("served")).await;
        assert_error(&bad, StatusCode::BAD_REQUEST, name, hr);
    }
    let request = test::TestRequest::delete()
        .uri("/connections/not-an-id")
        .to_request();
    let bad = answer(app.call(request).await.expect("served")).await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "E_INVALIDARG", "0x80070057");
    let request = test::TestRequest::post()
        .uri("/connections")
        .set_payload(vec![b' '; peergraph_examples::web::MAX_OPEN_BODY + 1])
        .to_request();
    let too_large = answer(app.call(request).await.expect("served")).await;
    assert_error(
        &too_large,
        StatusCode::PAYLOAD_TOO_LARGE,
        "E_INVALIDARG",
        "0x80070057",
    );

    // An open the peer's node fails: the node at bob's address is not carol. The
    // outcome's reason answers, with 502 (the peer, not the request, failed).
    let request = test::TestRequest::post()
        .uri("/connections")
        .set_payload(format!(
            r#"{{"peer_id": "carol", "address": "{}"}}"#,
            bob.address
        ))
        .to_request();
    let failed = answer(app.call(request).await.expect("served")).await;
    assert_error(
        &failed,
        StatusCode::BAD_GATEWAY,
        "PEER_E_CONNECTION_NOT_AUTHENTICATED",
        "0x8063010A",
    );

    // A graph that is closed: 503 with PEER_E_INVALID_GRAPH.
    gateway_node
        .graph
        .close()
        .await
        .expect("gateway graph closed");
    let request = test::TestRequest::get().uri("/connections").to_request();
    let gone = answer(app.call(request).await.expect("served")).await;
    assert_error(
        &gone,
        StatusCode::SERVICE_UNAVAILABLE,
        "PEER_E_INVALID_GRAPH",
        "0x80630010",
    );

    // The gateway's own node saw its connection come and go.
    let mut statuses = Vec::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(EVENT_TIMEOUT, gateway_node.events.recv()).await
    {
        if let GraphEvent::DirectConnection(change) = event {
            if change.connection_id.to_string() == id {
                statuses.push(change.status);
            }
        }
    }
    assert_eq!(
        statuses,
        [ConnectionStatus::Connected, ConnectionStatus::Disconnected]
    );
    gateway_node
        .engine
        .shutdown()
        .await
        .expect("engine shut down");
    bob.stop().await;
}
