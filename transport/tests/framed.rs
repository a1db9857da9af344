//! The frame reader over a real QUIC stream on loopback: frames taken without waiting
//! ([`FrameReader::read_ready`]) and frames waited for ([`FrameReader::read`]) come out in
//! the order they were sent, the stream's end or reset, when a read without waiting finds
//! it, is reported after the frames before it, never lost and never mistaken for the
//! other, and a reader that met a malformed frame takes nothing more.

mod common;

use anyhow::{anyhow, ensure};
use bytes::Bytes;
use common::{loopback, within};
use peergraph_engine::wire::Message;
use peergraph_engine::DataType;
use peergraph_transport::quinn;
use peergraph_transport::{
    bind_endpoint, write_message, FrameReader, LinkOptions, NodeIdentity, ReadFrameError,
    SERVER_NAME,
};

/// The application close code the tests end their connections with.
const DONE: u32 = 0;

/// The reset code the sender's stream is reset with.
const RESET: u32 = 7;

/// Two endpoints linked on loopback, and a stream the client has opened. The server's
/// half is accepted once something was written on it (quinn announces a stream only
/// then), by [`Link::accept`].
struct Link {
    client: quinn::Endpoint,
    server: quinn::Endpoint,
    client_connection: quinn::Connection,
    server_connection: quinn::Connection,
    send: quinn::SendStream,
}

impl Link {
    /// Writes `count` frames (see [`frames`]) on the client's stream and returns them.
    async fn send_frames(&mut self, count: usize) -> anyhow::Result<Vec<Message>> {
        let sent = frames(count);
        for message in &sent {
            write_message(&mut self.send, message).await?;
        }
        Ok(sent)
    }

    async fn new() -> anyhow::Result<Link> {
        let server_identity = NodeIdentity::generate()?;
        let client_identity = NodeIdentity::generate()?;
        let options = LinkOptions::default();
        let server = bind_endpoint(loopback(), &server_identity, &options, true)?;
        let client = bind_endpoint(loopback(), &client_identity, &options, false)?;
        let connecting = client.connect(server.local_addr()?, SERVER_NAME)?;
        let accepting = async {
            let incoming = server.accept().await.ok_or_else(|| anyhow!("closed"))?;
            anyhow::Ok(incoming.await?)
        };
        let (client_connection, server_connection) =
            within("handshake", async { tokio::join!(connecting, accepting) }).await?;
        let client_connection = client_connection?;
        let (send, _recv) = within("open stream", client_connection.open_bi()).await??;
        Ok(Link {
            client,
            server,
            client_connection,
            server_connection: server_connection?,
            send,
        })
    }

    /// The server's reader of the client's stream.
    async fn accept(&mut self) -> anyhow::Result<FrameReader> {
        let (_send, recv) = within("accept stream", self.server_connection.accept_bi()).await??;
        Ok(FrameReader::new(recv))
    }

    async fn shut_down(self) -> anyhow::Result<()> {
        self.client_connection
            .close(quinn::VarInt::from_u32(DONE), b"done");
        for endpoint in [&self.client, &self.server] {
            endpoint.close(quinn::VarInt::from_u32(DONE), b"done");
            within("endpoint idle", endpoint.wait_idle()).await?;
        }
        Ok(())
    }
}

/// `count` DATA frames of 64 bytes, each marked with its number: several packets' worth,
/// so frames run across chunk boundaries.
fn frames(count: usize) -> Vec<Message> {
    (0..count)
        .map(|i| Message::Data {
            data_type: DataType::from_u128(0x5eed),
            payload: Bytes::from(vec![i as u8; 64]),
        })
        .collect()
}

/// Takes every chunk quinn holds without waiting, then every whole frame they hold.
fn take_ready(reader: &mut FrameReader) -> anyhow::Result<Vec<Message>> {
    let mut chunks = 0;
    while reader.read_ready() {
        chunks += 1;
        ensure!(chunks < 10_000, "read_ready never ran dry");
    }
    let mut taken = Vec::new();
    while let Some(message) = reader.read_buffered()? {
        taken.push(message);
    }
    Ok(taken)
}

#[tokio::test]
async fn frames_taken_without_waiting_come_in_order_and_the_end_after_them() -> anyhow::Result<()> {
    let mut link = Link::new().await?;
    // Within the link's first receive window (16 KiB), so every write completes before
    // the server reads.
    let sent = link.send_frames(150).await?;
    link.send.finish()?;
    // The server's quinn has acknowledged every frame and the end: it holds them all.
    within("acknowledged", link.send.stopped()).await??;
    let mut reader = link.accept().await?;

    // Every frame is with quinn: all of them are taken without waiting, and the end with
    // them, held; `read` reports it after the frames.
    let got = take_ready(&mut reader)?;
    ensure!(
        got == sent,
        "{} frames of {} in order",
        got.len(),
        sent.len()
    );
    ensure!(
        within("read", reader.read()).await??.is_none(),
        "the end comes after the frames"
    );
    ensure!(!reader.read_ready(), "nothing after the end");
    link.shut_down().await
}

#[tokio::test]
async fn a_reset_found_without_waiting_is_an_error_not_an_end() -> anyhow::Result<()> {
    let mut link = Link::new().await?;
    let sent = link.send_frames(40).await?;
    link.send.reset(quinn::VarInt::from_u32(RESET))?;
    let mut reader = link.accept().await?;

    // The reset mostly arrives with the frames, and the first read without waiting finds
    // it. quinn may drop what was received before a reset: whatever frames come are the
    // first ones sent, and the reset comes after them as an error.
    let mut got = take_ready(&mut reader)?;
    let error = loop {
        match within("read", reader.read()).await? {
            Ok(Some(message)) => got.push(message),
            Ok(None) => return Err(anyhow!("a reset stream read as finished")),
            Err(error) => break error,
        }
    };
    ensure!(
        sent.starts_with(&got),
        "the frames before the reset, in order"
    );
    ensure!(
        matches!(
            error,
            ReadFrameError::Stream(quinn::ReadError::Reset(code)) if code.into_inner() == RESET.into()
        ),
        "read failed with {error}"
    );
    link.shut_down().await
}

#[tokio::test]
async fn nothing_is_taken_past_a_malformed_frame() -> anyhow::Result<()> {
    let mut link = Link::new().await?;
    // A frame type no version of the protocol has, with a body, then good frames.
    link.send.write_all(&[0xee, 0, 0, 0, 1, 0]).await?;
    link.send_frames(20).await?;
    link.send.finish()?;
    let mut reader = link.accept().await?;

    let error = within("read", reader.read()).await?.err();
    ensure!(
        matches!(error, Some(ReadFrameError::Protocol(_))),
        "read gave {error:?}"
    );
    ensure!(!reader.read_ready(), "a failed reader takes no more chunks");
    ensure!(reader.read_buffered().is_err(), "the error stays");
    link.shut_down().await
}
