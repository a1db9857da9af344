//! # peergraph inside an actix-web service
//!
//! A web service that holds a graph's `Addr<GraphActor>` in its app data and opens,
//! lists, sends on and closes direct connections over HTTP. It is the shape for an actix
//! application that embeds peergraph and wants to drive it from HTTP handlers:
//!
//! 1. **One System for both.** `#[actix_web::main]` starts an actix `System`; inside it
//!    [`Engine::new`] runs the graph actor on the current arbiter, with no threads or
//!    runtime of its own (as in the `embedded_actor` example).
//! 2. **The address in the app data.** [`Gateway::new`] wraps
//!    [`Graph::addr`](peergraph::Graph::addr) in `web::Data<Addr<GraphActor>>`, and
//!    every actix-web worker's `App` gets it through [`Gateway::configure`]. The workers
//!    run on threads of their own; an `Addr` is `Send`, and a message sent from a
//!    handler reaches the graph actor on the main arbiter and its reply comes back.
//! 3. **Handlers send messages.** Each route sends one of the graph's messages
//!    (OpenDirectConnection, SendData, CloseDirectConnection, EnumConnections) and turns
//!    its `Result<_, PeerError>` into JSON, or into an error body with the result code's
//!    name and an HTTP status from one table,
//!    [`status_of`](peergraph_examples::web::status_of). The routes are in
//!    `peergraph_examples::web` (examples/web.rs), so that the test calls the same ones.
//! 4. **Events.** The node registers for DIRECT_CONNECTION (which is what makes it take
//!    direct connections) and INCOMING_DATA, and prints them as they come.
//! 5. **Shutdown.** On SIGINT or SIGTERM actix-web stops taking requests and lets the
//!    running ones finish; then every direct connection is closed gracefully, the graph
//!    closes and the engine shuts down.
//!
//! Run it, then talk to it with curl (with `--features web`: the example is built only
//! with it):
//!
//! ```text
//! cargo run --example web_gateway --features web -- --bind 127.0.0.1:8080
//! curl -s localhost:8080/info
//! curl -s -d '{"peer_id": "bob", "address": "127.0.0.1:40711"}' localhost:8080/connections
//! curl -s --data-binary 'hello, bob' localhost:8080/connections/0x71f3a9f0fefc397c/messages
//! curl -s localhost:8080/connections
//! curl -s -X DELETE localhost:8080/connections/0x71f3a9f0fefc397c
//! ```
//!
//! where bob is a `peer_host` of graph `chat` started with `--accept-direct` (it prints
//! the messages as text: they are sent with the host's text data type). The routes and
//! their answers are listed in the `web` module's documentation.

use std::net::SocketAddr;
use std::time::Duration;

use actix::Addr;
use actix_web::{App, HttpServer};
use anyhow::{Context as _, Result};
use clap::Parser;
use peergraph::{
    reply, CloseDirectConnection, CloseGraph, ConnectionFlags, ConnectionStatus, Engine,
    EnumConnections, EventRegistration, EventStream, EventType, GetNodeInfo, GraphActor,
    GraphEvent, GraphId, GraphOptions, GraphProperties, Listen, PeerId, RegisterEvent, Version,
};
use peergraph_examples::web::Gateway;
use tracing_subscriber::EnvFilter;

/// How long actix-web lets requests that are running finish once a signal came (a
/// DELETE waits for the peer to read everything).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the direct connections get to close gracefully at exit; the graph's close
/// ends whatever is left.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the event printer gets, once the graph is closed, to print what is queued.
const EVENT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest part of a message's data that the event printer shows.
const PREVIEW_CHARS: usize = 80;

