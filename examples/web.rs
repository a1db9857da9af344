//! The web gateway's routes: a graph's direct connections over HTTP, for actix-web services
//! that embed peergraph. The `web_gateway` example serves them; its test calls them in
//! process. Built with the `web` feature.
//!
//! ```text
//!  HTTP client ──▶ actix-web worker ──▶ handler ──Addr<GraphActor>::send──▶ GraphActor ──QUIC──▶ peers
//!                                          ◀──── Result<_, PeerError> ◀────┘
//!              ◀── JSON, or {"hr","name","message"} with the status of status_of(code)
//! ```
//!
//! The handlers hold nothing but the graph actor's address, `web::Data<Addr<GraphActor>>`
//! in the app data, and send it the graph's messages: the graph actor runs on the
//! engine's arbiter and the handlers on actix-web's workers, and an `Addr` carries
//! messages between threads.
//!
//! | route | message | answer |
//! |---|---|---|
//! | `GET /info` | GetProperties, GetNodeInfo, GetStatus | 200, the graph id, this node's peer id, node id, addresses and status |
//! | `GET /connections` | EnumConnections (DIRECT) | 200, a list of connections |
//! | `POST /connections` `{"peer_id": "bob", "address": "127.0.0.1:4000"}` | OpenDirectConnection, then its DIRECT_CONNECTION outcome | 201 and the connection once it is CONNECTED; the failure reason otherwise |
//! | `POST /connections/{id}/messages`, the body is the data | SendData, data type [`TEXT`] | 200 once the data is accepted for sending |
//! | `DELETE /connections/{id}` | CloseDirectConnection | 200 once the peer has read everything |
//!
//! A connection is `{"connection_id": "0x…", "peer_id": "bob", "node_id": "…", "address":
//! "127.0.0.1:4000"}`; `{id}` is the connection id as it prints (`0x` and 16 hex digits)
//! or its decimal value. A failed call answers `{"hr": "0x80630103", "name":
//! "PEER_E_CONNECTION_NOT_FOUND", "message": "no connection with that id exists"}` with
//! the HTTP status [`status_of`] gives its code (404 here); a body over its limit answers
//! 413 with `E_INVALIDARG`.
//!
//! Every wait is bounded: bodies by [`MAX_DATA_LEN`] (messages) and [`MAX_OPEN_BODY`]
//! (opens), opens under way by [`MAX_OPENS`], each graph call by a time limit past which
//! the answer is `PEER_E_TIMEOUT` (504).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use bytes::Bytes;
use peergraph::{
    reply, CloseDirectConnection, ConnectionChange, ConnectionFlags, ConnectionId, ConnectionInfo,
    ConnectionStatus, EnumConnections, EventRegistration, EventStream, EventType, GetNodeInfo,
    GetProperties, GetStatus, GraphActor, GraphEvent, OpenDirectConnection, PeerError, PeerId,
    RegisterEvent, ResultCode, SendData, UnregisterEvent, DEFAULT_CLOSE_BOUND,
    DEFAULT_CONNECT_TIMEOUT, MAX_DATA_LEN,
};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

/// The data type a message is sent with: the peer host's text type, so that a
/// `peer_host` at the other end prints the body as text.
pub use crate::host::TEXT;

/// The largest body of `POST /connections`: a peer id is at most 256 characters (1 KiB
/// of UTF-8) and an address a few dozen bytes, so 4 KiB leaves room for spacing.
pub const MAX_OPEN_BODY: usize = 4096;

/// The most `POST /connections` under way at once. Each holds an event registration on
/// the graph while it waits for its outcome (up to [`OPEN_WAIT`]); past the bound the
/// answer is `E_OUTOFMEMORY` (503) at once.
pub const MAX_OPENS: usize = 64;

/// How long `POST /connections` waits for the connection's outcome: the graph's default
/// connect timeout, after which the graph itself reports CONNECTION_FAILED, plus a margin.
pub const OPEN_WAIT: Duration = DEFAULT_CONNECT_TIMEOUT.saturating_add(Duration::from_secs(5));

