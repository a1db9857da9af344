//! A node killed with SIGKILL loses no record that AddRecord acknowledged.
//!
//! The test runs its own binary again as the child (`crash_child`, which does nothing
//! unless `PEERGRAPH_RECORDS_CRASH_DIR` is set). The child opens the graph's database and
//! adds records through `Graph::add_record` with 32 calls in flight, printing
//! `ack <record id> <sequence> <SHA-256 of the data>` once each call answers S_OK. The
//! parent kills it with SIGKILL after a number of acknowledgements drawn from a seeded
//! generator (1 to 500), then opens the database (`open_graph` answers S_OK) and checks
//! that every record acknowledged so far is there, byte for byte. Twenty rounds.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use futures_util::stream::{FuturesUnordered, StreamExt};
use peergraph::{
    AttributeValue, Attributes, Engine, EngineConfig, GraphId, GraphOptions, GraphProperties,
    GraphTime, NewRecord, PeerId, Record, RecordId, RecordType, ResultCode, Version,
};

const DIR_VARIABLE: &str = "PEERGRAPH_RECORDS_CRASH_DIR";
const FIRST_VARIABLE: &str = "PEERGRAPH_RECORDS_CRASH_FIRST";
const GRAPH: &str = "crash";
const PEER: &str = "alice";
const DATABASE: &str = "main";
/// AddRecord calls the child keeps in flight: enough that a kill lands during group
/// commits.
const IN_FLIGHT: usize = 32;
/// The most records one child adds, so that a child the parent fails to kill stops by
/// itself (and numbers the records of each round apart).
const MAX_CHILD_RECORDS: u64 = 2_000;
const ROUNDS: u64 = 20;
/// The most acknowledgements before a kill.
const MAX_KILL_AFTER: u64 = 500;
const SEED: u64 = 0x5eed_2024_0bad_cafe;
/// The longest the parent waits for one line of the child.
const LINE_TIMEOUT: Duration = Duration::from_secs(20);

/// splitmix64: a small seeded generator, enough for kill points and payloads.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The data of record `sequence`: 1 to 700 bytes, derived from the number alone.
fn data(sequence: u64) -> Vec<u8> {
    let mut rng = SplitMix(sequence ^ SEED);
    let len = 1 + (rng.next() % 700) as usize;
    (0..len).map(|_| rng.next() as u8).collect()
}

fn attributes(sequence: u64) -> Attributes {
    Attributes::new()
        .with(
            "seq",
            AttributeValue::Int(i64::try_from(sequence).expect("small")),
        )
        .and_then(|a| a.with("tag", AttributeValue::String(format!("record {sequence}"))))
        .expect("valid attributes")
}

fn record_type(sequence: u64) -> RecordType {
    RecordType::from_u128(1 + u128::from(sequence % 3)).expect("non-nil")
}

