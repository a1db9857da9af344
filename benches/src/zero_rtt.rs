//! What TLS session resumption and 0-RTT do to open+close cycles on raw quinn (issue 18,
//! item 3): measured before the engine took them (`GraphOptions::zero_rtt`), and kept as
//! the raw side of `compare`'s `open_close_cycles_same_steps`, the engine's own steps
//! with 0-RTT, as the engine takes them on a second link to a node.
//!
//! Four cycles of raw quinn, all with peergraph's certificates, verifiers and transport
//! settings, alternated run by run in one process:
//! - `bare`: connect, `close()`, until the peer's `closed()` resolves: `compare`'s
//!   `open_close_cycles` baseline, full handshakes.
//! - `bare_resumed`: the same with resumption on at both ends (a session cache, tickets):
//!   the baseline if the TLS settings both sides share allowed resumption. Its client
//!   closes before the server's tickets arrive, so it resumes nothing (see [`measure`]).
//! - `same_steps`: the engine's protocol steps (CONNECT, WELCOME, the confirmed close) on
//!   full handshakes: the engine's first link to a node, or every link with `zero_rtt` off.
//! - `same_steps_0rtt`: the same steps with resumption and 0-RTT: CONNECT rides the
//!   client's first flight as 0-RTT data and WELCOME goes back as 0.5-RTT data, so
//!   CONNECTED comes with the handshake's first round trip; the close is as before. The
//!   engine's later links to a node take these steps; `compare` measures it against them.
//!
//! The numbers are in `benches/RESULTS.md`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use peergraph_transport::quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use peergraph_transport::quinn::{self, Endpoint};
use peergraph_transport::{
    bind_endpoint, client_tls_config, server_tls_config, transport_config, LinkOptions,
    NodeIdentity, ServerSessions, TicketStore, SERVER_NAME,
};
use rustls::server::StoresServerSessions;

use crate::raw_side::steps;
use crate::runtime::RuntimeThread;

/// One of the four cycles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cycle {
    /// Connect and close at once, full handshakes.
    Bare,
    /// Connect and close at once, resumed handshakes.
    BareResumed,
    /// The engine's steps, full handshakes.
    SameSteps,
    /// The engine's steps with resumption, CONNECT as 0-RTT and WELCOME as 0.5-RTT data.
    SameSteps0Rtt,
}

impl Cycle {
    /// Every cycle, in the order a run measures them.
    pub const ALL: [Cycle; 4] = [
        Cycle::Bare,
        Cycle::BareResumed,
        Cycle::SameSteps,
        Cycle::SameSteps0Rtt,
    ];

    /// The name in the printed line.
    pub fn name(self) -> &'static str {
        match self {
            Cycle::Bare => "bare",
            Cycle::BareResumed => "bare_resumed",
            Cycle::SameSteps => "same_steps",
            Cycle::SameSteps0Rtt => "same_steps_0rtt",
        }
    }

    fn resumed(self) -> bool {
        matches!(self, Cycle::BareResumed | Cycle::SameSteps0Rtt)
    }
}

/// Two raw quinn nodes on their own threads, with resumption and 0-RTT on or off.
struct Pair {
    alice: RuntimeThread,
    bob: RuntimeThread,
    alice_endpoint: Endpoint,
    bob_endpoint: Endpoint,
    bob_address: SocketAddr,
    client: quinn::ClientConfig,
    /// Sessions bob's server found for a client's ticket: its resumed handshakes.
    sessions: Arc<AtomicUsize>,
}

impl Pair {
    async fn start(resumed: bool) -> anyhow::Result<Pair> {
        let alice = RuntimeThread::start("0rtt-alice")?;
        let bob = RuntimeThread::start("0rtt-bob")?;
        let (alice_identity, bob_identity) = (NodeIdentity::generate()?, NodeIdentity::generate()?);
        let client = client_config(&alice_identity, resumed)?;
        let sessions = Arc::new(AtomicUsize::new(0));
        let server = server_config(&bob_identity, resumed, sessions.clone())?;
        let bind = |identity: NodeIdentity| async move {
            bind_endpoint(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                &identity,
                &LinkOptions::default(),
                true,
            )
        };
        let alice_endpoint = alice.run(bind(alice_identity)).await??;
        let bob_endpoint = bob.run(bind(bob_identity)).await??;
        bob_endpoint.set_server_config(Some(server));
        let bob_address = bob_endpoint.local_addr()?;
        Ok(Pair {
            alice,
            bob,
            alice_endpoint,
            bob_endpoint,
            bob_address,
            client,
            sessions,
        })
    }
}

/// peergraph's client configuration, keeping tickets (and sending 0-RTT data with them)
/// when `resumed`.
fn client_config(identity: &NodeIdentity, resumed: bool) -> anyhow::Result<quinn::ClientConfig> {
    let tls = client_tls_config(identity, resumed.then(TicketStore::new))?;
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport_config(&LinkOptions::default(), false)?));
    Ok(config)
}

