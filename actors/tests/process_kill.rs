//! A peer process killed with SIGKILL in the middle of a transfer: the other side reports
//! DIRECT_CONNECTION DISCONNECTED within its idle timeout and frees the connection.
//!
//! This file is its own test harness (`harness = false`): run without arguments it is the
//! test; run with `--peer-child` it is the peer process the test starts and kills.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use peergraph::{
    ConnectionStatus, DataType, Engine, EngineConfig, EventRegistration, EventStream, EventType,
    GraphEvent, GraphId, GraphOptions, GraphProperties, PeerId, ResultCode, Version,
};

const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(20);

async fn node(peer: &str) -> (Engine, peergraph::Graph, EventStream, SocketAddr) {
    let engine = Engine::with_config(EngineConfig { workers: Some(1) }).expect("engine");
    engine.startup(Version::V1_0).expect("startup");
    let graph = engine
        .create_graph(
            GraphProperties::new(
                GraphId::new("kill").expect("id"),
                PeerId::new(peer).expect("id"),
            ),
            GraphOptions::default().with_idle_timeout(IDLE_TIMEOUT),
        )
        .expect("create");
    let events = graph
        .register_event(vec![
            EventRegistration::new(EventType::DirectConnection),
            EventRegistration::new(EventType::IncomingData),
        ])
        .await
        .expect("register");
    let address = graph
        .listen("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("listen");
    (engine, graph, events, address)
}

/// The peer process: listens, says where, and reads data until it is killed (or until its
/// parent goes away and its standard input closes).
async fn child() {
    let (_engine, _graph, mut events, address) = node("bob").await;
    println!("LISTENING {address}");
    std::thread::spawn(|| {
        let mut line = String::new();
        while std::io::stdin()
            .read_line(&mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
        std::process::exit(0);
    });
    while events.recv().await.is_some() {}
}

/// Kills the child if the test ends early.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_status(events: &mut EventStream, status: ConnectionStatus) -> GraphEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Some(GraphEvent::DirectConnection(change)) if change.status == status => {
                    return GraphEvent::DirectConnection(change)
                }
                Some(_) => {}
                None => panic!("event stream ended"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {status:?} within {WAIT:?}"))
}

async fn parent() {
    let exe = std::env::current_exe().expect("own path");
    let mut child = Reaper(
        Command::new(exe)
            .arg("--peer-child")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the peer process"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let line = lines_rx
        .recv_timeout(WAIT)
        .expect("the peer says where it listens");
    let peer_address: SocketAddr = line
        .strip_prefix("LISTENING ")
        .expect("LISTENING line")
        .parse()
        .expect("address");

    let (alice_engine, alice, mut events, _) = node("alice").await;
    let id = alice
        .open_direct_connection("bob", peer_address)
        .await
        .expect("open");
    wait_status(&mut events, ConnectionStatus::Connected).await;

    let sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (alice, sent) = (alice.clone(), sent.clone());
        tokio::spawn(async move {
            let chunk = Bytes::from(vec![0x42u8; 64 * 1024]);
            for _ in 0..16_384 {
                match alice
                    .send_data(id, DataType::from_u128(1), chunk.clone())
                    .await
                {
                    Ok(()) => sent.fetch_add(chunk.len(), Ordering::Relaxed),
                    Err(error) => return error.code(),
                };
            }
            ResultCode::S_OK
        })
    };
    // Kill the peer in the middle of the transfer.
    let deadline = Instant::now() + WAIT;
    while sent.load(Ordering::Relaxed) < 4 * 1024 * 1024 {
        assert!(Instant::now() < deadline, "the transfer did not get going");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.0.kill().expect("SIGKILL the peer");
    let killed_at = Instant::now();
    let event = wait_status(&mut events, ConnectionStatus::Disconnected).await;
    let noticed = killed_at.elapsed();
    assert!(
        matches!(&event, GraphEvent::DirectConnection(c) if c.connection_id == id),
        "{event:?}"
    );
    assert!(
        noticed <= IDLE_TIMEOUT + Duration::from_secs(2),
        "reported after {noticed:?}, idle timeout {IDLE_TIMEOUT:?}"
    );
    let outcome = tokio::time::timeout(WAIT, sender)
        .await
        .expect("the sender does not hang")
        .expect("sender task");
    assert_eq!(outcome, ResultCode::PEER_E_CONNECTION_NOT_FOUND);
    assert_eq!(alice.counters().await.expect("counters").connections, 0);
    let until = Instant::now() + WAIT;
    while alice_engine.connection_actor_count() != 0 {
        assert!(Instant::now() < until, "the connection actor was not freed");
        tokio::task::yield_now().await;
    }
    eprintln!(
        "peer killed after {} MiB; DISCONNECTED after {noticed:?} (idle timeout {IDLE_TIMEOUT:?})",
        sent.load(Ordering::Relaxed) >> 20
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if std::env::args().any(|arg| arg == "--peer-child") {
        runtime.block_on(child());
        return;
    }
    if std::env::args().any(|arg| arg == "--list") {
        println!("a_killed_peer_is_reported_within_the_idle_timeout: test");
        return;
    }
    runtime.block_on(parent());
    println!("process_kill: 1 passed, 0 failed");
}
