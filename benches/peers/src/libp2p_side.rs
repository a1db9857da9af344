//! rust-libp2p: two swarms over the QUIC transport (libp2p-quic, quinn 0.11 underneath),
//! each driven by a task on its own current-thread runtime thread ([`RuntimeThread`]), with
//! the node's application code on the same thread. The swarm's defaults stand except that
//! connections are not closed for idleness (the idle timeout is an hour) and a dial may add
//! a connection to a peer already connected (`PeerCondition::Always`).
//!
//! The stream protocol is [`OneStream`], a behaviour of ours: on every connection the dialer
//! opens exactly one stream for `/peergraph-bench/1` (negotiated by multistream-select, as
//! every libp2p stream is) and the listener accepts it; both ends hand it to the
//! application. `libp2p-stream` would do the same work but picks a random connection to a
//! peer for each stream it opens, and drops inbound streams when its queue (one slot) is
//! full, so it cannot give each of many connections to one peer its own stream.
//!
//! - Messages are peergraph's DATA frames ([`crate::frames`]); the stream is a
//!   `futures::AsyncRead + AsyncWrite`, and small messages are one `write_all` each.
//! - Close: libp2p's stream close only finishes the QUIC stream (nothing waits for the
//!   peer), and its connection close is QUIC's immediate close, which discards what was not
//!   sent yet. No call reports delivery, so the strongest close is built on the stream: the
//!   closer closes its side, the peer reads to the end and closes its side, the closer reads
//!   to the end (now the peer's application has read everything), then closes the
//!   connection; it is done when the peer's swarm reports the connection closed.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::ReadyUpgrade;
use libp2p::core::Endpoint;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, SubstreamProtocol, SwarmEvent, THandler, THandlerInEvent, THandlerOutEvent,
    ToSwarm,
};
use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol};
use tokio::sync::{mpsc, Mutex};

use crate::frames::{data_frame, Splitter, HELLO};
use crate::job::{Job, Outcome, OPEN_WINDOW};
use crate::runtime::RuntimeThread;

/// The stream protocol both swarms speak.
const PROTOCOL: StreamProtocol = StreamProtocol::new("/peergraph-bench/1");

/// What a connection's handler hands up: its one stream, or why it could not be opened.
type Opened = Result<Stream, String>;

/// The connection handler of [`OneStream`]: the dialer's asks for one outbound stream as
/// soon as the connection is up; every end accepts inbound streams of [`PROTOCOL`].
pub struct OneStreamHandler {
    wants_stream: bool,
    opened: VecDeque<Opened>,
}

impl ConnectionHandler for OneStreamHandler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Opened;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL), ())
    }

    fn connection_keep_alive(&self) -> bool {
        true
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        if let Some(opened) = self.opened.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(opened));
        }
        if self.wants_stream {
            self.wants_stream = false;
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL), ()),
            });
        }
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<'_, Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: stream,
                ..
            })
            | ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: stream,
                ..
            }) => self.opened.push_back(Ok(stream)),
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => {
                self.opened.push_back(Err(error.to_string()));
            }
            _ => {}
        }
    }
}

/// One stream per connection, opened by the dialer, handed to the application with the
/// connection's id.
#[derive(Default)]
pub struct OneStream {
    opened: VecDeque<(ConnectionId, Opened)>,
}

impl NetworkBehaviour for OneStream {
    type ConnectionHandler = OneStreamHandler;
    type ToSwarm = (ConnectionId, Opened);

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(OneStreamHandler {
            wants_stream: false,
            opened: VecDeque::new(),
        })
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(OneStreamHandler {
            wants_stream: true,
            opened: VecDeque::new(),
        })
    }

    fn on_swarm_event(&mut self, _: FromSwarm<'_>) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.opened.push_back((connection, event));
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.opened.pop_front() {
            Some(opened) => Poll::Ready(ToSwarm::GenerateEvent(opened)),
            None => Poll::Pending,
        }
    }
}

