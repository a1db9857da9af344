//! The raw quinn side: two endpoints made with [`bind_endpoint`] (the same mutual TLS,
//! certificates and transport settings as peergraph's, but no session tickets: a server
//! that issues none does the least work per handshake, so a connect-and-close cycle is
//! at its fastest; a raw client that closes at once could not use a ticket anyway), each
//! on its own current-thread
//! runtime thread ([`RuntimeThread`]). Each node's application code runs on its node's
//! thread, next to its endpoint, as a plain quinn application would and as the engine
//! side's application runs next to its graph.
//!
//! Messages are framed as peergraph frames them: a 5-byte header (type, u32 length) and a
//! body of the 16-byte data type and the payload, so both sides put the same bytes on the
//! wire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::{Bytes, BytesMut};
use peergraph::DataType;
use peergraph_engine::wire::{encode_data_header, FRAME_HEADER_LEN};
use peergraph_transport::{bind_endpoint, LinkOptions, NodeIdentity, SERVER_NAME};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::sync::{mpsc, Semaphore};

use crate::runtime::RuntimeThread;

const DATA_TYPE: DataType = DataType::from_u128(0x7065_6572_6772_6170_6862_656e_6368_0001);

/// What the connecting side writes first, so the accepting side sees the stream (a QUIC
/// stream exists for the peer only once data is sent on it): 8 bytes, as small as a
/// frame header and a little more.
const HELLO: &[u8; 8] = b"rawhello";

/// A whole DATA frame for `payload`, as peergraph puts it on the wire.
fn data_frame(payload: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(FRAME_HEADER_LEN + 16 + payload.len());
    encode_data_header(DATA_TYPE, payload.len(), &mut frame);
    frame.extend_from_slice(payload);
    frame.freeze()
}

/// Reads frames (5-byte header, body) from a stream, as peergraph's reader does: chunks
/// into one buffer, bodies split off without another copy.
struct Frames {
    recv: RecvStream,
    buffer: BytesMut,
}

impl Frames {
    fn new(recv: RecvStream) -> Frames {
        Frames {
            recv,
            buffer: BytesMut::with_capacity(64 * 1024),
        }
    }

    /// The next whole frame (header and body).
    async fn next(&mut self) -> anyhow::Result<Bytes> {
        loop {
            if self.buffer.len() >= FRAME_HEADER_LEN {
                let len = u32::from_be_bytes([
                    self.buffer[1],
                    self.buffer[2],
                    self.buffer[3],
                    self.buffer[4],
                ]) as usize;
                if self.buffer.len() >= FRAME_HEADER_LEN + len {
                    return Ok(self.buffer.split_to(FRAME_HEADER_LEN + len).freeze());
                }
            }
            match self.recv.read_chunk(usize::MAX, true).await? {
                Some(chunk) => self.buffer.extend_from_slice(&chunk.bytes),
                None => bail!("stream finished inside a frame"),
            }
        }
    }
}

/// One end of a link: its connection and the one bidirectional stream.
struct End {
    /// Held so that the link lives as long as its end.
    _connection: Connection,
    send: SendStream,
    recv: RecvStream,
}

/// The engine's protocol steps on a raw quinn link (docs/PROTOCOL.md §3.1 and §3.4, with
/// the benchmark's frame sizes), for the `zero_rtt` cycles (which `compare`'s
/// `open_close_cycles_same_steps` line runs too).
pub(crate) mod steps {
    use quinn::{Connection, RecvStream, SendStream};

    /// The sizes of the benchmark's CONNECT, WELCOME and DISCONNECT frames.
    const CONNECT: [u8; 35] = [1; 35];
    const WELCOME: [u8; 26] = [2; 26];
    const DISCONNECT: [u8; 6] = [4; 6];

    /// Closes `connection` once the peer has acknowledged the end of `send`.
    async fn close_when_acknowledged(connection: Connection, send: SendStream) {
        let _ = send.stopped().await;
        connection.close(1u32.into(), b"disconnect");
    }

    /// The accepting side, all of it: reads CONNECT and answers WELCOME; reads
    /// DISCONNECT, answers it and ends its stream; reads the peer's end; closes once its
    /// own end is acknowledged.
    pub(crate) async fn serve(connection: Connection) -> anyhow::Result<()> {
        let (mut send, mut recv) = connection.accept_bi().await?;
        let mut connect = [0u8; CONNECT.len()];
        recv.read_exact(&mut connect).await?;
        send.write_all(&WELCOME).await?;
        let mut disconnect = [0u8; DISCONNECT.len()];
        recv.read_exact(&mut disconnect).await?;
        send.write_all(&DISCONNECT).await?;
        send.finish()?;
        recv.read_to_end(usize::MAX).await?;
        close_when_acknowledged(connection, send).await;
        Ok(())
    }

