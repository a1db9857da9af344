//! # A graph inside an actix application
//!
//! An application that already runs an actix `System` uses a graph by sending messages to
//! the graph's actor, [`GraphActor`], and by receiving the graph's events as messages,
//! [`PeerEvent`], in an actor of its own. No facade, no second runtime, no thread of its
//! own: the graph actor runs on the application's arbiter.
//!
//! The pattern, step by step, as `run` and [`EchoService`] below follow it:
//!
//! 1. **Engine in the System.** Inside a running `System`, [`Engine::new`] uses the
//!    current arbiter rather than starting worker threads. `startup` and `create_graph`
//!    are the only engine calls; [`Graph::addr`](peergraph::Graph::addr) hands over the
//!    graph actor's `Addr<GraphActor>`, and from then on everything is a message.
//! 2. **An application actor.** [`EchoService`] holds the `Addr<GraphActor>` and
//!    implements `Handler<PeerEvent>`.
//! 3. **Register it for events.** Send [`RegisterEventRecipient`] with the actor's own
//!    `Recipient<PeerEvent>`, for DIRECT_CONNECTION (registering for it is what makes the
//!    node accept direct connections) and INCOMING_DATA. Events are delivered with
//!    `try_send`: if the actor's mailbox is full an event is dropped, and the actor later
//!    receives one `EventsLost` with the count. Raise the mailbox capacity
//!    (`ctx.set_mailbox_capacity`) to match the traffic the actor must absorb.
//! 4. **Listen** with [`Listen`]; the reply carries the bound address.
//! 5. **Answer INCOMING_DATA on the same connection** with [`SendData`], using the
//!    event's `connection_id`. The handler sends the message and waits for its reply with
//!    `ctx.wait`, so the actor handles one event at a time and replies leave in the order
//!    the data came in, and a full outbox (backpressure) slows the actor rather than
//!    piling up sends.
//! 6. **Close when asked** (here, when the data is `bye`) with [`CloseDirectConnection`].
//!    Its reply comes once the peer has read everything sent before it; both nodes then
//!    report DIRECT_CONNECTION DISCONNECTED with the connection's id.
//! 7. **Results** are `Result<_, PeerError>` inside actix's `Result<_, MailboxError>`;
//!    [`reply`] flattens the two, a graph actor that no longer runs counting as
//!    `PEER_E_INVALID_GRAPH`.
//!
//! To run by itself, the program also starts a client: a second node, on a second engine
//! in the same `System` (one engine holds a graph id once). The client uses the async
//! facade, which works from actix code too: it connects, sends `hello`, reads the echo,
//! sends `bye`, and sees DISCONNECTED. Then both graphs close, both engines shut down, and
//! the program stops the `System`. Every step is checked; the program exits with an error
//! at the first that differs. It takes well under a second once built:
//!
//! ```text
//! cargo run --release --example embedded_actor
//! ```

use std::time::Duration;

use actix::prelude::*;
use anyhow::{bail, ensure, Context as _, Result};
use bytes::Bytes;
use peergraph::{
    code_of, reply, CloseDirectConnection, CloseGraph, ConnectionStatus, DataType, Engine,
    EventRegistration, EventStream, EventType, GraphActor, GraphEvent, GraphId, GraphOptions,
    GraphProperties, Listen, PeerEvent, PeerId, RegisterEventRecipient, SendData, Version,
};
use tokio::sync::oneshot;
use tracing_subscriber::EnvFilter;

/// The data type of the demo's messages; both nodes agree on it.
const TEXT: DataType = DataType::from_u128(0x8f1e_25c3_6a7d_4b90_b3c4_05e6_d7f8_1a2b);

/// The longest wait for one step. On loopback each takes milliseconds; the bound turns a
/// hang into an error that names the step.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The application actor: echoes every INCOMING_DATA back on its connection, and closes
/// the connection when the data is `bye`. It talks to the graph only through
/// `Addr<GraphActor>`.
struct EchoService {
    graph: Addr<GraphActor>,
    /// Told the outcome of the first close, so that `main` knows the service is done.
    closed: Option<oneshot::Sender<Result<(), peergraph::PeerError>>>,
}

impl Actor for EchoService {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Events arrive by try_send: room for a burst of them while a reply waits on a
        // full outbox.
        ctx.set_mailbox_capacity(256);
    }
}

impl Handler<PeerEvent> for EchoService {
    type Result = ();

    fn handle(&mut self, message: PeerEvent, ctx: &mut Self::Context) {
        match message.event {
            GraphEvent::IncomingData {
                connection_id,
                data,
                ..
            } if &data[..] == b"bye" => {
                say(
                    "service",
                    &format!("<- \"bye\" on {connection_id}: closing"),
                );
                let close = self.graph.send(CloseDirectConnection { connection_id });
                // Wait for the reply before the next event: nothing else on this
                // connection is handled until it is closed.
                ctx.wait(close.into_actor(self).map(|sent, actor, _| {
                    let result = reply(sent);
                    say(
                        "service",
                        &format!("CloseDirectConnection -> {}", code_of(&result)),
                    );
                    if let Some(closed) = actor.closed.take() {
                        let _ = closed.send(result);
                    }
                }));
            }
            GraphEvent::IncomingData {
                connection_id,
                data_type,
                data,
            } => {
                say(
                    "service",
                    &format!(
                        "<- {:?} on {connection_id}: echoing",
                        String::from_utf8_lossy(&data)
                    ),
                );
                let mut echo = b"echo: ".to_vec();
                echo.extend_from_slice(&data);
                let send = self.graph.send(SendData {
                    connection_id,
                    data_type,
                    data: Bytes::from(echo),
                });
                // One reply at a time, in order; a full outbox holds the actor here.
                ctx.wait(send.into_actor(self).map(|sent, _, _| {
                    let result = reply(sent);
                    say("service", &format!("SendData -> {}", code_of(&result)));
                }));
            }
            GraphEvent::DirectConnection(change) => say(
                "service",
                &format!(
                    "<- DIRECT_CONNECTION {:?} {} (peer {})",
                    change.status, change.connection_id, change.peer_id
                ),
            ),
            GraphEvent::EventsLost { count } => {
                say("service", &format!("<- {count} events lost (mailbox full)"));
            }
            GraphEvent::StatusChanged { .. }
            | GraphEvent::PropertyChanged
            | GraphEvent::RecordChanged { .. } => {}
        }
    }
}