/// What the application asks of its swarm.
enum Command {
    Dial(DialOpts),
    Close(ConnectionId),
}

/// What a swarm tells its application.
enum Event {
    /// A connection's stream is open (and negotiated).
    Stream(ConnectionId, Stream),
    /// A connection has closed, at this instant.
    Closed(ConnectionId, Instant),
    /// A dial, a connection or its stream failed.
    Failed(String),
}

/// One node: a swarm on its own thread, driven by a task that takes [`Command`]s and
/// forwards [`Event`]s.
struct Node {
    thread: RuntimeThread,
    commands: mpsc::UnboundedSender<Command>,
    events: Arc<Mutex<mpsc::UnboundedReceiver<Event>>>,
    peer_id: PeerId,
    address: Multiaddr,
}

impl Node {
    async fn start(name: &str) -> anyhow::Result<Node> {
        let thread = RuntimeThread::start(name)?;
        let (commands, mut command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        thread.spawn(async move {
            let swarm = async {
                let mut swarm = libp2p::SwarmBuilder::with_new_identity()
                    .with_tokio()
                    .with_quic()
                    .with_behaviour(|_| OneStream::default())?
                    .with_swarm_config(|config| {
                        config.with_idle_connection_timeout(Duration::from_secs(3600))
                    })
                    .build();
                swarm.listen_on("/ip4/127.0.0.1/udp/0/quic-v1".parse()?)?;
                let address = loop {
                    if let SwarmEvent::NewListenAddr { address, .. } =
                        swarm.select_next_some().await
                    {
                        break address;
                    }
                };
                anyhow::Ok((swarm, address))
            };
            let mut swarm = match swarm.await {
                Ok((swarm, address)) => {
                    let _ = ready_tx.send(Ok((*swarm.local_peer_id(), address)));
                    swarm
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                    return;
                }
            };
            let send = |event: Event| {
                let _ = event_tx.send(event);
            };
            loop {
                tokio::select! {
                    command = command_rx.recv() => match command {
                        Some(Command::Dial(opts)) => {
                            if let Err(error) = swarm.dial(opts) {
                                send(Event::Failed(format!("dial: {error}")));
                            }
                        }
                        Some(Command::Close(connection)) => {
                            swarm.close_connection(connection);
                        }
                        None => break,
                    },
                    event = swarm.select_next_some() => match event {
                        SwarmEvent::Behaviour((connection, Ok(stream))) => {
                            send(Event::Stream(connection, stream));
                        }
                        SwarmEvent::Behaviour((_, Err(error))) => {
                            send(Event::Failed(format!("stream: {error}")));
                        }
                        SwarmEvent::ConnectionClosed { connection_id, .. } => {
                            send(Event::Closed(connection_id, Instant::now()));
                        }
                        SwarmEvent::OutgoingConnectionError { error, .. } => {
                            send(Event::Failed(format!("outgoing connection: {error}")));
                        }
                        SwarmEvent::IncomingConnectionError { error, .. } => {
                            send(Event::Failed(format!("incoming connection: {error}")));
                        }
                        _ => {}
                    },
                }
            }
        });
        let (peer_id, address) = ready_rx.await.context("swarm task ended")??;
        Ok(Node {
            thread,
            commands,
            events: Arc::new(Mutex::new(events)),
            peer_id,
            address,
        })
    }
}

/// Asks `commands`' swarm to dial `peer` at `address` as a new connection; returns its id.
fn dial(
    commands: &mpsc::UnboundedSender<Command>,
    peer: PeerId,
    address: &Multiaddr,
) -> anyhow::Result<ConnectionId> {
    let opts = DialOpts::peer_id(peer)
        .addresses(vec![address.clone()])
        .condition(PeerCondition::Always)
        .build();
    let connection = opts.connection_id();
    commands
        .send(Command::Dial(opts))
        .map_err(|_| anyhow::anyhow!("swarm task ended"))?;
    Ok(connection)
}

/// The next event, failing on [`Event::Failed`].
async fn next_event(events: &mut mpsc::UnboundedReceiver<Event>) -> anyhow::Result<Event> {
    match events.recv().await {
        Some(Event::Failed(error)) => bail!("{error}"),
        Some(event) => Ok(event),
        None => bail!("swarm task ended"),
    }
}

/// The stream of connection `id` once it is open (other events skipped).
async fn stream_of(
    events: &mut mpsc::UnboundedReceiver<Event>,
    id: ConnectionId,
) -> anyhow::Result<Stream> {
    loop {
        match next_event(events).await? {
            Event::Stream(connection, stream) if connection == id => return Ok(stream),
            Event::Closed(connection, _) if connection == id => bail!("connection closed early"),
            _ => {}
        }
    }
}

/// The next inbound stream, with its connection (other events skipped).
async fn next_stream(
    events: &mut mpsc::UnboundedReceiver<Event>,
) -> anyhow::Result<(ConnectionId, Stream)> {
    loop {
        if let Event::Stream(connection, stream) = next_event(events).await? {
            return Ok((connection, stream));
        }
    }
}

/// Reads whole frames from a stream.
struct Frames {
    splitter: Splitter,
    buffer: Vec<u8>,
}

impl Frames {
    fn new() -> Frames {
        Frames {
            splitter: Splitter::new(),
            buffer: vec![0; 64 * 1024],
        }
    }

