//! peergraph: two engines in this process on 127.0.0.1, each embedded in an actix system on
//! a thread of its own ([`Host`]): the engine's graph and connection actors and the node's
//! application code share that thread's current-thread runtime, as the other systems'
//! endpoints and applications share a [`RuntimeThread`](crate::runtime::RuntimeThread).
//! The application uses only the public async facade ([`Graph`], [`EventStream`]). This is
//! `compare`'s engine side (benches/src/engine_side.rs), unchanged in what it measures.
//!
//! - Small messages: one SendData per message; the engine's writer coalesces what is
//!   queued into its stream writes by itself.
//! - Close: CloseDirectConnection answers S_OK once the peer has read everything sent
//!   before the close and confirmed it (docs/PROTOCOL.md §3.4), so the peer has seen it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_rt::{Arbiter, ArbiterHandle, System};
use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use peergraph::{
    ConnectionFlags, ConnectionId, ConnectionStatus, Engine, EngineConfig, EventRegistration,
    EventStream, EventType, Graph, GraphEvent, GraphId, GraphOptions, GraphProperties, PeerError,
    PeerId, QueueLimits, Version, DEFAULT_MAX_PENDING_HANDSHAKES,
};
use tokio::sync::oneshot;

use crate::frames::DATA_TYPE;
use crate::job::{Job, Outcome, OPEN_WINDOW};

const MIB: f64 = 1024.0 * 1024.0;

/// Event queues large enough that no benchmark loses events: the readers keep up, and a
/// lost event fails the run rather than skewing it.
const QUEUE_LIMITS: QueueLimits = QueueLimits {
    events: 1 << 20,
    bytes: 1 << 30,
};

/// `len` bytes of 0x5a as a static [`Bytes`], the payload every message of a run carries.
/// A clone of it, one per message handed over, touches no reference count, as the other
/// systems' applications write their prebuilt frames from a slice. An application whose
/// payloads are shared buffers pays an atomic count on each clone and drop: the `Bytes`
/// type's cost, which a quinn or iroh user handing over the same clones pays too. Made
/// once per length and kept for the process.
fn constant_payload(len: usize) -> Bytes {
    static MADE: std::sync::Mutex<Vec<&'static [u8]>> = std::sync::Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let found = made.iter().find(|payload| payload.len() == len).copied();
    let payload = found.unwrap_or_else(|| {
        let leaked: &'static [u8] = Vec::leak(vec![0x5a; len]);
        made.push(leaked);
        leaked
    });
    Bytes::from_static(payload)
}

/// The most events the receiving side takes in one `recv_many`.
const RECEIVE_BATCH: usize = 256;

/// The benchmark's graph settings: the defaults, except that one source address may have
/// [`OPEN_WINDOW`] handshakes in progress, and no QUIC Retry is asked for: the raw side
/// asks for none either, and a Retry adds a round trip to each handshake it is asked of.
/// (Bursts with Retry used to leave a few handshakes stalled: quinn put ids from a space
/// of 2^24 in its Retries, and one could name a live link; the transport's endpoints now
/// draw 64-bit ids, and the 10,000-link soak passes with a Retry for every link.)
fn bench_options() -> GraphOptions {
    GraphOptions::default()
        .with_handshake_limits(DEFAULT_MAX_PENDING_HANDSHAKES, OPEN_WINDOW)
        .with_retry_threshold(usize::MAX)
}

/// Waits (bounded, untimed) until `graph` lists connection `id`: the node has admitted it.
async fn wait_until_listed(graph: &Graph, id: ConnectionId) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = graph
            .enum_connections(ConnectionFlags::DIRECT)
            .await
            .map_err(peer)?;
        if listed.iter().any(|info| info.connection_id == id) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("bob never listed connection {id}");
        }
        tokio::task::yield_now().await;
    }
}

fn peer(error: PeerError) -> anyhow::Error {
    anyhow!("peergraph: {error}")
}

/// A thread running an actix system (a current-thread tokio runtime), like the worker
/// threads an engine starts for itself. An engine made on it uses its arbiter.
struct Host {
    arbiter: ArbiterHandle,
    system: System,
    thread: Option<JoinHandle<()>>,
}

