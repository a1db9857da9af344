//! A reference point for the RESULTS.md analysis, not a metric: raw quinn doing what the
//! engine's protocol does, so the engine can be compared with the same round trips.
//!
//! Each cycle connects (TLS 1.3 with the same identities and transport settings), opens
//! the stream and exchanges a CONNECT-sized and a WELCOME-sized message (the engine's
//! handshake), then closes the way CloseDirectConnection does: alice sends a last byte
//! and finishes her stream, bob reads to its end and closes the connection, and alice
//! waits until she sees that close. The time of that close is the "graceful close" below.
//!
//! `cargo run --release -p peergraph-benches --example raw_reference` prints, for three
//! rounds of 300 cycles, the cycle rate and the graceful close's p50 and p99 (to stderr).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use peergraph_benches::{percentile, RuntimeThread};
use peergraph_transport::{bind_endpoint, LinkOptions, NodeIdentity, SERVER_NAME};

/// About the size of a CONNECT or WELCOME frame with short ids.
const HANDSHAKE_MESSAGE: &[u8; 40] = b"0123456789012345678901234567890123456789";
const ROUNDS: usize = 3;
const CYCLES: usize = 300;
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn endpoint(thread: &RuntimeThread) -> anyhow::Result<quinn::Endpoint> {
    let identity = NodeIdentity::generate()?;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    Ok(thread
        .run(async move { bind_endpoint(loopback, &identity, &LinkOptions::default(), true) })
        .await??)
}

/// Bob's side of one link: answer the handshake message, read to the end, close.
async fn serve(incoming: quinn::Incoming) -> anyhow::Result<()> {
    let connection = incoming.await?;
    let (mut send, mut recv) = connection.accept_bi().await?;
    let mut message = [0u8; HANDSHAKE_MESSAGE.len()];
    recv.read_exact(&mut message).await?;
    send.write_all(HANDSHAKE_MESSAGE).await?;
    while recv.read_chunk(usize::MAX, true).await?.is_some() {}
    connection.close(1u32.into(), b"disconnect");
    connection.closed().await;
    Ok(())
}

/// Alice's cycles; returns the cycle rate and the close latencies in microseconds.
async fn cycles(endpoint: quinn::Endpoint, bob: SocketAddr) -> anyhow::Result<(f64, Vec<f64>)> {
    let mut closes = Vec::with_capacity(CYCLES);
    let start = Instant::now();
    for _ in 0..CYCLES {
        let connection = endpoint.connect(bob, SERVER_NAME)?.await?;
        let (mut send, mut recv) = connection.open_bi().await?;
        send.write_all(HANDSHAKE_MESSAGE).await?;
        let mut message = [0u8; HANDSHAKE_MESSAGE.len()];
        recv.read_exact(&mut message).await?;
        let close = Instant::now();
        send.write_all(b"D").await?;
        send.finish()?;
        connection.closed().await;
        closes.push(close.elapsed().as_secs_f64() * 1e6);
    }
    Ok((CYCLES as f64 / start.elapsed().as_secs_f64(), closes))
}

async fn run() -> anyhow::Result<()> {
    for round in 1..=ROUNDS {
        let alice = RuntimeThread::start("reference-alice")?;
        let bob = RuntimeThread::start("reference-bob")?;
        let (alice_endpoint, bob_endpoint) = (endpoint(&alice).await?, endpoint(&bob).await?);
        let bob_address = bob_endpoint.local_addr()?;
        let server = bob_endpoint.clone();
        let accept = bob.spawn(async move {
            while let Some(incoming) = server.accept().await {
                tokio::spawn(async move {
                    if let Err(error) = serve(incoming).await {
                        eprintln!("bob: {error}");
                    }
                });
            }
        });
        let client = alice_endpoint.clone();
        let (rate, closes) = tokio::time::timeout(
            ROUND_TIMEOUT,
            alice.run(async move { cycles(client, bob_address).await }),
        )
        .await???;
        accept.abort();
        eprintln!(
            "round {round}: {rate:.1} cycles/s; graceful close p50 {:.1} us, p99 {:.1} us",
            percentile(&closes, 50.0),
            percentile(&closes, 99.0)
        );
        for endpoint in [&alice_endpoint, &bob_endpoint] {
            endpoint.close(0u32.into(), b"done");
            let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        }
    }
    Ok(())
}