    async fn next(&mut self, stream: &mut Stream) -> anyhow::Result<bytes::Bytes> {
        loop {
            if let Some(frame) = self.splitter.next_frame() {
                return Ok(frame);
            }
            match stream.read(&mut self.buffer).await? {
                0 => bail!("stream finished inside a frame"),
                n => self.splitter.push(&self.buffer[..n]),
            }
        }
    }
}

/// Two libp2p nodes: alice (dials) and bob (listens), each on its own thread.
pub struct Libp2pPair {
    alice: Node,
    bob: Node,
}

/// One end of a link: the connection's id (at this end) and its stream.
struct End {
    connection: ConnectionId,
    stream: Stream,
}

impl Libp2pPair {
    /// Two nodes listening on 127.0.0.1.
    pub async fn start() -> anyhow::Result<Libp2pPair> {
        let alice = Node::start("libp2p-alice").await?;
        let bob = Node::start("libp2p-bob").await?;
        Ok(Libp2pPair { alice, bob })
    }

    /// A link from alice to bob with its stream open at both ends (bob read the HELLO).
    async fn link(&self) -> anyhow::Result<(End, End)> {
        let bob_events = self.bob.events.clone();
        let accept = self.bob.thread.spawn(async move {
            let mut events = bob_events.lock().await;
            let (connection, mut stream) = next_stream(&mut events).await?;
            let mut hello = [0u8; HELLO.len()];
            stream.read_exact(&mut hello).await?;
            anyhow::Ok(End { connection, stream })
        });
        let (commands, events) = (self.alice.commands.clone(), self.alice.events.clone());
        let (peer, address) = (self.bob.peer_id, self.bob.address.clone());
        let alice = self
            .alice
            .thread
            .run(async move {
                let mut events = events.lock().await;
                let connection = dial(&commands, peer, &address)?;
                let mut stream = stream_of(&mut events, connection).await?;
                stream.write_all(HELLO).await?;
                anyhow::Ok(End { connection, stream })
            })
            .await??;
        let bob = accept.await??;
        Ok((alice, bob))
    }