impl Host {
    fn start(name: &str) -> io::Result<Host> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runner = System::new();
                let _ = ready_tx.send((System::current(), Arbiter::current()));
                let _ = runner.run();
            })?;
        let (system, arbiter) = ready_rx
            .recv()
            .map_err(|_| io::Error::other("host thread did not start"))?;
        Ok(Host {
            arbiter,
            system,
            thread: Some(thread),
        })
    }

    /// Runs `future` on this host's thread and waits for its output.
    async fn run<F>(&self, future: F) -> anyhow::Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (done, output) = oneshot::channel();
        if !self.arbiter.spawn(async move {
            let _ = done.send(future.await);
        }) {
            bail!("host thread has stopped");
        }
        output.await.context("task on a host thread was dropped")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One node: an engine on its host's arbiter, its graph (listening) and its events. Lives
/// on its host's thread, and moves there and back with each piece of work.
pub struct Node {
    engine: Engine,
    graph: Graph,
    events: EventStream,
    address: SocketAddr,
}

impl Node {
    async fn start(peer_id: &'static str) -> anyhow::Result<Node> {
        // Inside an actix system the engine runs its graphs on the current arbiter.
        let engine = Engine::with_config(EngineConfig::default())?;
        engine.startup(Version::V1_0).map_err(peer)?;
        let properties = GraphProperties::new(
            GraphId::new("bench").map_err(peer)?,
            PeerId::new(peer_id).map_err(peer)?,
        );
        let graph = engine
            .create_graph(properties, bench_options())
            .map_err(peer)?;
        let events = graph
            .register_event_with(
                vec![
                    EventRegistration::new(EventType::DirectConnection),
                    EventRegistration::new(EventType::IncomingData),
                ],
                QUEUE_LIMITS,
            )
            .await
            .map_err(peer)?;
        let address = graph
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(peer)?;
        Ok(Node {
            engine,
            graph,
            events,
            address,
        })
    }

    async fn stop(self) {
        let _ = self.graph.close().await;
        let _ = self.engine.shutdown().await;
    }

    /// The next event; an error when the stream ends or events were lost.
    async fn next_event(&mut self) -> anyhow::Result<GraphEvent> {
        match self.events.recv().await {
            Some(GraphEvent::EventsLost { count }) => bail!("{count} events lost"),
            Some(event) => Ok(event),
            None => bail!("event stream ended"),
        }
    }

    /// The payload of the next INCOMING_DATA event, skipping others.
    async fn next_data(&mut self) -> anyhow::Result<Bytes> {
        loop {
            if let GraphEvent::IncomingData { data, .. } = self.next_event().await? {
                return Ok(data);
            }
        }
    }

    /// Waits for CONNECTED (or fails on CONNECTION_FAILED) of connection `id`.
    async fn wait_connected(&mut self, id: ConnectionId) -> anyhow::Result<()> {
        loop {
            if let GraphEvent::DirectConnection(change) = self.next_event().await? {
                if change.connection_id != id {
                    continue;
                }
                match change.status {
                    ConnectionStatus::Connected => return Ok(()),
                    ConnectionStatus::ConnectionFailed => {
                        bail!("connection failed: {:?}", change.failure_reason)
                    }
                    ConnectionStatus::Disconnected => bail!("connection {id} ended early"),
                }
            }
        }
    }

    /// Opens a direct connection to bob and waits for CONNECTED here. Bob has published
    /// his CONNECTED before he sends the WELCOME that ends this wait.
    async fn connect(&mut self, bob: SocketAddr) -> anyhow::Result<ConnectionId> {
        let id = self
            .graph
            .open_direct_connection("bob", bob)
            .await
            .map_err(peer)?;
        self.wait_connected(id).await?;
        Ok(id)
    }

    async fn close(&mut self, id: ConnectionId) -> anyhow::Result<()> {
        self.graph.close_direct_connection(id).await.map_err(peer)
    }

    /// Drops the events already queued (connection churn leaves some).
    fn drain(&mut self) {
        while self.events.try_recv().is_some() {}
    }