#[actix::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let outcome = run().await;
    // The application decides when its System ends; here, once the demo is over.
    System::current().stop();
    outcome
}

async fn run() -> Result<()> {
    // 1. The engine runs its graph actors on this System's arbiter.
    let engine = Engine::new().context("engine")?;
    engine.startup(Version::V1_0)?;
    let graph: Addr<GraphActor> = engine
        .create_graph(properties("service")?, GraphOptions::default())?
        .addr();

    // 2. The application actor, holding the graph actor's address.
    let (closed_tx, closed_rx) = oneshot::channel();
    let service = EchoService {
        graph: graph.clone(),
        closed: Some(closed_tx),
    }
    .start();

    // 3. Register it for DIRECT_CONNECTION and INCOMING_DATA.
    let registration = reply(
        graph
            .send(RegisterEventRecipient {
                registrations: vec![
                    EventRegistration::new(EventType::DirectConnection),
                    EventRegistration::new(EventType::IncomingData),
                ],
                recipient: service.recipient(),
            })
            .await,
    )?;
    say(
        "service",
        &format!(
            "RegisterEventRecipient -> S_OK (handle {})",
            registration.get()
        ),
    );

    // 4. Listen on a free loopback port.
    let address = reply(
        graph
            .send(Listen {
                address: "127.0.0.1:0".parse()?,
            })
            .await,
    )?;
    say("service", &format!("Listen -> S_OK, at {address}"));

    // The client: a second node on its own engine, using the facade.
    let client_engine = Engine::new().context("client engine")?;
    client_engine.startup(Version::V1_0)?;
    let client = client_engine.create_graph(properties("client")?, GraphOptions::default())?;
    let mut events = client
        .register_event(vec![
            EventRegistration::new(EventType::DirectConnection),
            EventRegistration::new(EventType::IncomingData),
        ])
        .await?;
    let id = client.open_direct_connection("service", address).await?;
    say("client", &format!("OpenDirectConnection -> S_OK, id {id}"));
    wait(&mut events, "CONNECTED", |event| {
        matches!(event, GraphEvent::DirectConnection(change)
            if change.connection_id == id && change.status == ConnectionStatus::Connected)
    })
    .await?;
    say("client", "<- DIRECT_CONNECTION Connected");

    // 5. The service answers on the same connection.
    client.send_data(id, TEXT, &b"hello"[..]).await?;
    say("client", "SendData(\"hello\") -> S_OK");
    let echo = wait(&mut events, "the echo", |event| {
        matches!(event, GraphEvent::IncomingData { .. })
    })
    .await?;
    let GraphEvent::IncomingData {
        connection_id,
        data,
        ..
    } = echo
    else {
        bail!("expected INCOMING_DATA");
    };
    ensure!(
        connection_id == id && &data[..] == b"echo: hello",
        "client: got {data:?} on {connection_id}, expected \"echo: hello\" on {id}"
    );
    say("client", "<- \"echo: hello\" on the same connection");

    // 6. Asked to, the service closes the connection; the client sees DISCONNECTED.
    client.send_data(id, TEXT, &b"bye"[..]).await?;
    say("client", "SendData(\"bye\") -> S_OK");
    wait(&mut events, "DISCONNECTED", |event| {
        matches!(event, GraphEvent::DirectConnection(change)
            if change.connection_id == id && change.status == ConnectionStatus::Disconnected)
    })
    .await?;
    say("client", "<- DIRECT_CONNECTION Disconnected");
    let closed = tokio::time::timeout(STEP_TIMEOUT, closed_rx)
        .await
        .context("the service did not report its close")?
        .context("the service stopped")?;
    ensure!(
        closed.is_ok(),
        "service: CloseDirectConnection returned {closed:?}"
    );

    // Done: close both graphs (the service's by message too) and shut the engines down.
    reply(graph.send(CloseGraph).await)?;
    client.close().await?;
    engine.shutdown().await?;
    client_engine.shutdown().await?;
    println!("\nThe service echoed and closed by messages alone; every step returned S_OK.");
    Ok(())
}

fn properties(peer: &str) -> Result<GraphProperties> {
    Ok(GraphProperties::new(
        GraphId::new("echo")?,
        PeerId::new(peer)?,
    ))
}

/// Waits (bounded) for the first event that `wanted` accepts, skipping others.
async fn wait(
    events: &mut EventStream,
    what: &str,
    wanted: impl Fn(&GraphEvent) -> bool,
) -> Result<GraphEvent> {
    tokio::time::timeout(STEP_TIMEOUT, async {
        while let Some(event) = events.recv().await {
            if wanted(&event) {
                return Ok(event);
            }
        }
        bail!("client: the event stream ended while waiting for {what}")
    })
    .await
    .with_context(|| format!("client: no {what} within {STEP_TIMEOUT:?}"))?
}

/// One line of the transcript: who, and what happened.
fn say(who: &str, what: &str) {
    println!("{who:<8} {what}");
}