    /// Writes `count` payloads of `len` bytes with `write_all`; returns the time until bob
    /// has read them all.
    pub async fn bulk(&self, count: usize, len: usize) -> anyhow::Result<Duration> {
        let (alice, bob) = self.link().await?;
        let payload = vec![0x5a; len];
        let total = count * len;
        let start = Instant::now();
        let receive = self.bob.thread.run(async move {
            let mut bob = bob;
            let mut buffer = vec![0u8; 64 * 1024];
            let mut received = 0;
            while received < total {
                match bob.stream.read(&mut buffer).await? {
                    0 => bail!("stream finished early"),
                    n => received += n,
                }
            }
            anyhow::Ok((Instant::now(), bob))
        });
        let send = self.alice.thread.run(async move {
            let mut alice = alice;
            for _ in 0..count {
                alice.stream.write_all(&payload).await?;
            }
            anyhow::Ok(alice)
        });
        let (received, sent) = tokio::join!(receive, send);
        let (end, _bob) = received??;
        let _alice = sent??;
        Ok(end - start)
    }

    /// Writes `count` DATA frames of `len`-byte payloads, one `write_all` each; returns the
    /// time until bob has read and split every frame.
    pub async fn small_messages(&self, count: usize, len: usize) -> anyhow::Result<Duration> {
        let (alice, bob) = self.link().await?;
        let frame = data_frame(&vec![0x5a; len]);
        let start = Instant::now();
        let receive = self.bob.thread.run(async move {
            let mut bob = bob;
            let mut frames = Frames::new();
            for _ in 0..count {
                frames.next(&mut bob.stream).await?;
            }
            anyhow::Ok((Instant::now(), bob))
        });
        let send = self.alice.thread.run(async move {
            let mut alice = alice;
            for _ in 0..count {
                alice.stream.write_all(&frame).await?;
            }
            anyhow::Ok(alice)
        });
        let (received, sent) = tokio::join!(receive, send);
        let (end, _bob) = received??;
        let _alice = sent??;
        Ok(end - start)
    }

    /// Round trips of one `len`-byte DATA frame: alice writes it, bob reads it and writes it
    /// back, alice reads it.
    pub async fn echo(
        &self,
        warmup: usize,
        samples: usize,
        len: usize,
    ) -> anyhow::Result<Vec<Duration>> {
        let (alice, bob) = self.link().await?;
        let frame = data_frame(&vec![0x5a; len]);
        let total = warmup + samples;
        let respond = self.bob.thread.run(async move {
            let mut bob = bob;
            let mut frames = Frames::new();
            for _ in 0..total {
                let frame = frames.next(&mut bob.stream).await?;
                bob.stream.write_all(&frame).await?;
            }
            anyhow::Ok(bob)
        });
        let request = self.alice.thread.run(async move {
            let mut alice = alice;
            let mut frames = Frames::new();
            let mut rtts = Vec::with_capacity(samples);
            for round in 0..total {
                let start = Instant::now();
                alice.stream.write_all(&frame).await?;
                frames.next(&mut alice.stream).await?;
                if round >= warmup {
                    rtts.push(start.elapsed());
                }
            }
            anyhow::Ok((rtts, alice))
        });
        let (requested, responded) = tokio::join!(request, respond);
        let (rtts, _alice) = requested??;
        let _bob = responded??;
        Ok(rtts)
    }

    /// Bob's side of the connection metrics: for every inbound stream, reads the HELLO and
    /// reports the link established, then reads to the end and closes its own side; reports
    /// each connection's close with the instant bob's swarm saw it.
    fn serve_closes(&self) -> (mpsc::Receiver<Seen>, tokio::task::JoinHandle<()>) {
        let (seen, receiver) = mpsc::channel(1024);
        let events = self.bob.events.clone();
        let server = self.bob.thread.spawn(async move {
            let mut events = events.lock().await;
            loop {
                match next_event(&mut events).await {
                    Ok(Event::Stream(_, mut stream)) => {
                        let seen = seen.clone();
                        tokio::spawn(async move {
                            let mut hello = [0u8; HELLO.len()];
                            if stream.read_exact(&mut hello).await.is_err() {
                                return;
                            }
                            let _ = seen.send(Seen::Established).await;
                            let mut rest = [0u8; 64];
                            while let Ok(n) = stream.read(&mut rest).await {
                                if n == 0 {
                                    break;
                                }
                            }
                            let _ = stream.close().await;
                        });
                    }
                    Ok(Event::Closed(_, at)) => {
                        let _ = seen.send(Seen::Closed(at)).await;
                    }
                    Ok(Event::Failed(_)) => {}
                    Err(error) => {
                        let _ = seen.send(Seen::Failed(error.to_string())).await;
                        return;
                    }
                }
            }
        });
        (receiver, server)
    }