/// How long `POST /connections/{id}/messages` waits for SendData, which waits while the
/// connection's outbox is full (backpressure). Past it the answer is `PEER_E_TIMEOUT`,
/// and the data may still be sent.
pub const SEND_WAIT: Duration = Duration::from_secs(30);

/// How long `DELETE /connections/{id}` waits: the graph bounds a close by
/// [`DEFAULT_CLOSE_BOUND`] and answers then; the margin only guards against a graph that
/// does not answer at all.
pub const CLOSE_WAIT: Duration = DEFAULT_CLOSE_BOUND.saturating_add(Duration::from_secs(5));

/// How long a call that does no network I/O (EnumConnections, GetNodeInfo, ...) may take.
pub const CALL_WAIT: Duration = Duration::from_secs(10);

/// The gateway's routes and what they share, to mount in an [`App`](actix_web::App) of
/// every worker with [`configure`](Gateway::configure):
///
/// ```no_run
/// # use actix_web::{App, HttpServer};
/// # use peergraph_examples::web::Gateway;
/// # async fn serve(graph: actix::Addr<peergraph::GraphActor>) -> std::io::Result<()> {
/// let gateway = Gateway::new(graph);
/// HttpServer::new(move || App::new().configure(|config| gateway.configure(config)))
///     .bind("127.0.0.1:8080")?
///     .run()
///     .await
/// # }
/// ```
///
/// Cheap to clone; the clones share the graph's address and the bound on opens.
#[derive(Clone)]
pub struct Gateway {
    graph: web::Data<Addr<GraphActor>>,
    opens: web::Data<OpenSlots>,
}

/// The permits of [`MAX_OPENS`], shared by every worker (a type of its own, so that it
/// cannot collide with an application's own app data).
struct OpenSlots(Semaphore);

impl Gateway {
    /// A gateway to the graph whose actor is `graph` (from
    /// [`Graph::addr`](peergraph::Graph::addr)). The node must be registered for
    /// DIRECT_CONNECTION events (registering is what makes it take direct connections).
    pub fn new(graph: Addr<GraphActor>) -> Self {
        Gateway {
            graph: web::Data::new(graph),
            opens: web::Data::new(OpenSlots(Semaphore::new(MAX_OPENS))),
        }
    }

    /// Adds the graph's address (as `web::Data<Addr<GraphActor>>`) and the routes to
    /// `config`; mount it at the root or in a `web::scope`.
    pub fn configure(&self, config: &mut web::ServiceConfig) {
        config
            .app_data(self.graph.clone())
            .app_data(self.opens.clone())
            .service(web::resource("/info").route(web::get().to(info)))
            .service(
                web::resource("/connections")
                    .route(web::get().to(list))
                    .route(web::post().to(open)),
            )
            .service(web::resource("/connections/{id}").route(web::delete().to(close)))
            .service(web::resource("/connections/{id}/messages").route(web::post().to(send)));
    }
}

