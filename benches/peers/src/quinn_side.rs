//! Raw quinn: two endpoints made with [`bind_endpoint`] (the same mutual TLS, certificates
//! and transport settings as peergraph's links), each on its own current-thread runtime
//! thread ([`RuntimeThread`]), with the node's application code next to its endpoint. This
//! is `compare`'s raw side (benches/src/raw_side.rs), with two changes: the open and close
//! cycle opens the stream too, and the close is the strongest quinn offers (below).
//!
//! - Messages are peergraph's DATA frames ([`crate::frames`]); small messages are one
//!   `write_all` each (no batching by the application).
//! - Close: `finish()` the stream, wait for `stopped()` (it resolves once the peer's QUIC
//!   stack has acknowledged every byte and the FIN, not once its application read them),
//!   then `close()` the connection (which alone would discard unsent data), until the peer's
//!   `closed()` resolves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use peergraph_transport::{bind_endpoint, LinkOptions, NodeIdentity, SERVER_NAME};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::sync::{mpsc, Semaphore};

use crate::frames::{data_frame, Splitter, HELLO};
use crate::job::{Job, Outcome, OPEN_WINDOW};
use crate::runtime::RuntimeThread;

/// Reads whole frames from a stream.
struct Frames {
    recv: RecvStream,
    splitter: Splitter,
}

impl Frames {
    fn new(recv: RecvStream) -> Frames {
        Frames {
            recv,
            splitter: Splitter::new(),
        }
    }

    /// The next whole frame (header and body).
    async fn next(&mut self) -> anyhow::Result<Bytes> {
        loop {
            if let Some(frame) = self.splitter.next_frame() {
                return Ok(frame);
            }
            match self.recv.read_chunk(usize::MAX, true).await? {
                Some(chunk) => self.splitter.push(&chunk.bytes),
                None => bail!("stream finished inside a frame"),
            }
        }
    }
}

/// One end of a link: its connection and the one bidirectional stream.
struct End {
    /// Held so that the link lives as long as its end (and closed through it).
    connection: Connection,
    send: SendStream,
    recv: RecvStream,
}

/// Two raw quinn nodes: alice (connects) and bob (accepts), each on its own thread.
pub struct RawPair {
    alice: RuntimeThread,
    bob: RuntimeThread,
    alice_endpoint: Endpoint,
    bob_endpoint: Endpoint,
    bob_address: SocketAddr,
}

async fn endpoint_on(thread: &RuntimeThread) -> anyhow::Result<Endpoint> {
    let identity = NodeIdentity::generate()?;
    let endpoint = thread
        .run(async move {
            bind_endpoint(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                &identity,
                &LinkOptions::default(),
                true,
            )
        })
        .await??;
    Ok(endpoint)
}

impl RawPair {
    /// Two threads, each with a listening endpoint on 127.0.0.1.
    pub async fn start() -> anyhow::Result<RawPair> {
        let alice = RuntimeThread::start("raw-alice")?;
        let bob = RuntimeThread::start("raw-bob")?;
        let alice_endpoint = endpoint_on(&alice).await?;
        let bob_endpoint = endpoint_on(&bob).await?;
        let bob_address = bob_endpoint.local_addr()?;
        Ok(RawPair {
            alice,
            bob,
            alice_endpoint,
            bob_endpoint,
            bob_address,
        })
    }

    /// Closes both endpoints and waits (bounded) for them to go idle.
    pub async fn stop(self) {
        for endpoint in [&self.alice_endpoint, &self.bob_endpoint] {
            endpoint.close(0u32.into(), b"done");
            let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        }
    }

