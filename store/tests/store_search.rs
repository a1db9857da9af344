//! A search answered through the attribute index finds exactly what a scan of every
//! record finds: the same records, in the same order, for every compare, type, wildcard,
//! `and` and `or`, after puts, replacements, erasures and tombstones, and after reopen.

mod common;

use common::{database_id, peer, TEN_MINUTES};
use peergraph_engine::{
    AttributeValue, Attributes, GraphTime, MemoryStore, NewRecord, Record, RecordFilter, RecordId,
    RecordStore, RecordType, Search, WriteOp, MAX_RECORD_SIZE,
};
use peergraph_store::RedbStore;

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const ROOMS: [&str; 6] = ["lobby", "lob", "kitchen", "a*b", "zz", "Lobby"];

fn record(rng: &mut Rng, id: u128) -> Record {
    let mut attributes = Attributes::new();
    if rng.below(5) != 0 {
        let room = ROOMS[rng.below(ROOMS.len() as u64) as usize];
        attributes = attributes
            .with("room", AttributeValue::String(room.into()))
            .expect("valid");
    }
    if rng.below(4) != 0 {
        let seq = rng.below(20) as i64 - 10;
        attributes = attributes
            .with("seq", AttributeValue::Int(seq))
            .expect("valid");
    }
    if rng.below(3) != 0 {
        let sent = GraphTime::from_ticks(rng.below(10));
        attributes = attributes
            .with("sent", AttributeValue::Date(sent))
            .expect("valid");
    }
    if rng.below(6) == 0 {
        // The same name with another type: a clause of one type must not see it.
        attributes = attributes
            .with("kind", AttributeValue::Int(rng.below(3) as i64))
            .expect("valid");
    } else {
        attributes = attributes
            .with("kind", AttributeValue::String(format!("k{}", rng.below(3))))
            .expect("valid");
    }
    Record::create(
        NewRecord {
            record_type: RecordType::from_u128(1 + u128::from(rng.below(2) as u8)).expect("type"),
            attributes,
            expiration: GraphTime::from_ticks(2 * TEN_MINUTES),
            autorefresh: false,
            data: vec![id as u8; 8],
        },
        RecordId::from_u128(id).expect("non-nil"),
        peer(if rng.below(2) == 0 { "alice" } else { "bob" }),
        GraphTime::from_ticks(TEN_MINUTES),
        MAX_RECORD_SIZE,
    )
    .expect("valid record")
}

fn clauses() -> Vec<String> {
    let mut clauses = Vec::new();
    for compare in [
        "equal",
        "notequal",
        "less",
        "greater",
        "lessorequal",
        "greaterorequal",
    ] {
        for value in ["lobby", "lob", "m", "zz"] {
            clauses.push(format!(
                "<clause attrib=\"room\" type=\"string\" compare=\"{compare}\">{value}</clause>"
            ));
        }
        for value in ["-3", "0", "5"] {
            clauses.push(format!(
                "<clause attrib=\"seq\" type=\"int\" compare=\"{compare}\">{value}</clause>"
            ));
            clauses.push(format!(
                "<clause attrib=\"kind\" type=\"int\" compare=\"{compare}\">{value}</clause>"
            ));
        }
        clauses.push(format!(
            "<clause attrib=\"sent\" type=\"date\" compare=\"{compare}\">1601-01-01T00:00:00.0000004Z</clause>"
        ));
    }
    for pattern in ["lob*", "*b*", "?obby", "a\\*b", "L*", "*", "k?"] {
        clauses.push(format!(
            "<clause attrib=\"room\" type=\"string\">{pattern}</clause>"
        ));
        clauses.push(format!(
            "<clause attrib=\"kind\" type=\"string\" compare=\"notequal\">{pattern}</clause>"
        ));
    }
    clauses.push("<clause attrib=\"peercreatorid\" type=\"string\">alice</clause>".into());
    clauses
}

fn searches(rng: &mut Rng) -> Vec<Search> {
    let clauses = clauses();
    let mut texts: Vec<String> = clauses.clone();
    for _ in 0..80 {
        let mut pick = || clauses[rng.below(clauses.len() as u64) as usize].clone();
        let (a, b, c) = (pick(), pick(), pick());
        texts.push(format!("<and>{a}{b}{c}</and>"));
        texts.push(format!("<or>{a}{b}</or>"));
        texts.push(format!("<and><or>{a}{b}</or>{c}</and>"));
    }
    texts
        .iter()
        .map(|text| Search::parse(&format!("<peersearch>{text}</peersearch>")).expect(text))
        .collect()
}

fn ids(records: &[Record]) -> Vec<RecordId> {
    records.iter().map(Record::id).collect()
}

fn same_answers(disk: &RedbStore, memory: &MemoryStore, searches: &[Search]) {
    let now = GraphTime::from_ticks(TEN_MINUTES);
    let mut indexed = 0;
    for search in searches {
        let expected = memory
            .live_records(&RecordFilter::all(), Some(search), now)
            .expect("memory");
        let found = disk
            .live_records(&RecordFilter::all(), Some(search), now)
            .expect("disk");
        assert_eq!(ids(&found), ids(&expected), "{search:?}");
        indexed += usize::from(search.index_scans().is_some());
    }
    assert!(indexed > searches.len() / 2, "most searches use the index");
}

#[test]
fn indexed_search_finds_what_a_full_scan_finds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (disk, _) = RedbStore::open(dir.path(), &database_id("main")).expect("opened");
    let memory = MemoryStore::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut batch = Vec::new();
    for id in 1..=400 {
        batch.push(WriteOp::Put(record(&mut rng, id)));
    }
    // Replacements (attributes change), erasures and tombstones.
    for id in (1..=400).step_by(7) {
        batch.push(WriteOp::Put(record(&mut rng, id)));
    }
    for id in (3..=400).step_by(11) {
        batch.push(WriteOp::Erase(RecordId::from_u128(id).expect("non-nil")));
    }
    for id in (5..=400).step_by(13) {
        let Some(WriteOp::Put(live)) = batch
            .iter()
            .rev()
            .find(|op| matches!(op, WriteOp::Put(r) if r.id().as_uuid().as_u128() == id))
            .cloned()
        else {
            continue;
        };
        let tombstone = live
            .deleted(peer("bob"), GraphTime::from_ticks(TEN_MINUTES + 1))
            .expect("live");
        batch.push(WriteOp::Put(tombstone));
    }
    disk.write_and_wait(batch.clone()).expect("written");
    memory.write_and_wait(batch).expect("written");
    let searches = searches(&mut rng);
    same_answers(&disk, &memory, &searches);
    drop(disk);
    let (disk, _) = RedbStore::open(dir.path(), &database_id("main")).expect("reopened");
    same_answers(&disk, &memory, &searches);
}