    async fn send_all(
        &mut self,
        id: ConnectionId,
        count: usize,
        payload: Bytes,
    ) -> anyhow::Result<()> {
        for _ in 0..count {
            self.graph
                .send_data(id, DATA_TYPE, payload.clone())
                .await
                .map_err(peer)?;
        }
        Ok(())
    }

    /// Reads INCOMING_DATA until `total` payload bytes have arrived; returns when. Takes
    /// every event queued at each wake (`recv_many`), as an application reading a fast
    /// link would, and reads each where it lies, as `recv_many`'s documentation advises
    /// (and as the other systems' applications read their frames in place).
    async fn receive_all(&mut self, total: usize) -> anyhow::Result<Instant> {
        let mut received = 0;
        let mut batch = Vec::with_capacity(RECEIVE_BATCH);
        while received < total {
            if self.events.recv_many(&mut batch, RECEIVE_BATCH).await == 0 {
                bail!("event stream ended");
            }
            for event in &batch {
                match event {
                    GraphEvent::IncomingData { data, .. } => received += data.len(),
                    GraphEvent::EventsLost { count } => bail!("{count} events lost"),
                    _ => {}
                }
            }
            batch.clear();
        }
        Ok(Instant::now())
    }

    async fn echo_requests(
        &mut self,
        id: ConnectionId,
        warmup: usize,
        samples: usize,
        payload: Bytes,
    ) -> anyhow::Result<Vec<Duration>> {
        let mut rtts = Vec::with_capacity(samples);
        for round in 0..warmup + samples {
            let start = Instant::now();
            self.graph
                .send_data(id, DATA_TYPE, payload.clone())
                .await
                .map_err(peer)?;
            self.next_data().await?;
            if round >= warmup {
                rtts.push(start.elapsed());
            }
        }
        Ok(rtts)
    }

    async fn echo_replies(&mut self, id: ConnectionId, total: usize) -> anyhow::Result<()> {
        for _ in 0..total {
            let data = self.next_data().await?;
            self.graph
                .send_data(id, DATA_TYPE, data)
                .await
                .map_err(peer)?;
        }
        Ok(())
    }

    async fn open_close_cycles(
        &mut self,
        bob: SocketAddr,
        cycles: usize,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        for _ in 0..cycles {
            let id = self.connect(bob).await?;
            self.close(id).await?;
            self.drain();
        }
        Ok(start.elapsed())
    }

    async fn close_latencies(
        &mut self,
        bob: SocketAddr,
        bob_graph: Graph,
        samples: usize,
    ) -> anyhow::Result<Vec<Duration>> {
        let mut latencies = Vec::with_capacity(samples);
        for _ in 0..samples {
            let id = self.connect(bob).await?;
            // The link is made when bob has it too: with 0-RTT, alice reports CONNECTED
            // half a round trip before bob admits the link (on her Finished).
            wait_until_listed(&bob_graph, id).await?;
            // The asking kept bob's thread busy; the raw side's bob waits idle on his
            // stream when its sample starts, so bob gets as long to fall idle here.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let start = Instant::now();
            self.close(id).await?;
            latencies.push(start.elapsed());
            self.drain();
        }
        Ok(latencies)
    }

    /// Opens `count` connections to bob, at most [`OPEN_WINDOW`] in their handshake at
    /// once, and waits until this side reports every one CONNECTED.
    async fn open_many(&mut self, bob: SocketAddr, count: usize) -> anyhow::Result<()> {
        let (mut opened, mut connected) = (0, 0);
        while connected < count {
            while opened < count && opened - connected < OPEN_WINDOW {
                self.graph
                    .open_direct_connection("bob", bob)
                    .await
                    .map_err(peer)?;
                opened += 1;
            }
            if let GraphEvent::DirectConnection(change) = self.next_event().await? {
                match change.status {
                    ConnectionStatus::Connected => connected += 1,
                    ConnectionStatus::ConnectionFailed => {
                        bail!(
                            "connection failed after {connected} of {count} were up: {:?}",
                            change.failure_reason
                        )
                    }
                    // The warm-up link's end may be reported late; a link of ours that
                    // ends shows in bob's count.
                    ConnectionStatus::Disconnected => {}
                }
            }
        }
        Ok(())
    }

