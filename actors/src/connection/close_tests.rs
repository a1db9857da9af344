//! The close path on a live QUIC link: a connection actor on an arbiter of its own, whose
//! thread a test can hold still, and a hand-driven peer on raw quinn.
use super::*;
use actix_rt::ArbiterHandle;
use bytes::Bytes;
use peergraph_engine::{ConnectionFlags, DataType, GraphHandle, PeerId, PeerKey, ResultCode};
use peergraph_transport::{bind_endpoint, LinkOptions, NodeIdentity, SERVER_NAME};
use std::future::Future;

/// The bound on every wait of these tests.
pub(crate) const BOUND: Duration = Duration::from_secs(10);

pub(crate) async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {BOUND:?}"))
}

/// Stands for the graph: tells when ConnectionEnded comes, and does nothing else.
struct NoGraph(Option<oneshot::Sender<()>>);

impl Actor for NoGraph {
    type Context = Context<Self>;
}

impl Handler<ConnectionEnded> for NoGraph {
    type Result = ();

    fn handle(&mut self, _: ConnectionEnded, _: &mut Self::Context) {
        if let Some(ended) = self.0.take() {
            let _ = ended.send(());
        }
    }
}

/// An actix system on a thread of its own, and its arbiter.
pub(crate) fn system() -> (actix_rt::System, ArbiterHandle) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runner = actix_rt::System::new();
        let _ = ready_tx.send((actix_rt::System::current(), actix_rt::Arbiter::current()));
        let _ = runner.run();
    });
    ready_rx.recv().expect("the actix system starts")
}

/// Holds the arbiter's thread still until the returned sender is used or dropped: what
/// happens to the link meanwhile is all there when the actor next runs.
pub(crate) async fn hold(arbiter: &ArbiterHandle) -> std::sync::mpsc::Sender<()> {
    let (held_tx, held_rx) = oneshot::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    assert!(arbiter.spawn(async move {
        let _ = held_tx.send(());
        let _ = release_rx.recv_timeout(BOUND);
    }));
    within("the arbiter is held", held_rx)
        .await
        .expect("holder runs");
    release_tx
}

struct Live {
    actor: Addr<ConnectionActor>,
    /// The actor's own link, to watch it.
    local: quinn::Connection,
    peer: quinn::Connection,
    peer_send: quinn::SendStream,
    peer_reader: FrameReader,
    /// The actor's outbox, as SendData uses it.
    outbox: crate::outbox::Outbox,
    ended: oneshot::Receiver<()>,
    _endpoints: [quinn::Endpoint; 2],
}

/// A QUIC link over loopback between two fresh endpoints, each with a node identity of
/// its own: the connecting side's connection, the accepting side's, the accepting
/// side's address, and both endpoints (to keep them alive).
pub(crate) async fn quic_pair() -> (
    quinn::Connection,
    quinn::Connection,
    std::net::SocketAddr,
    [quinn::Endpoint; 2],
) {
    let options = LinkOptions::default();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
    let identity = || NodeIdentity::generate().expect("identity");
    let accepting = bind_endpoint(any, &identity(), &options, true).expect("endpoint");
    let connecting = bind_endpoint(any, &identity(), &options, false).expect("endpoint");
    let address = accepting.local_addr().expect("address");
    let attempt = connecting.connect(address, SERVER_NAME).expect("connect");
    let (client, server) = within("the QUIC handshake", async {
        tokio::join!(attempt, async {
            accepting.accept().await.expect("incoming").await
        })
    })
    .await;
    (
        client.expect("connecting side"),
        server.expect("accepting side"),
        address,
        [accepting, connecting],
    )
}