fn sha256(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn options(dir: &Path) -> GraphOptions {
    GraphOptions::default().with_database(dir, DATABASE)
}

fn engine() -> Engine {
    let engine = Engine::with_config(EngineConfig { workers: Some(1) }).expect("engine");
    engine.startup(Version::V1_0).expect("startup");
    engine
}

#[test]
fn crash_child() {
    let (Ok(dir), Ok(first)) = (std::env::var(DIR_VARIABLE), std::env::var(FIRST_VARIABLE)) else {
        return;
    };
    let first: u64 = first.parse().expect("a number");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(child(Path::new(&dir), first));
}

/// Adds records `first..first + MAX_CHILD_RECORDS`, 32 at a time, printing each
/// acknowledgement.
async fn child(dir: &Path, first: u64) {
    let engine = engine();
    let (graph, code) = engine
        .open_graph(GRAPH, PEER, options(dir))
        .expect("the child opens the graph");
    assert_eq!(code, ResultCode::S_OK);
    let expiration = GraphTime::from_system_time(SystemTime::now() + Duration::from_secs(86_400))
        .expect("a representable time");
    let end = first + MAX_CHILD_RECORDS;
    let mut next = first;
    let mut in_flight = FuturesUnordered::new();
    loop {
        while in_flight.len() < IN_FLIGHT && next < end {
            let (graph, sequence) = (graph.clone(), next);
            next += 1;
            in_flight.push(async move {
                let data = data(sequence);
                let sha = sha256(&data);
                let result = graph
                    .add_record(NewRecord {
                        record_type: record_type(sequence),
                        attributes: attributes(sequence),
                        expiration,
                        autorefresh: false,
                        data,
                    })
                    .await;
                (sequence, sha, result)
            });
        }
        let Some((sequence, sha, result)) = in_flight.next().await else {
            break;
        };
        let id = result.expect("the add succeeds");
        let mut out = std::io::stdout().lock();
        writeln!(out, "ack {id} {sequence} {sha}").expect("stdout");
        out.flush().expect("stdout");
    }
}

/// Kills the child if the test ends early.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One acknowledged record.
struct Ack {
    id: RecordId,
    sequence: u64,
    sha: String,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut fields = line.strip_prefix("ack ")?.split(' ');
    let id = fields.next()?.parse().expect("a record id");
    let sequence = fields.next()?.parse().expect("a sequence number");
    let sha = fields.next()?.to_owned();
    Some(Ack { id, sequence, sha })
}

fn check(ack: &Ack, record: &Record) {
    let expected = data(ack.sequence);
    assert_eq!(
        record.data(),
        &expected[..],
        "record {}: data",
        ack.sequence
    );
    assert_eq!(sha256(record.data()), ack.sha, "record {}", ack.sequence);
    assert_eq!(record.attributes(), &attributes(ack.sequence));
    assert_eq!(record.record_type(), record_type(ack.sequence));
    assert_eq!(record.creator_id().as_str(), PEER);
    assert_eq!(record.version(), 1);
}

#[tokio::test]
async fn acknowledged_records_survive_sigkill() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine();
    let graph = engine
        .create_graph(
            GraphProperties::new(
                GraphId::new(GRAPH).expect("graph id"),
                PeerId::new(PEER).expect("peer id"),
            ),
            options(dir.path()),
        )
        .expect("create");
    graph.close().await.expect("close");

    let mut rng = SplitMix(SEED);
    let mut acknowledged: Vec<Ack> = Vec::new();
    let (mut kills, mut found, mut stored) = (0, 0, 0);
    for round in 0..ROUNDS {
        let kill_after = 1 + rng.next() % MAX_KILL_AFTER;
        let mut child = Reaper(
            Command::new(std::env::current_exe().expect("test binary"))
                .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
                .env(DIR_VARIABLE, dir.path())
                .env(FIRST_VARIABLE, (round * MAX_CHILD_RECORDS).to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("child started"),
        );
        let stdout = child.0.stdout.take().expect("piped");
        let (lines_tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut acks_this_round = 0;
        while acks_this_round < kill_after {
            match lines.recv_timeout(LINE_TIMEOUT) {
                Ok(line) => {
                    if let Some(ack) = parse_ack(&line) {
                        acknowledged.push(ack);
                        acks_this_round += 1;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("round {round}: the child is silent"),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // SIGKILL: no destructor, no flush, in the middle of group commits.
        child.0.kill().expect("killed");
        child.0.wait().expect("reaped");
        kills += 1;
        // What the child printed before it died was acknowledged too; the pipe is closed
        // now, so this ends.
        reader.join().expect("the reader ends");
        acknowledged.extend(lines.try_iter().filter_map(|line| parse_ack(&line)));
        assert!(
            acks_this_round >= kill_after,
            "round {round}: the child stopped after {acks_this_round} acknowledgements"
        );

        let (graph, code) = engine
            .open_graph(GRAPH, PEER, options(dir.path()))
            .expect("the database opens after the kill");
        assert_eq!(code, ResultCode::S_OK, "round {round}");
        found = 0;
        for ack in &acknowledged {
            let record = graph
                .get_record(ack.id)
                .await
                .unwrap_or_else(|error| panic!("round {round}: record {}: {error}", ack.sequence));
            check(ack, &record);
            found += 1;
        }
        stored = graph.enum_records(None, None).await.expect("enum").len();
        graph.close().await.expect("close");
    }
    eprintln!(
        "records_crash: {kills} SIGKILLs, {} records acknowledged, {found} found intact, \
         {stored} stored (acknowledged or not) in {:.1?}",
        acknowledged.len(),
        started.elapsed()
    );
    assert_eq!(found, acknowledged.len());
    assert!(acknowledged.len() as u64 >= ROUNDS);
}