    /// Waits until `count` connections have been reported CONNECTED here, and checks the
    /// graph holds them.
    async fn accept_many(&mut self, count: usize) -> anyhow::Result<()> {
        let mut connected = 0;
        while connected < count {
            if let GraphEvent::DirectConnection(change) = self.next_event().await? {
                connected += usize::from(change.status == ConnectionStatus::Connected);
            }
        }
        let counters = self.graph.counters().await.map_err(peer)?;
        if counters.connections != count {
            bail!(
                "bob holds {} connections, not {count}",
                counters.connections
            );
        }
        Ok(())
    }
}

/// Two nodes, alice and bob, in one graph, each on its own [`Host`]. Alice opens, bob
/// accepts.
pub struct EnginePair {
    // Declared before the hosts: dropped (if still here) before their threads stop.
    alice: Option<Node>,
    bob: Option<Node>,
    bob_address: SocketAddr,
    alice_host: Host,
    bob_host: Host,
}

/// Runs `work` with `node` on `host` and gives the node back with the outcome.
async fn on<T, F, W>(host: &Host, slot: &mut Option<Node>, work: W) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: Future<Output = (Node, anyhow::Result<T>)> + Send + 'static,
    W: FnOnce(Node) -> F,
{
    let node = slot.take().context("node lost in an earlier failure")?;
    let (node, outcome) = host.run(work(node)).await?;
    *slot = Some(node);
    outcome
}

impl EnginePair {
    /// Two hosts, each with a started engine and a listening graph.
    pub async fn start() -> anyhow::Result<EnginePair> {
        let alice_host = Host::start("engine-alice")?;
        let bob_host = Host::start("engine-bob")?;
        let alice = alice_host.run(Node::start("alice")).await??;
        let bob = bob_host.run(Node::start("bob")).await??;
        Ok(EnginePair {
            bob_address: bob.address,
            alice: Some(alice),
            bob: Some(bob),
            alice_host,
            bob_host,
        })
    }

    /// Closes both graphs and shuts both engines down, each on its host.
    pub async fn stop(mut self) {
        if let Some(alice) = self.alice.take() {
            let _ = self.alice_host.run(alice.stop()).await;
        }
        if let Some(bob) = self.bob.take() {
            let _ = self.bob_host.run(bob.stop()).await;
        }
    }

    async fn connect(&mut self) -> anyhow::Result<ConnectionId> {
        let bob = self.bob_address;
        on(
            &self.alice_host,
            &mut self.alice,
            move |mut node| async move {
                let id = node.connect(bob).await;
                (node, id)
            },
        )
        .await
    }

    /// Sends `count` payloads of `len` bytes from alice's application to bob's; returns
    /// the time from the first SendData until bob's application has read the last
    /// INCOMING_DATA.
    pub async fn transfer(&mut self, count: usize, len: usize) -> anyhow::Result<Duration> {
        let id = self.connect().await?;
        let payload = constant_payload(len);
        let start = Instant::now();
        let send = on(
            &self.alice_host,
            &mut self.alice,
            move |mut node| async move {
                let sent = node.send_all(id, count, payload).await;
                (node, sent)
            },
        );
        let receive = on(&self.bob_host, &mut self.bob, move |mut node| async move {
            let end = node.receive_all(count * len).await;
            (node, end)
        });
        let ((), end) = tokio::try_join!(send, receive)?;
        let took = end - start;
        let stats = on(&self.alice_host, &mut self.alice, move |node| async move {
            let stats = node.graph.connection_stats(id).await.map_err(peer);
            (node, stats)
        })
        .await?;
        eprintln!(
            "  engine link: {:.1} MiB in UDP for {:.1} MiB sent, {} packets lost, cwnd {} KiB",
            stats.bytes_sent as f64 / MIB,
            (count * len) as f64 / MIB,
            stats.lost_packets,
            stats.congestion_window / 1024
        );
        Ok(took)
    }