    /// A link from alice to bob with its stream open at both ends.
    async fn link(&self) -> anyhow::Result<(End, End)> {
        let bob_endpoint = self.bob_endpoint.clone();
        let accept = self.bob.spawn(async move {
            let incoming = bob_endpoint.accept().await.context("endpoint closed")?;
            let connection = incoming.await?;
            full_window(&connection);
            let (send, mut recv) = connection.accept_bi().await?;
            let mut hello = [0u8; HELLO.len()];
            recv.read_exact(&mut hello).await?;
            anyhow::Ok(End {
                connection,
                send,
                recv,
            })
        });
        let (alice_endpoint, address) = (self.alice_endpoint.clone(), self.bob_address);
        let alice = self
            .alice
            .run(async move {
                let connection = alice_endpoint.connect(address, SERVER_NAME)?.await?;
                full_window(&connection);
                let (mut send, recv) = connection.open_bi().await?;
                send.write_all(HELLO).await?;
                anyhow::Ok(End {
                    connection,
                    send,
                    recv,
                })
            })
            .await??;
        let bob = accept.await??;
        Ok((alice, bob))
    }

    /// Writes `count` payloads of `len` bytes with `write_chunk` on one stream; returns the
    /// time until bob has read them all.
    pub async fn bulk(&self, count: usize, len: usize) -> anyhow::Result<Duration> {
        let (alice, bob) = self.link().await?;
        let payload = Bytes::from(vec![0x5a; len]);
        let total = count * len;
        let start = Instant::now();
        let receive = self.bob.run(async move {
            let mut bob = bob;
            let mut received = 0;
            while received < total {
                match bob.recv.read_chunk(usize::MAX, true).await? {
                    Some(chunk) => received += chunk.bytes.len(),
                    None => bail!("stream finished early"),
                }
            }
            anyhow::Ok((Instant::now(), bob))
        });
        let send = self.alice.run(async move {
            let mut alice = alice;
            for _ in 0..count {
                alice.send.write_chunk(payload.clone()).await?;
            }
            anyhow::Ok(alice)
        });
        let (received, sent) = tokio::join!(receive, send);
        let (end, _bob) = received??;
        let alice = sent??;
        report_link(&alice.connection, total);
        Ok(end - start)
    }

    /// Writes `count` DATA frames of `len`-byte payloads, one `write_all` each; returns the
    /// time until bob has read and split every frame.
    pub async fn small_messages(&self, count: usize, len: usize) -> anyhow::Result<Duration> {
        let (alice, bob) = self.link().await?;
        let frame = data_frame(&vec![0x5a; len]);
        let start = Instant::now();
        let receive = self.bob.run(async move {
            let mut frames = Frames::new(bob.recv);
            for _ in 0..count {
                frames.next().await?;
            }
            anyhow::Ok((Instant::now(), bob.send, bob.connection))
        });
        let send = self.alice.run(async move {
            let mut alice = alice;
            for _ in 0..count {
                alice.send.write_all(&frame).await?;
            }
            anyhow::Ok(alice)
        });
        let (received, sent) = tokio::join!(receive, send);
        let (end, _, _) = received??;
        let alice = sent??;
        report_link(&alice.connection, count * len);
        Ok(end - start)
    }

    /// Round trips of one `len`-byte DATA frame: alice writes it, bob reads it and writes
    /// it back, alice reads it.
    pub async fn echo(
        &self,
        warmup: usize,
        samples: usize,
        len: usize,
    ) -> anyhow::Result<Vec<Duration>> {
        let (alice, bob) = self.link().await?;
        let frame = data_frame(&vec![0x5a; len]);
        let total = warmup + samples;
        let respond = self.bob.run(async move {
            let mut send = bob.send;
            let mut frames = Frames::new(bob.recv);
            for _ in 0..total {
                let frame = frames.next().await?;
                send.write_chunk(frame).await?;
            }
            anyhow::Ok((send, bob.connection))
        });
        let request = self.alice.run(async move {
            let mut send = alice.send;
            let mut frames = Frames::new(alice.recv);
            let mut rtts = Vec::with_capacity(samples);
            for round in 0..total {
                let start = Instant::now();
                send.write_all(&frame).await?;
                frames.next().await?;
                if round >= warmup {
                    rtts.push(start.elapsed());
                }
            }
            anyhow::Ok((rtts, send, alice.connection))
        });
        let (requested, responded) = tokio::join!(request, respond);
        let (rtts, _, _) = requested??;
        let _bob = responded??;
        Ok(rtts)
    }