    /// The connecting side's open: CONNECT on a new stream, until WELCOME is read.
    pub(crate) async fn open(connection: &Connection) -> anyhow::Result<(SendStream, RecvStream)> {
        let (mut send, mut recv) = connection.open_bi().await?;
        send.write_all(&CONNECT).await?;
        let mut welcome = [0u8; WELCOME.len()];
        recv.read_exact(&mut welcome).await?;
        Ok((send, recv))
    }

    /// The connecting side's close: DISCONNECT, until the peer's end of stream is read
    /// (the moment the engine answers S_OK); then ends its own stream and closes the
    /// connection once that is acknowledged, in a task of its own.
    pub(crate) async fn close(
        connection: Connection,
        mut send: SendStream,
        mut recv: RecvStream,
    ) -> anyhow::Result<()> {
        send.write_all(&DISCONNECT).await?;
        recv.read_to_end(usize::MAX).await?;
        send.finish()?;
        tokio::spawn(close_when_acknowledged(connection, send));
        Ok(())
    }
}

/// Two raw quinn nodes: alice (connects) and bob (accepts), each on its own thread.
pub(crate) struct RawPair {
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
            let options = LinkOptions {
                zero_rtt: false,
                ..LinkOptions::default()
            };
            bind_endpoint(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                &identity,
                &options,
                true,
            )
        })
        .await??;
    Ok(endpoint)
}