/// A connection actor on `arbiter` over a fresh link with a raw peer.
async fn live_link(arbiter: &ArbiterHandle) -> Live {
    let (peer, local, address, endpoints) = quic_pair().await;
    let (mut peer_send, peer_recv) = within("open", peer.open_bi()).await.expect("open");
    // The stream shows up on the other side with its first bytes.
    let hello = Message::Data {
        data_type: DataType::from_u128(1),
        payload: Bytes::from_static(b"hello"),
    };
    within("write", peer_send.write_all(&hello.to_bytes()))
        .await
        .expect("write");
    let (send, recv) = within("accept", local.accept_bi()).await.expect("accept");
    let (outbox, outbox_receiver) = crate::outbox::outbox();
    let (ended_tx, ended) = oneshot::channel();
    let graph = NoGraph::start_in_arbiter(arbiter, |_| NoGraph(Some(ended_tx))).recipient();
    let info = ConnectionInfo {
        flags: ConnectionFlags::DIRECT,
        connection_id: ConnectionId::new(7).expect("id"),
        node_id: PeerKey([0; 32]).node_id(),
        peer_key: PeerKey([0; 32]),
        peer_id: PeerId::new("peer").expect("peer id"),
        address,
    };
    let setup = ConnectionSetup {
        info,
        link: LinkParts {
            connection: local.clone(),
            send,
            reader: FrameReader::new(recv),
        },
        outbox: outbox.clone(),
        outbox_receiver,
        graph,
        subscribers: Arc::new(Subscribers::new(GraphHandle::new(1).expect("handle"))),
        close_timeout: BOUND,
        close_bound: BOUND,
        live_actors: Arc::new(AtomicUsize::new(0)),
    };
    let actor = ConnectionActor::start_in_arbiter(arbiter, move |_| ConnectionActor::new(setup));
    Live {
        actor,
        local,
        peer,
        peer_send,
        peer_reader: FrameReader::new(peer_recv),
        outbox,
        ended,
        _endpoints: endpoints,
    }
}