/// The HTTP status that answers a call failed with `code`:
///
/// | status | codes |
/// |---|---|
/// | 400 Bad Request | `E_INVALIDARG`, `PEER_E_INVALID_ADDRESS`, `PEER_E_CONNECT_SELF` |
/// | 403 Forbidden | `PEER_E_NOT_AUTHORIZED`, `E_ACCESSDENIED` |
/// | 404 Not Found | `PEER_E_CONNECTION_NOT_FOUND`, `PEER_E_NODE_NOT_FOUND`, `PEER_E_RECORD_NOT_FOUND`, `PEER_E_NOT_FOUND` |
/// | 409 Conflict | `PEER_E_GRAPH_NOT_READY`, `PEER_E_ALREADY_LISTENING`, `PEER_E_ALREADY_EXISTS` |
/// | 502 Bad Gateway | `PEER_E_CONNECTION_FAILED`, `PEER_E_CONNECTION_REFUSED`, `PEER_E_CONNECTION_NOT_AUTHENTICATED` (the peer, or the way to it, failed) |
/// | 503 Service Unavailable | `PEER_E_INVALID_GRAPH`, `PEER_E_NOT_INITIALIZED`, `PEER_E_GRAPH_SHUTTING_DOWN` (the graph is gone), `E_OUTOFMEMORY` (a bound is reached) |
/// | 504 Gateway Timeout | `PEER_E_TIMEOUT` |
/// | 500 Internal Server Error | any other code |
pub fn status_of(code: ResultCode) -> StatusCode {
    match code {
        ResultCode::E_INVALIDARG
        | ResultCode::PEER_E_INVALID_ADDRESS
        | ResultCode::PEER_E_CONNECT_SELF => StatusCode::BAD_REQUEST,
        ResultCode::PEER_E_NOT_AUTHORIZED | ResultCode::E_ACCESSDENIED => StatusCode::FORBIDDEN,
        ResultCode::PEER_E_CONNECTION_NOT_FOUND
        | ResultCode::PEER_E_NODE_NOT_FOUND
        | ResultCode::PEER_E_RECORD_NOT_FOUND
        | ResultCode::PEER_E_NOT_FOUND => StatusCode::NOT_FOUND,
        ResultCode::PEER_E_GRAPH_NOT_READY
        | ResultCode::PEER_E_ALREADY_LISTENING
        | ResultCode::PEER_E_ALREADY_EXISTS => StatusCode::CONFLICT,
        ResultCode::PEER_E_CONNECTION_FAILED
        | ResultCode::PEER_E_CONNECTION_REFUSED
        | ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED => StatusCode::BAD_GATEWAY,
        ResultCode::PEER_E_INVALID_GRAPH
        | ResultCode::PEER_E_NOT_INITIALIZED
        | ResultCode::PEER_E_GRAPH_SHUTTING_DOWN
        | ResultCode::E_OUTOFMEMORY => StatusCode::SERVICE_UNAVAILABLE,
        ResultCode::PEER_E_TIMEOUT => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A failed request: the call's error and the status that answers it.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    error: PeerError,
}

impl From<PeerError> for Failure {
    fn from(error: PeerError) -> Self {
        Failure {
            status: status_of(error.code()),
            error,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.error)
    }
}

impl ResponseError for Failure {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let code = self.error.code();
        let mut message = code.description().to_owned();
        if let Some(cause) = self.error.cause() {
            message = format!("{message}: {cause}");
        }
        HttpResponse::build(self.status).json(json!({
            "hr": format!("0x{:08X}", code.value()),
            "name": code.name().unwrap_or("UNKNOWN"),
            "message": message,
        }))
    }
}

/// Sends `message` to the graph actor and waits for its reply, at most `limit`.
async fn call<M, T>(graph: &Addr<GraphActor>, message: M, limit: Duration) -> Result<T, Failure>
where
    M: Message<Result = Result<T, PeerError>> + Send + 'static,
    T: Send + 'static,
    GraphActor: Handler<M>,
{
    match tokio::time::timeout(limit, graph.send(message)).await {
        Ok(sent) => Ok(reply(sent)?),
        Err(_) => Err(PeerError::with_cause(
            ResultCode::PEER_E_TIMEOUT,
            format!("the graph did not answer within {limit:?}"),
        )
        .into()),
    }
}

/// The request's body, at most `limit` bytes (413 beyond).
async fn body(payload: web::Payload, limit: usize) -> Result<Bytes, Failure> {
    match payload.to_bytes_limited(limit).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => Err(PeerError::INVALID_ARG
            .because(format!("reading the body: {error}"))
            .into()),
        Err(_) => Err(Failure {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            error: PeerError::INVALID_ARG.because(format!("the body is over {limit} bytes")),
        }),
    }
}