    /// Round trips of a `len`-byte message: alice sends, bob's application echoes it
    /// with SendData, alice's application reads it. Returns `samples` round trips after
    /// `warmup` untimed ones.
    pub async fn echo(
        &mut self,
        warmup: usize,
        samples: usize,
        len: usize,
    ) -> anyhow::Result<Vec<Duration>> {
        let id = self.connect().await?;
        let payload = constant_payload(len);
        let request = on(
            &self.alice_host,
            &mut self.alice,
            move |mut node| async move {
                let rtts = node.echo_requests(id, warmup, samples, payload).await;
                (node, rtts)
            },
        );
        let respond = on(&self.bob_host, &mut self.bob, move |mut node| async move {
            let replied = node.echo_replies(id, warmup + samples).await;
            (node, replied)
        });
        let (rtts, ()) = tokio::try_join!(request, respond)?;
        Ok(rtts)
    }

    /// `cycles` times: OpenDirectConnection, wait for CONNECTED at alice,
    /// CloseDirectConnection until S_OK. Returns the time of all cycles.
    pub async fn open_close_cycles(&mut self, cycles: usize) -> anyhow::Result<Duration> {
        let bob = self.bob_address;
        on(
            &self.alice_host,
            &mut self.alice,
            move |mut node| async move {
                let took = node.open_close_cycles(bob, cycles).await;
                (node, took)
            },
        )
        .await
    }

    /// `samples` connections, each made (untimed) and then closed by alice: the time from
    /// the CloseDirectConnection request to its S_OK reply.
    pub async fn close_latencies(&mut self, samples: usize) -> anyhow::Result<Vec<Duration>> {
        let bob = self.bob_address;
        let bob_graph = self
            .bob
            .as_ref()
            .map(|node| node.graph.clone())
            .context("bob's node is gone")?;
        on(
            &self.alice_host,
            &mut self.alice,
            move |mut node| async move {
                let latencies = node.close_latencies(bob, bob_graph, samples).await;
                (node, latencies)
            },
        )
        .await
    }

    /// Opens `count` direct connections from alice to bob and waits until both ends report
    /// every one CONNECTED.
    pub async fn open_many(&mut self, count: usize) -> anyhow::Result<()> {
        let bob = self.bob_address;
        // Bob's earlier events (the warm-up link's) are not part of the count.
        on(&self.bob_host, &mut self.bob, move |mut node| async move {
            node.drain();
            (node, Ok(()))
        })
        .await?;
        let open = on(
            &self.alice_host,
            &mut self.alice,
            move |mut node| async move {
                let opened = node.open_many(bob, count).await;
                (node, opened)
            },
        );
        let accept = on(&self.bob_host, &mut self.bob, move |mut node| async move {
            let accepted = node.accept_many(count).await;
            (node, accepted)
        });
        tokio::try_join!(open, accept)?;
        Ok(())
    }
}

/// Runs `body` on a fresh pair and stops the pair afterwards, whatever the outcome.
pub async fn with_pair<T>(
    timeout: Duration,
    body: impl AsyncFnOnce(&mut EnginePair) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut pair = EnginePair::start().await?;
    let outcome = tokio::time::timeout(timeout, body(&mut pair))
        .await
        .context("engine side timed out")
        .and_then(|outcome| outcome);
    pair.stop().await;
    outcome
}

/// Runs `job` on a fresh pair.
///
/// # Errors
/// When the pair cannot be made, the job fails or `timeout` passes.
pub async fn run(job: Job, timeout: Duration) -> anyhow::Result<Outcome> {
    with_pair(timeout, async |pair| match job {
        Job::Bulk { count, len } | Job::Small { count, len } => {
            pair.transfer(count, len).await.map(Outcome::Took)
        }
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

/// The `idle_memory` child's work: see [`crate::memory::per_link`].
///
/// # Errors
/// When a link cannot be made within `timeout`.
pub async fn idle_memory(connections: usize, timeout: Duration) -> anyhow::Result<f64> {
    with_pair(timeout, async |pair| {
        pair.close_latencies(1).await?;
        crate::memory::per_link(connections, pair.open_many(connections)).await
    })
    .await
}