    /// `cycles` times: dial, handshake, open the stream until bob has it, and the strongest
    /// close ([`close_link`]) until bob's swarm saw the connection close.
    pub async fn open_close_cycles(&self, cycles: usize) -> anyhow::Result<Duration> {
        let (mut seen, server) = self.serve_closes();
        let (commands, events) = (self.alice.commands.clone(), self.alice.events.clone());
        let (peer, address) = (self.bob.peer_id, self.bob.address.clone());
        let outcome = self
            .alice
            .thread
            .run(async move {
                let mut events = events.lock().await;
                let start = Instant::now();
                for _ in 0..cycles {
                    let end = open_link(&commands, &mut events, peer, &address, &mut seen).await?;
                    close_link(&commands, end, &mut seen).await?;
                }
                anyhow::Ok(start.elapsed())
            })
            .await;
        server.abort();
        outcome?
    }

    /// `samples` links, each made (untimed, until bob has its stream) and then closed by
    /// alice ([`close_link`]): the time from closing the stream until bob's swarm saw the
    /// connection close.
    pub async fn close_latencies(&self, samples: usize) -> anyhow::Result<Vec<Duration>> {
        let (mut seen, server) = self.serve_closes();
        let (commands, events) = (self.alice.commands.clone(), self.alice.events.clone());
        let (peer, address) = (self.bob.peer_id, self.bob.address.clone());
        let outcome = self
            .alice
            .thread
            .run(async move {
                let mut events = events.lock().await;
                let mut latencies = Vec::with_capacity(samples);
                for _ in 0..samples {
                    let end = open_link(&commands, &mut events, peer, &address, &mut seen).await?;
                    // Both nodes' threads idle a while first, as peergraph's sample does.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let start = Instant::now();
                    let at = close_link(&commands, end, &mut seen).await?;
                    latencies.push(at - start);
                }
                anyhow::Ok(latencies)
            })
            .await;
        server.abort();
        outcome?
    }