/// The connection id in a path: `0x` and hex digits, as ids print, or decimal digits.
fn connection_id(text: &str) -> Result<ConnectionId, Failure> {
    let raw = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    };
    raw.and_then(|raw| ConnectionId::new(raw).ok())
        .ok_or_else(|| {
            PeerError::INVALID_ARG
                .because(format!(
                    "`{text}` is not a connection id (0x and hex digits, as ids print)"
                ))
                .into()
        })
}

/// The peer id and address of a `POST /connections` body.
fn open_request(body: &[u8]) -> Result<(PeerId, SocketAddr), PeerError> {
    let request: Value = serde_json::from_slice(body)
        .map_err(|error| PeerError::with_cause(ResultCode::E_INVALIDARG, error))?;
    let field = |name: &str| {
        request.get(name).and_then(Value::as_str).ok_or_else(|| {
            PeerError::INVALID_ARG.because(format!(
                "the body needs a string \"{name}\": \
                 {{\"peer_id\": \"bob\", \"address\": \"127.0.0.1:4000\"}}"
            ))
        })
    };
    let peer_id = PeerId::new(field("peer_id")?)
        .map_err(|error| error.because("peer_id: 1 to 256 characters, no NUL"))?;
    let address = field("address")?
        .parse::<SocketAddr>()
        .map_err(|error| PeerError::with_cause(ResultCode::PEER_E_INVALID_ADDRESS, error))?;
    Ok((peer_id, address))
}

/// A connection as the routes show it.
fn connection(info: &ConnectionInfo) -> Value {
    json!({
        "connection_id": info.connection_id.to_string(),
        "peer_id": info.peer_id.as_str(),
        "node_id": info.node_id.to_string(),
        "address": info.address.to_string(),
    })
}

/// `GET /info`: the graph id, and this node's peer id, node id, addresses and status.
async fn info(graph: web::Data<Addr<GraphActor>>) -> Result<HttpResponse, Failure> {
    let properties = call(&graph, GetProperties, CALL_WAIT).await?;
    let node = call(&graph, GetNodeInfo { node_id: None }, CALL_WAIT).await?;
    let status = call(&graph, GetStatus, CALL_WAIT).await?;
    let addresses: Vec<String> = node.addresses.iter().map(ToString::to_string).collect();
    Ok(HttpResponse::Ok().json(json!({
        "graph_id": properties.graph_id.as_str(),
        "peer_id": node.peer_id.as_str(),
        "node_id": node.node_id.to_string(),
        "addresses": addresses,
        "status": format!("{status:?}"),
    })))
}

/// `GET /connections`: the direct connections.
async fn list(graph: web::Data<Addr<GraphActor>>) -> Result<HttpResponse, Failure> {
    let flags = ConnectionFlags::DIRECT;
    let connections = call(&graph, EnumConnections { flags }, CALL_WAIT).await?;
    let rows: Vec<Value> = connections.iter().map(connection).collect();
    Ok(HttpResponse::Ok().json(rows))
}

/// `POST /connections`: opens a direct connection and answers with its outcome.
async fn open(
    graph: web::Data<Addr<GraphActor>>,
    opens: web::Data<OpenSlots>,
    payload: web::Payload,
) -> Result<HttpResponse, Failure> {
    let (peer_id, address) = open_request(&body(payload, MAX_OPEN_BODY).await?)?;
    let _slot = opens.0.try_acquire().map_err(|_| {
        PeerError::with_cause(
            ResultCode::E_OUTOFMEMORY,
            format!("{MAX_OPENS} opens are under way; try again later"),
        )
    })?;
    // Registered before the open, so that the outcome cannot come before anyone listens.
    let mut outcomes = Outcomes::register(&graph).await?;
    let open = OpenDirectConnection {
        peer_id: peer_id.clone(),
        address,
        expected_key: None,
    };
    let connection_id = call(&graph, open, CALL_WAIT).await?;
    let change = outcomes.of(connection_id).await?;
    match change.status {
        ConnectionStatus::Connected => Ok(HttpResponse::Created().json(json!({
            "connection_id": connection_id.to_string(),
            "peer_id": peer_id.as_str(),
            "node_id": change.node_id.map(|node| node.to_string()),
            "address": address.to_string(),
        }))),
        ConnectionStatus::ConnectionFailed => Err(change
            .failure_reason
            .unwrap_or_else(|| PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED))
            .into()),
        ConnectionStatus::Disconnected => Err(PeerError::with_cause(
            ResultCode::PEER_E_CONNECTION_FAILED,
            "the connection ended as soon as it was made",
        )
        .into()),
    }
}

