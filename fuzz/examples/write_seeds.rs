//! Writes the seed inputs for `decode_frame` with the real encoder: one small file per
//! frame type (and a few shapes of each), plus one stream of several frames.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example write_seeds -- fuzz/seeds/decode_frame
//! ```

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use peergraph_engine::wire::{
    Connect, DisconnectReason, Message, RefuseReason, Welcome, PROOF_LEN, PROTOCOL_VERSION,
};
use peergraph_engine::{ConnectionId, DataType, GraphId, PeerId};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: write_seeds <directory>")?,
    );
    std::fs::create_dir_all(&dir)?;
    let connect = Message::Connect(Connect {
        version: PROTOCOL_VERSION,
        direct: true,
        connection_id: ConnectionId::new(0x0102_0304_0506_0708)?,
        graph_id: GraphId::new("chat")?,
        source_peer_id: PeerId::new("alice")?,
        target_peer_id: PeerId::new("bob")?,
        proof: Bytes::new(),
    });
    let connect_proof = Message::Connect(Connect {
        version: PROTOCOL_VERSION,
        direct: false,
        connection_id: ConnectionId::new(u64::MAX)?,
        graph_id: GraphId::new("gräph")?,
        source_peer_id: PeerId::new("ñode-1")?,
        target_peer_id: PeerId::new("節点")?,
        proof: Bytes::from(vec![0x5a; PROOF_LEN]),
    });
    let welcome = Message::Welcome(Welcome {
        connection_id: ConnectionId::new(9)?,
        graph_id: GraphId::new("chat")?,
        peer_id: PeerId::new("bob")?,
        proof: Bytes::from(vec![0xab; PROOF_LEN]),
    });
    let refuse = Message::Refuse(RefuseReason::NotAuthorized);
    let disconnect = Message::Disconnect(DisconnectReason::AppDisconnect);
    let data = Message::Data {
        data_type: DataType::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff),
        payload: Bytes::from_static(b"hello"),
    };
    let empty_data = Message::Data {
        data_type: DataType::from_u128(7),
        payload: Bytes::new(),
    };
    let seeds = [
        ("connect", vec![&connect]),
        ("connect_proof", vec![&connect_proof]),
        ("welcome", vec![&welcome]),
        ("refuse", vec![&refuse]),
        ("disconnect", vec![&disconnect]),
        ("data", vec![&data]),
        ("data_empty", vec![&empty_data]),
        ("stream", vec![&connect, &welcome, &data, &disconnect]),
    ];
    for (name, messages) in seeds {
        let mut buf = BytesMut::new();
        for message in messages {
            message.encode(&mut buf);
        }
        std::fs::write(dir.join(name), &buf)?;
        println!("{name}: {} bytes", buf.len());
    }
    Ok(())
}