    /// Opens `count` connections from alice to bob, each with its stream open at both ends
    /// and a task at each end waiting to read from it, at most `window` dialing at once.
    pub async fn open_many(&self, count: usize, window: usize) -> anyhow::Result<()> {
        let bob_events = self.bob.events.clone();
        let accept = self.bob.thread.spawn(async move {
            let mut events = bob_events.lock().await;
            let (ready, mut ready_rx) = mpsc::channel::<()>(1024);
            let mut accepted = 0;
            while accepted < count {
                tokio::select! {
                    stream = next_stream(&mut events) => {
                        let (_, mut stream) = stream?;
                        let ready = ready.clone();
                        tokio::spawn(async move {
                            let mut hello = [0u8; HELLO.len()];
                            if stream.read_exact(&mut hello).await.is_ok() {
                                let _ = ready.send(()).await;
                                idle(stream).await;
                            }
                        });
                    }
                    Some(()) = ready_rx.recv() => accepted += 1,
                }
            }
            anyhow::Ok(())
        });
        let (commands, events) = (self.alice.commands.clone(), self.alice.events.clone());
        let (peer, address) = (self.bob.peer_id, self.bob.address.clone());
        self.alice
            .thread
            .run(async move {
                let mut events = events.lock().await;
                let (mut opened, mut connected) = (0, 0);
                while connected < count {
                    while opened < count && opened - connected < window {
                        dial(&commands, peer, &address)?;
                        opened += 1;
                    }
                    if let Event::Stream(_, mut stream) = next_event(&mut events).await? {
                        connected += 1;
                        tokio::spawn(async move {
                            if stream.write_all(HELLO).await.is_ok() {
                                idle(stream).await;
                            }
                        });
                    }
                }
                anyhow::Ok(())
            })
            .await??;
        accept.await??;
        Ok(())
    }
}

/// Dials bob, waits for the connection's stream, writes the HELLO; returns once bob has
/// read it.
async fn open_link(
    commands: &mpsc::UnboundedSender<Command>,
    events: &mut mpsc::UnboundedReceiver<Event>,
    peer: PeerId,
    address: &Multiaddr,
    seen: &mut mpsc::Receiver<Seen>,
) -> anyhow::Result<End> {
    let connection = dial(commands, peer, address)?;
    let mut stream = stream_of(events, connection).await?;
    stream.write_all(HELLO).await?;
    match seen.recv().await {
        Some(Seen::Established) => Ok(End { connection, stream }),
        Some(Seen::Failed(error)) => bail!("bob: {error}"),
        _ => bail!("bob did not establish the link"),
    }
}

/// The strongest close libp2p's calls allow: close our side of the stream, read until bob
/// has closed his (so bob's application has read everything), close the connection;
/// returns when bob's swarm reported the connection closed.
async fn close_link(
    commands: &mpsc::UnboundedSender<Command>,
    mut end: End,
    seen: &mut mpsc::Receiver<Seen>,
) -> anyhow::Result<Instant> {
    end.stream.close().await?;
    let mut rest = [0u8; 64];
    while end.stream.read(&mut rest).await? > 0 {}
    commands
        .send(Command::Close(end.connection))
        .map_err(|_| anyhow::anyhow!("swarm task ended"))?;
    match seen.recv().await {
        Some(Seen::Closed(at)) => Ok(at),
        Some(Seen::Failed(error)) => bail!("bob: {error}"),
        _ => bail!("bob did not see the close"),
    }
}

/// What bob reports in the connection metrics.
enum Seen {
    Established,
    Closed(Instant),
    Failed(String),
}

/// An idle link end: waits for data that never comes, holding the stream.
async fn idle(mut stream: Stream) {
    let mut buffer = [0u8; 64];
    let _ = stream.read(&mut buffer).await;
}

/// Runs `body` on a fresh pair; the pair's swarms end with it.
pub async fn with_pair<T>(
    timeout: Duration,
    body: impl AsyncFnOnce(&Libp2pPair) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let pair = Libp2pPair::start().await?;
    tokio::time::timeout(timeout, body(&pair))
        .await
        .context("libp2p side timed out")
        .and_then(|outcome| outcome)
}

/// Runs `job` on a fresh pair.
///
/// # Errors
/// When the pair cannot be made, the job fails or `timeout` passes.
pub async fn run(job: Job, timeout: Duration) -> anyhow::Result<Outcome> {
    with_pair(timeout, async |pair| match job {
        Job::Bulk { count, len } => pair.bulk(count, len).await.map(Outcome::Took),
        Job::Small { count, len } => pair.small_messages(count, len).await.map(Outcome::Took),
        Job::Cycles(cycles) => pair.open_close_cycles(cycles).await.map(Outcome::Took),
        Job::Closes(samples) => pair.close_latencies(samples).await.map(Outcome::Samples),
        Job::Echo {
            warmup,
            samples,
            len,
        } => pair.echo(warmup, samples, len).await.map(Outcome::Samples),
    })
    .await
}

/// The `idle_memory` child's work: see [`crate::memory`].
///
/// # Errors
/// When a link cannot be made within `timeout`.
pub async fn idle_memory(connections: usize, timeout: Duration) -> anyhow::Result<f64> {
    with_pair(timeout, async |pair| {
        pair.close_latencies(1).await?;
        crate::memory::per_link(connections, pair.open_many(connections, OPEN_WINDOW)).await
    })
    .await
}