/// rustls' session cache, counting the sessions it finds for a client's ticket.
#[derive(Debug)]
struct CountingSessions {
    cache: Arc<dyn StoresServerSessions>,
    found: Arc<AtomicUsize>,
}

impl CountingSessions {
    fn count(&self, session: Option<Vec<u8>>) -> Option<Vec<u8>> {
        if session.is_some() {
            self.found.fetch_add(1, Ordering::Relaxed);
        }
        session
    }
}

impl StoresServerSessions for CountingSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.cache.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.count(self.cache.get(key))
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.count(self.cache.take(key))
    }

    fn can_cache(&self) -> bool {
        self.cache.can_cache()
    }
}

/// peergraph's server configuration, with resumption on when `resumed` (its session
/// cache counting into `found` the sessions it finds).
fn server_config(
    identity: &NodeIdentity,
    resumed: bool,
    found: Arc<AtomicUsize>,
) -> anyhow::Result<quinn::ServerConfig> {
    let mut tls = server_tls_config(identity, resumed.then(ServerSessions::new))?;
    if resumed {
        tls.session_storage = Arc::new(CountingSessions {
            cache: tls.session_storage.clone(),
            found,
        });
    }
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport_config(&LinkOptions::default(), true)?));
    Ok(config)
}

/// `cycles` cycles of `cycle` after one untimed cycle (which gives the client its first
/// ticket when resumed); the time of the timed ones, how many of them the server resumed
/// (found the client's session for), and how many took the client's 0-RTT data. The
/// 0-RTT cycle fails unless every timed handshake was resumed and took its 0-RTT data.
/// The bare cycle with resumption on may resume none: its client closes as soon as its
/// handshake completes, before the server's tickets (sent once the server's handshake
/// completes, half a round trip later) reach it, so its cache stays empty; it is
/// measured to show that a raw quinn user closing at once gains nothing from resumption.
pub async fn measure(cycle: Cycle, cycles: usize) -> anyhow::Result<(Duration, usize, usize)> {
    let pair = Pair::start(cycle.resumed()).await?;
    let steps = matches!(cycle, Cycle::SameSteps | Cycle::SameSteps0Rtt);
    let zero_rtt = cycle == Cycle::SameSteps0Rtt;
    let (closed_tx, mut closed) = tokio::sync::mpsc::channel::<()>(4);
    let endpoint = pair.bob_endpoint.clone();
    let server = pair.bob.spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let serve = async {
                    let connecting = incoming.accept()?;
                    let connection = match zero_rtt {
                        // 0.5-RTT: WELCOME may leave before the client's Finished.
                        true => match connecting.into_0rtt() {
                            Ok((connection, _)) => connection,
                            Err(connecting) => connecting.await?,
                        },
                        false => connecting.await?,
                    };
                    if !steps {
                        connection.closed().await;
                        let _ = closed_tx.send(()).await;
                        return anyhow::Ok(());
                    }
                    steps::serve(connection).await
                };
                if let Err(error) = serve.await {
                    eprintln!("  0-RTT bench server: {error:#}");
                }
            });
        }
    });
    let (endpoint, address, client) = (
        pair.alice_endpoint.clone(),
        pair.bob_address,
        pair.client.clone(),
    );
    let hits = pair.sessions.clone();
    let outcome = pair
        .alice
        .run(async move {
            let mut start = Instant::now();
            let (mut hits_before, mut accepted) = (0, 0);
            for round in 0..=cycles {
                if round == 1 {
                    start = Instant::now();
                    hits_before = hits.load(Ordering::Relaxed);
                }
                let connecting = endpoint.connect_with(client.clone(), address, SERVER_NAME)?;
                let (connection, early) = match zero_rtt {
                    true => match connecting.into_0rtt() {
                        Ok((connection, accepted)) => (connection, Some(accepted)),
                        Err(connecting) => (connecting.await?, None),
                    },
                    false => (connecting.await?, None),
                };
                if !steps {
                    connection.close(0u32.into(), b"cycle");
                    closed.recv().await.context("server ended")?;
                    continue;
                }
                let (send, recv) = steps::open(&connection).await?;
                if let Some(early) = early {
                    // Resolves with the handshake, which came with WELCOME.
                    if round > 0 && early.await {
                        accepted += 1;
                    }
                }
                steps::close(connection, send, recv).await?;
            }
            let resumed = hits.load(Ordering::Relaxed) - hits_before;
            anyhow::Ok((start.elapsed(), resumed, accepted))
        })
        .await;
    server.abort();
    let (took, resumed, accepted) = outcome??;
    if zero_rtt && resumed < cycles {
        bail!("the server found the session of {resumed} of {cycles} handshakes");
    }
    if zero_rtt && accepted < cycles {
        bail!("0-RTT was accepted on {accepted} of {cycles} links");
    }
    Ok((took, resumed, accepted))
}