/// peergraph in an actix-web service: direct connections of a graph over HTTP.
#[derive(Parser, Debug)]
#[command(after_help = "\
Routes:
  GET    /info                        this node: graph id, peer id, node id, addresses
  GET    /connections                 the direct connections
  POST   /connections                 open one: {\"peer_id\": \"bob\", \"address\": \"127.0.0.1:4000\"}
  POST   /connections/ID/messages     send the body (at most 1 MiB) on connection ID
  DELETE /connections/ID              close connection ID (answers once the peer has all)")]
struct Args {
    /// Where the HTTP server listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// The graph's id.
    #[arg(long, default_value = "chat")]
    graph: String,
    /// This node's peer id.
    #[arg(long, default_value = "gateway")]
    peer: String,
    /// Where the node listens for direct connections (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[actix_web::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    // The engine runs the graph actor on this System's arbiter.
    let engine = Engine::new().context("engine")?;
    engine.startup(Version::V1_0)?;
    let properties = GraphProperties::new(
        GraphId::new(args.graph.as_str()).context("--graph")?,
        PeerId::new(args.peer.as_str()).context("--peer")?,
    );
    let graph: Addr<GraphActor> = engine
        .create_graph(properties, GraphOptions::default())?
        .addr();

    // DIRECT_CONNECTION makes the node take direct connections; both are printed.
    let registrations = vec![
        EventRegistration::new(EventType::DirectConnection),
        EventRegistration::new(EventType::IncomingData),
    ];
    let events = reply(graph.send(RegisterEvent::new(registrations)).await)?;
    let printer = actix_web::rt::spawn(print_events(events));
    let listening = reply(
        graph
            .send(Listen {
                address: args.listen,
            })
            .await,
    )
    .with_context(|| format!("listening at {}", args.listen))?;
    let node = reply(graph.send(GetNodeInfo { node_id: None }).await)?;
    println!(
        "graph     {}  peer {}  node {}  listening {listening}",
        args.graph, args.peer, node.node_id
    );

    let gateway = Gateway::new(graph.clone());
    let server = HttpServer::new(move || App::new().configure(|config| gateway.configure(config)))
        .shutdown_timeout(SHUTDOWN_TIMEOUT.as_secs())
        .bind(args.bind)
        .with_context(|| format!("--bind {}", args.bind))?;
    for address in server.addrs() {
        println!("http      http://{address}");
    }
    // Returns once SIGINT or SIGTERM stopped the server and its requests finished.
    let served = server.run().await;
    println!("stopping  closing the connections and the graph");

    let closed = close_all(&graph).await;
    tracing::debug!(closed, "direct connections closed");
    // CloseGraph ends what is left (peers see DISCONNECTED) and the event stream.
    let graph_closed = reply(graph.send(CloseGraph).await);
    if tokio::time::timeout(EVENT_DRAIN_TIMEOUT, printer)
        .await
        .is_err()
    {
        tracing::warn!("the event printer did not finish");
    }
    engine.shutdown().await?;
    served.context("the HTTP server")?;
    graph_closed?;
    println!("stopped");
    Ok(())
}

/// Closes every direct connection gracefully, all at once, within [`CLOSE_TIMEOUT`];
/// returns how many closed.
async fn close_all(graph: &Addr<GraphActor>) -> usize {
    let flags = ConnectionFlags::DIRECT;
    let connections = match reply(graph.send(EnumConnections { flags }).await) {
        Ok(connections) => connections,
        Err(error) => {
            tracing::warn!(%error, "listing the connections to close");
            return 0;
        }
    };
    let mut closing = tokio::task::JoinSet::new();
    for info in connections {
        let connection_id = info.connection_id;
        let close = graph.send(CloseDirectConnection { connection_id });
        closing.spawn(async move { (connection_id, reply(close.await)) });
    }
    let mut closed = 0;
    let all = async {
        while let Some(done) = closing.join_next().await {
            match done {
                Ok((_, Ok(()))) => closed += 1,
                Ok((id, Err(error))) => tracing::debug!(%id, %error, "closing at exit"),
                Err(error) => tracing::warn!(%error, "closing at exit"),
            }
        }
    };
    if tokio::time::timeout(CLOSE_TIMEOUT, all).await.is_err() {
        tracing::warn!("some connections did not close in time; the graph closes them");
    }
    closed
}

/// Prints the graph's events, one line each, until the registration ends.
async fn print_events(mut events: EventStream) {
    while let Some(event) = events.recv().await {
        match event {
            GraphEvent::DirectConnection(change) => {
                let what = match change.status {
                    ConnectionStatus::Connected => "connected",
                    ConnectionStatus::Disconnected => "disconnected",
                    ConnectionStatus::ConnectionFailed => "failed",
                };
                let reason = change
                    .failure_reason
                    .map(|reason| format!("  {reason}"))
                    .unwrap_or_default();
                println!(
                    "event     {what:<13}{}  peer {}{reason}",
                    change.connection_id, change.peer_id
                );
            }
            GraphEvent::IncomingData {
                connection_id,
                data,
                ..
            } => {
                let text = String::from_utf8_lossy(&data);
                let preview: String = text.chars().take(PREVIEW_CHARS).collect();
                let more = if preview.len() < text.len() {
                    "…"
                } else {
                    ""
                };
                println!(
                    "event     {:<13}{connection_id}  {} bytes  {preview:?}{more}",
                    "data",
                    data.len()
                );
            }
            GraphEvent::EventsLost { count } => println!("event     {count} events lost"),
            GraphEvent::StatusChanged { .. }
            | GraphEvent::PropertyChanged
            | GraphEvent::RecordChanged { .. } => {}
        }
    }
}
