//! Writes the seed inputs for `decode_frame` with the real encoder: one small file per
//! frame type (and a few shapes of each), plus one stream of several frames, whole and cut
//! into chunks. Each file starts with the chunk lengths `decode_frame` reads: a count, then
//! each length less one; a count of 0 feeds the frames as one chunk.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example write_seeds -- fuzz/seeds/decode_frame
//! ```

use std::path::PathBuf;

use bytes::{BufMut, Bytes, BytesMut};
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
    let stream = vec![&connect, &welcome, &data, &disconnect];
    // (name, chunk lengths, frames)
    let seeds: [(&str, &[u8], Vec<&Message>); 10] = [
        ("connect", &[], vec![&connect]),
        ("connect_proof", &[], vec![&connect_proof]),
        ("welcome", &[], vec![&welcome]),
        ("refuse", &[], vec![&refuse]),
        ("disconnect", &[], vec![&disconnect]),
        ("data", &[], vec![&data]),
        ("data_empty", &[], vec![&empty_data]),
        ("stream", &[], stream.clone()),
        // Chunks of 3 and 7 bytes in turn: headers cut in two, frames over several chunks.
        ("stream_split", &[3, 7], stream.clone()),
        ("stream_bytes", &[1], stream),
    ];
    for (name, lengths, messages) in seeds {
        let mut buf = BytesMut::new();
        buf.put_u8(lengths.len() as u8);
        for length in lengths {
            buf.put_u8(length - 1);
        }
        for message in messages {
            message.encode(&mut buf);
        }
        std::fs::write(dir.join(name), &buf)?;
        println!("{name}: {} bytes", buf.len());
    }
    Ok(())
}