impl RawPair {
    /// Two threads, each with a listening endpoint on 127.0.0.1.
    pub(crate) async fn start() -> anyhow::Result<RawPair> {
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
    pub(crate) async fn stop(self) {
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
                _connection: connection,
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
                    _connection: connection,
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
    pub(crate) async fn bulk(&self, count: usize, len: usize) -> anyhow::Result<Duration> {
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
        report_link(&alice._connection, total);
        Ok(end - start)
    }

    /// Writes `count` DATA frames of `len`-byte payloads, one `write_all` each; returns the
    /// time until bob has read and split every frame.
    pub(crate) async fn small_messages(
        &self,
        count: usize,
        len: usize,
    ) -> anyhow::Result<Duration> {
        let (alice, bob) = self.link().await?;
        let frame = data_frame(&vec![0x5a; len]);
        let start = Instant::now();
        let receive = self.bob.run(async move {
            let mut frames = Frames::new(bob.recv);
            for _ in 0..count {
                frames.next().await?;
            }
            anyhow::Ok((Instant::now(), bob.send, bob._connection))
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
        report_link(&alice._connection, count * len);
        Ok(end - start)
    }

    /// The same frames as [`small_messages`](Self::small_messages), written the way a
    /// careful user of quinn would: gathered into 32 KiB chunks (the size the engine
    /// gathers small frames into) and handed over with one `write_chunk` each.
    pub(crate) async fn small_messages_batched(
        &self,
        count: usize,
        len: usize,
    ) -> anyhow::Result<Duration> {
        const CHUNK: usize = 32 * 1024;
        let (alice, bob) = self.link().await?;
        let frame = data_frame(&vec![0x5a; len]);
        let start = Instant::now();
        let receive = self.bob.run(async move {
            let mut frames = Frames::new(bob.recv);
            for _ in 0..count {
                frames.next().await?;
            }
            anyhow::Ok((Instant::now(), bob.send, bob._connection))
        });
        let send = self.alice.run(async move {
            let mut alice = alice;
            let mut chunk = bytes::BytesMut::with_capacity(CHUNK);
            for _ in 0..count {
                if chunk.len() + frame.len() > CHUNK {
                    alice.send.write_chunk(chunk.split().freeze()).await?;
                    chunk.reserve(CHUNK);
                }
                chunk.extend_from_slice(&frame);
            }
            if !chunk.is_empty() {
                alice.send.write_chunk(chunk.freeze()).await?;
            }
            anyhow::Ok(alice)
        });
        let (received, sent) = tokio::join!(receive, send);
        let (end, _, _) = received??;
        let alice = sent??;
        report_link(&alice._connection, count * len);
        Ok(end - start)
    }

    /// Round trips of one `len`-byte DATA frame: alice writes it, bob reads it and writes
    /// it back, alice reads it.
    pub(crate) async fn echo(
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
            anyhow::Ok((send, bob._connection))
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
            anyhow::Ok((rtts, send, alice._connection))
        });
        let (requested, responded) = tokio::join!(request, respond);
        let (rtts, _, _) = requested??;
        let _bob = responded??;
        Ok(rtts)
    }

    /// Bob's accept loop for the connection metrics: for every incoming link, reports
    /// when its handshake is done and when its close has arrived.
    fn serve_closes(&self) -> (mpsc::Receiver<Seen>, tokio::task::JoinHandle<()>) {
        let (seen, receiver) = mpsc::channel(1024);
        let endpoint = self.bob_endpoint.clone();
        let server = self.bob.spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    if let Ok(connection) = incoming.await {
                        let _ = seen.send(Seen::Established).await;
                        connection.closed().await;
                    }
                    let _ = seen.send(Seen::Closed(Instant::now())).await;
                });
            }
        });
        (receiver, server)
    }

    /// `cycles` times: connect, handshake, `close()`, until bob's `closed()` resolves.
    pub(crate) async fn open_close_cycles(&self, cycles: usize) -> anyhow::Result<Duration> {
        let (mut seen, server) = self.serve_closes();
        let (endpoint, address) = (self.alice_endpoint.clone(), self.bob_address);
        let outcome = self
            .alice
            .run(async move {
                let start = Instant::now();
                for _ in 0..cycles {
                    let connection = endpoint.connect(address, SERVER_NAME)?.await?;
                    connection.close(0u32.into(), b"cycle");
                    loop {
                        match seen.recv().await {
                            Some(Seen::Closed(_)) => break,
                            Some(Seen::Established) => continue,
                            None => bail!("server ended"),
                        }
                    }
                }
                anyhow::Ok(start.elapsed())
            })
            .await;
        server.abort();
        outcome?
    }

    /// `samples` links, each made (untimed, until bob has it too) and then closed by
    /// alice: the time from `close()` until bob's `closed()` resolves.
    pub(crate) async fn close_latencies(&self, samples: usize) -> anyhow::Result<Vec<Duration>> {
        let (mut seen, server) = self.serve_closes();
        let (endpoint, address) = (self.alice_endpoint.clone(), self.bob_address);
        let outcome = self
            .alice
            .run(async move {
                let mut latencies = Vec::with_capacity(samples);
                for _ in 0..samples {
                    let connection = endpoint.connect(address, SERVER_NAME)?.await?;
                    if !matches!(seen.recv().await, Some(Seen::Established)) {
                        bail!("bob did not establish the link");
                    }
                    let start = Instant::now();
                    connection.close(0u32.into(), b"close");
                    match seen.recv().await {
                        Some(Seen::Closed(at)) => latencies.push(at - start),
                        _ => bail!("bob did not see the close"),
                    }
                }
                anyhow::Ok(latencies)
            })
            .await;
        server.abort();
        outcome?
    }

    /// `samples` links, each made (untimed) and then closed by alice with the guarantee
    /// CloseDirectConnection's S_OK gives: alice finishes her stream; bob reads it to its
    /// end and finishes his; the time until alice reads bob's end of stream, when she
    /// knows bob has read everything (docs/PROTOCOL.md §3.4 without its DISCONNECT
    /// frames). Alice then closes the connection, untimed.
    pub(crate) async fn confirmed_close_latencies(
        &self,
        samples: usize,
    ) -> anyhow::Result<Vec<Duration>> {
        let mut latencies = Vec::with_capacity(samples);
        for _ in 0..samples {
            let (alice, bob) = self.link().await?;
            // Bob's task is running, and waits on his stream, before alice's time starts:
            // his thread is then as idle as the engine's bob is when its close starts, not
            // woken by the spawn at the moment alice finishes her stream.
            let (waiting_tx, waiting) = tokio::sync::oneshot::channel();
            let answer = self.bob.spawn(async move {
                let End {
                    _connection: connection,
                    mut send,
                    mut recv,
                } = bob;
                let _ = waiting_tx.send(());
                recv.read_to_end(usize::MAX).await?;
                send.finish()?;
                connection.closed().await;
                anyhow::Ok(())
            });
            waiting.await.context("bob's task ended")?;
            let took = self
                .alice
                .run(async move {
                    let End {
                        _connection: connection,
                        mut send,
                        mut recv,
                    } = alice;
                    // As the engine's sample does: both threads idle a while first.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let start = Instant::now();
                    send.finish()?;
                    recv.read_to_end(usize::MAX).await?;
                    let took = start.elapsed();
                    connection.close(0u32.into(), b"close");
                    anyhow::Ok(took)
                })
                .await??;
            answer.await??;
            latencies.push(took);
        }
        Ok(latencies)
    }

    /// Opens `count` links from alice to bob, each with its stream open at both ends and a
    /// task at each end waiting to read from it, at most `window` in their handshake at
    /// once; returns when both ends hold every link, or with the first link that failed.
    pub(crate) async fn open_many(&self, count: usize, window: usize) -> anyhow::Result<()> {
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

/// Prints the sender's transport statistics after a transfer of `payload` bytes, to stderr
/// (the same figures as the engine side's `connection_stats`).
/// Gives a link quinn's default connection window (unlimited; the stream window bounds
/// it), as the engine does for a link that has its graph's receive budget to itself:
/// [`bind_endpoint`]'s settings start every connection at the budget's smallest share.
fn full_window(connection: &Connection) {
    connection.set_receive_window(quinn::VarInt::MAX);
}

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
pub(crate) async fn with_pair<T>(
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
