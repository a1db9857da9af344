//! A seeded lossy UDP relay between one client and one server, for the `congestion`
//! benchmark: each datagram, each way, is dropped with a fixed probability or delivered
//! after a fixed delay. It needs no privileges (no netem) and runs on a thread of its
//! own, so that its timers do not compete with either node.
//!
//! ```text
//!  client ──▶ front socket ──dice──▶ queue (delay) ──▶ back socket ──▶ server
//!  client ◀── front socket ◀── queue (delay) ◀──dice── back socket ◀── server
//! ```
//!
//! The first datagram that reaches the front socket names the client; replies go to it.
//! Each direction holds at most [`QUEUE_DATAGRAMS`] datagrams in flight; past that it
//! drops them, as a router's full queue does.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::runtime::RuntimeThread;

/// Datagrams one direction holds while they wait out the delay: 8,192 datagrams of at
/// most ~1,500 bytes, ~12 MB, far above a 20 ms round trip's worth at loopback speed
/// (the congestion controllers, not this queue, set the rate).
pub const QUEUE_DATAGRAMS: usize = 8192;

/// The largest datagram the relay forwards (the largest UDP payload).
const MAX_DATAGRAM: usize = 65_535;

/// How the relay treats each datagram, each way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impairment {
    /// Probability that a datagram is dropped, from 0 to 1.
    pub loss: f64,
    /// Delay added to every datagram (each way; the round trip gains twice this).
    pub delay: Duration,
}

/// A running relay; it stops when dropped.
pub struct Relay {
    address: SocketAddr,
    // Dropping it stops the runtime and with it every task of the relay.
    _thread: RuntimeThread,
}

/// A xorshift64 generator: the same seed drops the same datagrams (of the same order).
struct Dice(u64);

impl Dice {
    fn new(seed: u64) -> Dice {
        // xorshift never leaves 0.
        Dice(seed | 1)
    }

    /// A number in [0, 1).
    fn roll(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Relay {
    /// Starts a relay on 127.0.0.1 in front of `server`, treating traffic per
    /// `impairment` with dice seeded by `seed`.
    ///
    /// # Errors
    /// When the thread or the sockets cannot be made.
    pub async fn start(
        server: SocketAddr,
        impairment: Impairment,
        seed: u64,
    ) -> anyhow::Result<Relay> {
        let thread = RuntimeThread::start("relay")?;
        let address = thread
            .run(async move {
                let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
                let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
                let address = front.local_addr()?;
                let client = Arc::new(Mutex::new(None::<SocketAddr>));
                let dice = Arc::new(Mutex::new(Dice::new(seed)));
                for upstream in [true, false] {
                    let (from, to) = if upstream {
                        (front.clone(), back.clone())
                    } else {
                        (back.clone(), front.clone())
                    };
                    let (queue, delayed) = mpsc::channel(QUEUE_DATAGRAMS);
                    let way = Way {
                        upstream,
                        server,
                        client: client.clone(),
                        dice: dice.clone(),
                        impairment,
                    };
                    tokio::spawn(way.receive(from, queue));
                    tokio::spawn(deliver(to, delayed));
                }
                anyhow::Ok(address)
            })
            .await?
            .context("relay sockets")?;
        Ok(Relay {
            address,
            _thread: thread,
        })
    }

    /// Where the client sends to reach the server.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

/// One direction of the relay.
struct Way {
    /// Client to server (else server to client).
    upstream: bool,
    server: SocketAddr,
    client: Arc<Mutex<Option<SocketAddr>>>,
    dice: Arc<Mutex<Dice>>,
    impairment: Impairment,
}

/// A datagram waiting out the delay: when it leaves, where to, and its bytes.
type Delayed = (Instant, SocketAddr, Vec<u8>);

impl Way {
    /// Reads datagrams, rolls the dice, and queues those that survive.
    async fn receive(self, from: Arc<UdpSocket>, queue: mpsc::Sender<Delayed>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        while let Ok((len, sender)) = from.recv_from(&mut buf).await {
            let mut client = self.client.lock().unwrap_or_else(PoisonError::into_inner);
            let target = if self.upstream {
                *client = Some(sender);
                Some(self.server)
            } else {
                *client
            };
            drop(client);
            let Some(target) = target else { continue };
            let lost = self
                .dice
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .roll()
                < self.impairment.loss;
            if lost {
                continue;
            }
            let due = Instant::now() + self.impairment.delay;
            // A full queue drops the datagram, as a router's would.
            let _ = queue.try_send((due, target, buf[..len].to_vec()));
        }
    }
}

/// Sends each queued datagram when its delay is over. One delay for all keeps them in
/// order.
async fn deliver(to: Arc<UdpSocket>, mut delayed: mpsc::Receiver<Delayed>) {
    while let Some((due, target, datagram)) = delayed.recv().await {
        tokio::time::sleep_until(due).await;
        let _ = to.send_to(&datagram, target).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Dice;

    #[test]
    fn the_dice_drop_about_the_asked_share() {
        let mut dice = Dice::new(0x5EED);
        let dropped = (0..100_000).filter(|_| dice.roll() < 0.05).count();
        assert!((4_500..5_500).contains(&dropped), "{dropped}");
        let mut again = Dice::new(0x5EED);
        let mut first = Dice::new(0x5EED);
        assert_eq!(again.roll().to_bits(), first.roll().to_bits());
    }
}