/// Waits until the link's writer waits for frames, its stream lent to the outbox.
async fn writer_lends(link: &Live) {
    within("the writer lends its stream", async {
        while !link.outbox.is_lent() {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// The peer writes its DISCONNECT.
async fn peer_sends_disconnect(link: &mut Live) {
    let disconnect = Message::Disconnect(DisconnectReason::AppDisconnect).to_bytes();
    within(
        "the peer's DISCONNECT",
        link.peer_send.write_all(&disconnect),
    )
    .await
    .expect("write");
}

/// The peer's next read is our DISCONNECT.
async fn peer_reads_disconnect(link: &mut Live) {
    let read = within("our DISCONNECT", link.peer_reader.read()).await;
    assert!(matches!(read, Ok(Some(Message::Disconnect(_)))), "{read:?}");
}

/// The peer's next read is the end of our stream: our FIN.
async fn peer_reads_fin(link: &mut Live) {
    let read = within("our FIN", link.peer_reader.read()).await;
    assert!(matches!(read, Ok(None)), "{read:?}");
}

/// Sends `Close` to the link's actor and waits until the peer has read our DISCONNECT;
/// returns the task that awaits the close's reply.
async fn close_under_way(link: &mut Live) -> oneshot::Receiver<Result<(), PeerError>> {
    let (reply, close) = oneshot::channel();
    link.actor.do_send(Close { reply });
    peer_reads_disconnect(link).await;
    close
}

/// The close succeeds, and the peer's QUIC close (APP_DISCONNECT, which it sends only
/// once it has read our FIN) reaches us before the actor runs again: the actor then
/// finds the peer's FIN and the closed link in one turn. The first ends the close and
/// decides its answer, S_OK; the second must neither change it nor lose it. (When the
/// answer still went through a future of the Close handler, the second stopped the
/// actor with that future, and the caller got PEER_E_CONNECTION_NOT_FOUND for a close
/// that had succeeded.)
#[tokio::test]
async fn a_close_that_succeeds_as_the_peer_closes_quic_is_answered() {
    let (system, arbiter) = system();
    let mut link = live_link(&arbiter).await;
    let close = close_under_way(&mut link).await;
    peer_sends_disconnect(&mut link).await;
    // Our FIN: the actor has read the peer's DISCONNECT and its writer is done.
    peer_reads_fin(&mut link).await;
    let release = hold(&arbiter).await;
    link.peer_send.finish().expect("finish");
    within(
        "our quinn acknowledges the peer's FIN",
        link.peer_send.stopped(),
    )
    .await
    .expect("stopped");
    link.peer
        .close(close_code::APP_DISCONNECT.into(), b"disconnect");
    within("our quinn sees the close", link.local.closed()).await;
    let _ = release.send(());
    let reply = within("the close's reply", close).await;
    assert_eq!(reply.map_err(|e| e.to_string()), Ok(Ok(())));
    within("the actor ends", link.ended).await.expect("ended");
    system.stop();
}

/// The actor panics while a close waits for the peer: the close is still answered,
/// PEER_E_CONNECTION_FAILED (the peer never confirmed), once the actor is gone.
#[cfg(feature = "fault-injection")]
#[tokio::test]
async fn a_close_cut_short_by_a_panic_is_answered() {
    let (system, arbiter) = system();
    let mut link = live_link(&arbiter).await;
    let close = close_under_way(&mut link).await;
    link.actor.do_send(InjectPanic);
    let reply = within("the close's reply", close).await;
    assert_eq!(
        reply.map_err(|e| e.to_string()),
        Ok(Err(PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED)))
    );
    within("the actor ends", link.ended).await.expect("ended");
    // The link was cut, not finished: a FIN would tell the peer we had read all it sent.
    let after = within("the peer's next read", link.peer_reader.read()).await;
    assert!(
        matches!(
            after,
            Err(ReadFrameError::Stream(quinn::ReadError::ConnectionLost(_)))
        ),
        "{after:?}"
    );
    system.stop();
}

/// The graph closes (Leave) while a close waits for the peer: the close is answered
/// PEER_E_INVALID_GRAPH. (When the answer still went through a future of the Close
/// handler, Leave stopped the actor with that future, and the caller got
/// PEER_E_CONNECTION_NOT_FOUND.)
#[tokio::test]
async fn a_close_cut_short_by_leave_is_answered() {
    let (system, arbiter) = system();
    let mut link = live_link(&arbiter).await;
    // The close waits for the peer, which never answers.
    let close = close_under_way(&mut link).await;
    within("Leave", link.actor.send(Leave))
        .await
        .expect("Leave handled");
    let reply = within("the close's reply", close).await;
    assert_eq!(
        reply.map_err(|e| e.to_string()),
        Ok(Err(PeerError::new(ResultCode::PEER_E_INVALID_GRAPH)))
    );
    within("the actor ends", link.ended).await.expect("ended");
    within("the peer hears the close", link.peer.closed()).await;
    system.stop();
}

/// Frames that their senders write into the stream themselves (while the writer waits)
/// and frames the writer writes reach the peer whole and in the order they were sent, a
/// frame larger than the peer's window included (quinn takes part of it at once, the
/// writer the rest), and our DISCONNECT comes after all of them.
#[tokio::test]
async fn frames_written_by_their_senders_and_by_the_writer_keep_their_order() {
    let (system, arbiter) = system();
    let mut link = live_link(&arbiter).await;
    let data_type = DataType::from_u128(9);
    // The peer's connection window starts at 16 KiB (the transport's initial window).
    let larger_than_the_window = 64 * 1024;
    let rounds = [(0u8, 100), (1, larger_than_the_window), (2, 10), (3, 1)];
    for (index, (round, first_len)) in rounds.into_iter().enumerate() {
        within("the writer lends its stream", async {
            while !link.outbox.is_lent() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        // The first frame of a round goes by its sender, the burst behind it by the
        // writer.
        link.outbox.forget_direct_write();
        let mut frames = vec![Bytes::from(vec![round; first_len])];
        frames.extend((1..=50).map(|len| Bytes::from(vec![round; len])));
        for (i, frame) in frames.iter().enumerate() {
            within("SendData", link.outbox.send_data(data_type, frame.clone()))
                .await
                .expect("queued");
            if i == 0 {
                assert!(
                    link.outbox.wrote_directly(),
                    "round {round}: the first frame"
                );
            }
        }
        let last = index == 3;
        if last {
            link.actor.do_send(Close {
                reply: oneshot::channel().0,
            });
        }
        for (i, frame) in frames.iter().enumerate() {
            let read = within("the peer reads", link.peer_reader.read()).await;
            match read {
                Ok(Some(Message::Data {
                    data_type: read_type,
                    payload,
                })) => {
                    assert_eq!(read_type, data_type);
                    assert!(payload == frame, "round {round}, frame {i}: wrong payload");
                }
                other => panic!("round {round}, frame {i}: {other:?}"),
            }
        }
        if last {
            let after = within("our DISCONNECT", link.peer_reader.read()).await;
            assert!(
                matches!(after, Ok(Some(Message::Disconnect(_)))),
                "{after:?}"
            );
        }
    }
    system.stop();
}

/// A DISCONNECT queued as the graph queues it when a close starts, before the actor has
/// the Close, goes into the stream the waiting writer lent: it reaches the peer while the
/// actor's thread is held (neither the writer nor the actor has had a turn). The Close
/// that follows finds it queued, and the close completes with S_OK.
#[tokio::test]
async fn a_disconnect_queued_as_the_close_starts_leaves_without_the_writers_turn() {
    let (system, arbiter) = system();
    let mut link = live_link(&arbiter).await;
    writer_lends(&link).await;
    let release = hold(&arbiter).await;
    link.outbox
        .disconnect(DisconnectReason::AppDisconnect, false)
        .expect("queued");
    peer_reads_disconnect(&mut link).await;
    let (reply, close) = oneshot::channel();
    link.actor.do_send(Close { reply });
    let _ = release.send(());
    peer_sends_disconnect(&mut link).await;
    link.peer_send.finish().expect("finish");
    peer_reads_fin(&mut link).await;
    let reply = within("the close's reply", close).await;
    assert_eq!(reply.map_err(|e| e.to_string()), Ok(Ok(())));
    within("the actor ends", link.ended).await.expect("ended");
    system.stop();
}

/// The peer closes: our answer, DISCONNECT and FIN, goes as one STREAM frame (the FIN
/// rides with the DISCONNECT), and the link ends once the peer's FIN is read.
#[tokio::test]
async fn the_answer_to_a_peers_close_carries_our_fin_with_our_disconnect() {
    let (system, arbiter) = system();
    let mut link = live_link(&arbiter).await;
    writer_lends(&link).await;
    peer_sends_disconnect(&mut link).await;
    peer_reads_disconnect(&mut link).await;
    peer_reads_fin(&mut link).await;
    assert_eq!(
        link.local.stats().frame_tx.stream,
        1,
        "our DISCONNECT and FIN went in one STREAM frame, the only one we sent"
    );
    link.peer_send.finish().expect("finish");
    within("the actor ends", link.ended).await.expect("ended");
    system.stop();
}

/// The reader's step, which an idle link holds for as long as it waits for a frame, stays
/// small: the rare wait for room in the registrations is boxed, not inline.
#[tokio::test]
async fn an_idle_readers_step_stays_small() {
    let (peer, local, _, _endpoints) = quic_pair().await;
    let (mut peer_send, _peer_recv) = within("open", peer.open_bi()).await.expect("open");
    within("write", peer_send.write_all(b"x"))
        .await
        .expect("write");
    let (_send, recv) = within("accept", local.accept_bi()).await.expect("accept");
    let subscribers = Arc::new(Subscribers::new(GraphHandle::new(1).expect("handle")));
    let id = ConnectionId::new(7).expect("id");
    let reader = super::inbound(FrameReader::new(recv), local.clone(), subscribers, id);
    let step = std::mem::size_of_val(&*reader.steps);
    // 568 bytes before the wait was boxed and no matched value lived across a wait.
    assert!(step <= 192, "the reader's step takes {step} bytes");
}

/// The writer's task, which every link holds for life, stays within 280 bytes: tokio
/// rounds a task up to a multiple of 128 bytes, and with its 104 of header and trailer
/// that makes 384. It was 352 (a task of 512) while the spawned future kept the writer's
/// arguments twice and `write_all_chunks`'s future inline.
#[tokio::test]
async fn a_writers_task_stays_small() {
    let (system, arbiter) = system();
    let link = live_link(&arbiter).await;
    let (peer, _local, _, _endpoints) = quic_pair().await;
    let (send, _recv) = within("open", peer.open_bi()).await.expect("open");
    let (_outbox, receiver) = crate::outbox::outbox();
    let task = Writer::new(send, receiver, link.actor.downgrade()).run();
    let size = std::mem::size_of_val(&task);
    assert!(size <= 280, "the writer's task takes {size} bytes");
    drop(task);
    drop(link);
    system.stop();
}

/// The connection actor's task, which every link holds for life, stays within 768 bytes:
/// its future (the actor in its actix context) within 664, with tokio's 104 of header and
/// trailer. It was 896 while the link's machine kept the state of a link's end inline
/// (112 bytes) and the close timer's deadline sat beside its probe.
#[test]
fn a_connection_actors_task_stays_small() {
    let size =
        std::mem::size_of::<actix::dev::ContextFut<ConnectionActor, Context<ConnectionActor>>>();
    assert!(
        size <= 664,
        "the connection actor's future takes {size} bytes"
    );
}