    /// Bob's accept loop for the connection metrics: for every incoming link, reports when
    /// its stream has arrived (the HELLO read) and when the connection's close has arrived.
    fn serve_closes(&self) -> (mpsc::Receiver<Seen>, tokio::task::JoinHandle<()>) {
        let (seen, receiver) = mpsc::channel(1024);
        let endpoint = self.bob_endpoint.clone();
        let server = self.bob.spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let accepted = async {
                        let connection = incoming.await?;
                        let (send, mut recv) = connection.accept_bi().await?;
                        let mut hello = [0u8; HELLO.len()];
                        recv.read_exact(&mut hello).await?;
                        anyhow::Ok((connection, send, recv))
                    };
                    if let Ok((connection, _send, _recv)) = accepted.await {
                        let _ = seen.send(Seen::Established).await;
                        connection.closed().await;
                    }
                    let _ = seen.send(Seen::Closed(Instant::now())).await;
                });
            }
        });
        (receiver, server)
    }

    /// `cycles` times: connect, handshake, open the stream until bob has it, and the
    /// strongest close ([`close_link`]) until bob's `closed()` resolves.
    pub async fn open_close_cycles(&self, cycles: usize) -> anyhow::Result<Duration> {
        let (mut seen, server) = self.serve_closes();
        let (endpoint, address) = (self.alice_endpoint.clone(), self.bob_address);
        let outcome = self
            .alice
            .run(async move {
                let start = Instant::now();
                for _ in 0..cycles {
                    let end = open_link(&endpoint, address, &mut seen).await?;
                    close_link(end, &mut seen).await?;
                }
                anyhow::Ok(start.elapsed())
            })
            .await;
        server.abort();
        outcome?
    }

    /// `samples` links, each made (untimed, until bob has its stream) and then closed by
    /// alice ([`close_link`]): the time from `finish()` until bob's `closed()` resolves.
    pub async fn close_latencies(&self, samples: usize) -> anyhow::Result<Vec<Duration>> {
        let (mut seen, server) = self.serve_closes();
        let (endpoint, address) = (self.alice_endpoint.clone(), self.bob_address);
        let outcome = self
            .alice
            .run(async move {
                let mut latencies = Vec::with_capacity(samples);
                for _ in 0..samples {
                    let end = open_link(&endpoint, address, &mut seen).await?;
                    // Both nodes' threads idle a while first, as peergraph's sample does.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let start = Instant::now();
                    let at = close_link(end, &mut seen).await?;
                    latencies.push(at - start);
                }
                anyhow::Ok(latencies)
            })
            .await;
        server.abort();
        outcome?
    }

    /// Opens `count` links from alice to bob, each with its stream open at both ends and a
    /// task at each end waiting to read from it, at most `window` in their handshake at
    /// once; returns when both ends hold every link, or with the first link that failed.
    pub async fn open_many(&self, count: usize, window: usize) -> anyhow::Result<()> {
        let (ready, mut ready_rx) = mpsc::channel::<Result<(), String>>(1024);
        let endpoint = self.bob_endpoint.clone();
        let bob_ready = ready.clone();
        self.bob.spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let ready = bob_ready.clone();
                tokio::spawn(async move {
                    let accepted = async {
                        let connection = incoming.await?;
                        let (send, mut recv) = connection.accept_bi().await?;
                        let mut hello = [0u8; HELLO.len()];
                        recv.read_exact(&mut hello).await?;
                        anyhow::Ok((connection, send, recv))
                    };
                    match accepted.await {
                        Ok((connection, send, recv)) => {
                            let _ = ready.send(Ok(())).await;
                            idle(connection, send, recv).await;
                        }
                        Err(error) => {
                            let _ = ready.send(Err(format!("bob: {error}"))).await;
                        }
                    }
                });
            }
        });
        let (endpoint, address) = (self.alice_endpoint.clone(), self.bob_address);
        self.alice.spawn(async move {
            let window = Arc::new(Semaphore::new(window));
            for _ in 0..count {
                let Ok(permit) = window.clone().acquire_owned().await else {
                    return;
                };
                let (endpoint, ready) = (endpoint.clone(), ready.clone());
                tokio::spawn(async move {
                    let connected = async {
                        let connection = endpoint.connect(address, SERVER_NAME)?.await?;
                        let (mut send, recv) = connection.open_bi().await?;
                        send.write_all(HELLO).await?;
                        anyhow::Ok((connection, send, recv))
                    };
                    let outcome = connected.await;
                    drop(permit);
                    match outcome {
                        Ok((connection, send, recv)) => {
                            let _ = ready.send(Ok(())).await;
                            idle(connection, send, recv).await;
                        }
                        Err(error) => {
                            let _ = ready.send(Err(format!("alice: {error}"))).await;
                        }
                    }
                });
            }
        });
        for done in 0..2 * count {
            match ready_rx.recv().await {
                Some(Ok(())) => {}
                Some(Err(error)) => bail!("link end {done} of {} failed: {error}", 2 * count),
                None => bail!("only {done} of {} link ends came up", 2 * count),
            }
        }
        Ok(())
    }
}