/// `POST /connections/{id}/messages`: sends the body, as it is, with data type [`TEXT`].
async fn send(
    graph: web::Data<Addr<GraphActor>>,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Failure> {
    let connection_id = connection_id(&id)?;
    let data = body(payload, MAX_DATA_LEN).await?;
    let bytes = data.len();
    let message = SendData {
        connection_id,
        data_type: TEXT,
        data,
    };
    call(&graph, message, SEND_WAIT).await?;
    Ok(HttpResponse::Ok().json(json!({
        "connection_id": connection_id.to_string(),
        "bytes": bytes,
    })))
}

/// `DELETE /connections/{id}`: closes the connection; answers once the peer has read
/// everything sent on it.
async fn close(
    graph: web::Data<Addr<GraphActor>>,
    id: web::Path<String>,
) -> Result<HttpResponse, Failure> {
    let connection_id = connection_id(&id)?;
    call(&graph, CloseDirectConnection { connection_id }, CLOSE_WAIT).await?;
    Ok(HttpResponse::Ok().json(json!({
        "connection_id": connection_id.to_string(),
        "status": "disconnected",
    })))
}

/// One open's DIRECT_CONNECTION registration; it ends when this is dropped, also when
/// actix-web drops the request's handler because the client went away.
struct Outcomes {
    graph: Addr<GraphActor>,
    events: EventStream,
}

impl Outcomes {
    async fn register(graph: &Addr<GraphActor>) -> Result<Self, Failure> {
        let registrations = vec![EventRegistration::new(EventType::DirectConnection)];
        let events = call(graph, RegisterEvent::new(registrations), CALL_WAIT).await?;
        Ok(Outcomes {
            graph: graph.clone(),
            events,
        })
    }

    /// The first CONNECTED, CONNECTION_FAILED or DISCONNECTED of `connection_id`, within
    /// [`OPEN_WAIT`].
    async fn of(&mut self, connection_id: ConnectionId) -> Result<ConnectionChange, Failure> {
        let outcome = async {
            while let Some(event) = self.events.recv().await {
                match event {
                    GraphEvent::DirectConnection(change)
                        if change.connection_id == connection_id =>
                    {
                        return Ok(*change);
                    }
                    // The outcome may have been among the lost events: a listed
                    // connection is up.
                    GraphEvent::EventsLost { .. } => {
                        let flags = ConnectionFlags::DIRECT;
                        let listed = call(&self.graph, EnumConnections { flags }, CALL_WAIT)
                            .await?
                            .into_iter()
                            .find(|info| info.connection_id == connection_id);
                        if let Some(info) = listed {
                            return Ok(ConnectionChange {
                                status: ConnectionStatus::Connected,
                                connection_id,
                                node_id: Some(info.node_id),
                                peer_id: info.peer_id,
                                failure_reason: None,
                            });
                        }
                    }
                    _ => {}
                }
            }
            Err(PeerError::INVALID_GRAPH.into())
        };
        tokio::time::timeout(OPEN_WAIT, outcome)
            .await
            .unwrap_or_else(|_| {
                Err(PeerError::with_cause(
                    ResultCode::PEER_E_TIMEOUT,
                    format!("no outcome for {connection_id} within {OPEN_WAIT:?}"),
                )
                .into())
            })
    }
}

impl Drop for Outcomes {
    fn drop(&mut self) {
        // do_send, not send: a drop cannot wait. One message per open, and opens are
        // bounded by MAX_OPENS, so this cannot flood the mailbox.
        self.graph.do_send(UnregisterEvent {
            handle: self.events.handle(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_parse_as_they_print() {
        let id = ConnectionId::new(0x71f3_a9f0_fefc_397c).expect("not zero");
        assert_eq!(connection_id(&id.to_string()).expect("parses"), id);
        assert_eq!(connection_id(&id.get().to_string()).expect("decimal"), id);
        for bad in [
            "",
            "0",
            "0x0",
            "0x",
            "bob",
            "0x1g",
            "-1",
            "0x10000000000000000",
        ] {
            let failure = connection_id(bad).expect_err(bad);
            assert_eq!(failure.error.code(), ResultCode::E_INVALIDARG, "{bad}");
            assert_eq!(failure.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn open_requests_need_a_peer_id_and_an_address() {
        let (peer, address) =
            open_request(br#"{"peer_id": "bob", "address": "127.0.0.1:4000"}"#).expect("valid");
        assert_eq!(peer.as_str(), "bob");
        assert_eq!(address, "127.0.0.1:4000".parse().expect("address"));

        let code = |body: &[u8]| open_request(body).expect_err("invalid").code();
        assert_eq!(code(b"{not json"), ResultCode::E_INVALIDARG);
        assert_eq!(code(br#"["bob"]"#), ResultCode::E_INVALIDARG);
        assert_eq!(
            code(br#"{"address": "127.0.0.1:4000"}"#),
            ResultCode::E_INVALIDARG
        );
        assert_eq!(
            code(br#"{"peer_id": 7, "address": "127.0.0.1:4000"}"#),
            ResultCode::E_INVALIDARG
        );
        assert_eq!(
            code(br#"{"peer_id": "", "address": "127.0.0.1:4000"}"#),
            ResultCode::E_INVALIDARG
        );
        assert_eq!(
            code(br#"{"peer_id": "bob", "address": "localhost"}"#),
            ResultCode::PEER_E_INVALID_ADDRESS
        );
    }

    #[actix_web::test]
    async fn a_failure_answers_its_code_name_and_cause_with_its_status() {
        let failure = Failure::from(PeerError::CONNECTION_NOT_FOUND.because("closed by bob"));
        let response = failure.error_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .expect("a JSON body");
        let body: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            body,
            json!({
                "hr": "0x80630103",
                "name": "PEER_E_CONNECTION_NOT_FOUND",
                "message": "no connection with that id exists: closed by bob",
            })
        );
    }

    #[test]
    fn codes_map_to_their_statuses() {
        let cases = [
            (ResultCode::E_INVALIDARG, StatusCode::BAD_REQUEST),
            (ResultCode::PEER_E_CONNECT_SELF, StatusCode::BAD_REQUEST),
            (ResultCode::PEER_E_NOT_AUTHORIZED, StatusCode::FORBIDDEN),
            (
                ResultCode::PEER_E_CONNECTION_NOT_FOUND,
                StatusCode::NOT_FOUND,
            ),
            (ResultCode::PEER_E_GRAPH_NOT_READY, StatusCode::CONFLICT),
            (
                ResultCode::PEER_E_CONNECTION_REFUSED,
                StatusCode::BAD_GATEWAY,
            ),
            (
                ResultCode::PEER_E_INVALID_GRAPH,
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (ResultCode::E_OUTOFMEMORY, StatusCode::SERVICE_UNAVAILABLE),
            (ResultCode::PEER_E_TIMEOUT, StatusCode::GATEWAY_TIMEOUT),
            (ResultCode::E_FAIL, StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (code, status) in cases {
            assert_eq!(status_of(code), status, "{code:?}");
        }
    }
}