/// Gives a link quinn's default connection window (unlimited; the stream window bounds
/// it), as the engine does for a link that has its graph's receive budget to itself:
/// [`bind_endpoint`]'s settings start every connection at the budget's smallest share.
fn full_window(connection: &Connection) {
    connection.set_receive_window(quinn::VarInt::MAX);
}

/// Prints the sender's transport statistics after a transfer of `payload` bytes, to stderr.
fn report_link(connection: &Connection, payload: usize) {
    let stats = connection.stats();
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    eprintln!(
        "  raw link:    {:.1} MiB in UDP for {:.1} MiB sent, {} packets lost, cwnd {} KiB",
        mib(stats.udp_tx.bytes),
        mib(payload as u64),
        stats.path.lost_packets,
        stats.path.cwnd / 1024
    );
}

/// Connects to bob, opens the stream and writes the HELLO; returns once bob has read it.
async fn open_link(
    endpoint: &Endpoint,
    address: SocketAddr,
    seen: &mut mpsc::Receiver<Seen>,
) -> anyhow::Result<End> {
    let connection = endpoint.connect(address, SERVER_NAME)?.await?;
    let (mut send, recv) = connection.open_bi().await?;
    send.write_all(HELLO).await?;
    match seen.recv().await {
        Some(Seen::Established) => Ok(End {
            connection,
            send,
            recv,
        }),
        _ => bail!("bob did not establish the link"),
    }
}

/// quinn's strongest close: `finish()`, `stopped()` (the peer acknowledged everything, FIN
/// included), `close()`; returns when bob's `closed()` resolved.
async fn close_link(mut end: End, seen: &mut mpsc::Receiver<Seen>) -> anyhow::Result<Instant> {
    end.send.finish()?;
    if let Some(code) = end.send.stopped().await? {
        bail!("bob stopped the stream ({code})");
    }
    end.connection.close(0u32.into(), b"close");
    match seen.recv().await {
        Some(Seen::Closed(at)) => Ok(at),
        _ => bail!("bob did not see the close"),
    }
}

/// What bob's accept loop reports.
enum Seen {
    Established,
    Closed(Instant),
}

/// An idle link end: waits for data that never comes, holding the connection and stream.
async fn idle(connection: Connection, send: SendStream, mut recv: RecvStream) {
    let _ = recv.read_chunk(usize::MAX, true).await;
    drop((send, connection));
}

/// Runs `body` on a fresh pair and stops the pair afterwards, whatever the outcome.
pub async fn with_pair<T>(
    timeout: Duration,
    body: impl AsyncFnOnce(&RawPair) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let pair = RawPair::start().await?;
    let outcome = tokio::time::timeout(timeout, body(&pair))
        .await
        .context("raw quinn side timed out")
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
