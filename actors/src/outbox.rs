//! The bounded outbox of one connection: SendData queues DATA frames into it from any
//! thread, the connection's writer drains it, and a close queues DISCONNECT behind
//! everything accepted before it.

use std::sync::Arc;

use bytes::Bytes;
use peergraph_engine::wire::{DisconnectReason, DATA_HEADER_LEN, MAX_DATA_LEN};
use peergraph_engine::{DataType, PeerError};
use peergraph_transport::DataFrame;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The most frames waiting in one connection's outbox.
pub const OUTBOX_FRAMES: usize = 1024;
/// The most bytes waiting in one connection's outbox: 2 MiB. quinn buffers up to its send
/// window behind this, so a small outbox keeps the link busy while a sender that outruns
/// the network waits here instead of growing memory.
pub const OUTBOX_BYTES: usize = 2 * 1024 * 1024;

/// What the writer of a connection is asked to send.
///
/// Kept to two words: the outbox's channel allocates its first block of 32 slots when the
/// link starts, so every byte here costs 32 on each idle link.
pub(crate) enum Outgoing {
    /// A DATA frame, boxed with its share of the outbox's byte budget.
    Data(Box<QueuedData>),
    /// A control frame (WELCOME), written before anything queued after it.
    Control(Box<Bytes>),
    /// Write everything queued so far, then DISCONNECT with this reason; accept nothing
    /// after it.
    Disconnect(DisconnectReason),
}

const _: () = assert!(std::mem::size_of::<Outgoing>() <= 2 * std::mem::size_of::<usize>());

/// A DATA frame in the outbox; the permit holds its share of [`OUTBOX_BYTES`] until it is
/// written.
pub(crate) struct QueuedData {
    pub(crate) frame: DataFrame,
    pub(crate) permit: OwnedSemaphorePermit,
}

/// The sending side of a connection's outbox. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Outbox {
    frames: mpsc::Sender<Outgoing>,
    budget: Arc<Semaphore>,
}

/// The receiving side, owned by the connection's writer.
pub(crate) struct OutboxReceiver {
    pub(crate) frames: mpsc::Receiver<Outgoing>,
    pub(crate) budget: Arc<Semaphore>,
}

pub(crate) fn outbox() -> (Outbox, OutboxReceiver) {
    let (frames, receiver) = mpsc::channel(OUTBOX_FRAMES);
    let budget = Arc::new(Semaphore::new(OUTBOX_BYTES));
    (
        Outbox {
            frames,
            budget: budget.clone(),
        },
        OutboxReceiver {
            frames: receiver,
            budget,
        },
    )
}

/// Checks a SendData payload's length.
///
/// # Errors
/// `E_INVALIDARG` when it passes [`MAX_DATA_LEN`].
pub(crate) fn check_payload(payload: &Bytes) -> Result<(), PeerError> {
    if payload.len() > MAX_DATA_LEN {
        return Err(PeerError::INVALID_ARG);
    }
    Ok(())
}

impl Outbox {
    /// Queues a DATA frame, waiting while the outbox is full. `Ok` means the frame will be
    /// written before any DISCONNECT of this connection.
    ///
    /// # Errors
    /// `PEER_E_CONNECTION_NOT_FOUND` once the connection is closing or gone.
    pub(crate) async fn send_data(
        &self,
        data_type: DataType,
        payload: Bytes,
    ) -> Result<(), PeerError> {
        self.slot(data_type, payload).await?.queue();
        Ok(())
    }

    /// Queues a DATA frame if the outbox has room for it now, without waiting and without
    /// spending the calling task's cooperative budget.
    ///
    /// # Errors
    /// [`Refused::Full`] with the payload back when SendData would have to wait;
    /// [`Refused::Gone`] once the connection is closing or gone.
    pub(crate) fn try_send_data(&self, data_type: DataType, payload: Bytes) -> Result<(), Refused> {
        let cost = (DATA_HEADER_LEN + payload.len()).clamp(1, OUTBOX_BYTES) as u32;
        let permit = match self.budget.clone().try_acquire_many_owned(cost) {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => return Err(Refused::Full(payload)),
            Err(TryAcquireError::Closed) => return Err(Refused::Gone),
        };
        match self.frames.try_reserve() {
            Ok(place) => {
                let frame = DataFrame::new(data_type, payload);
                place.send(Outgoing::Data(Box::new(QueuedData { frame, permit })));
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(())) => Err(Refused::Full(payload)),
            Err(mpsc::error::TrySendError::Closed(())) => Err(Refused::Gone),
        }
    }

    /// The first half of [`send_data`](Self::send_data): takes the frame's share of the
    /// byte budget and its place in the channel, waiting while the outbox is full. A close
    /// that comes after this point no longer refuses the frame: the writer waits for it.
    ///
    /// # Errors
    /// `PEER_E_CONNECTION_NOT_FOUND` once the connection is closing or gone.
    pub(crate) async fn slot(
        &self,
        data_type: DataType,
        payload: Bytes,
    ) -> Result<Slot<'_>, PeerError> {
        let frame = DataFrame::new(data_type, payload);
        let cost = frame.wire_len().clamp(1, OUTBOX_BYTES) as u32;
        // With room, the budget and the place are taken without waiting, and without
        // spending the calling task's cooperative budget: a sender that fills the outbox
        // runs on until it is full, and the writer then takes a large batch, which quinn
        // sends in full packets, several to a system call. (Through the waiting path,
        // tokio makes the task yield every few dozen frames, and each yield let the
        // writer and quinn send the few packets queued so far on their own.) Permits
        // given back go to the tasks already waiting, in order, before any is left for
        // this path, so it cannot pass them.
        let permit = match self.budget.clone().try_acquire_many_owned(cost) {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => self
                .budget
                .clone()
                .acquire_many_owned(cost)
                .await
                .map_err(|_| PeerError::CONNECTION_NOT_FOUND)?,
            Err(TryAcquireError::Closed) => return Err(PeerError::CONNECTION_NOT_FOUND),
        };
        let place = match self.frames.try_reserve() {
            Ok(place) => place,
            Err(mpsc::error::TrySendError::Full(())) => self
                .frames
                .reserve()
                .await
                .map_err(|_| PeerError::CONNECTION_NOT_FOUND)?,
            Err(mpsc::error::TrySendError::Closed(())) => {
                return Err(PeerError::CONNECTION_NOT_FOUND)
            }
        };
        Ok(Slot {
            place,
            queued: Box::new(QueuedData { frame, permit }),
        })
    }

    /// Queues a control frame on a new link (its outbox is empty, so this never waits).
    pub(crate) fn control(&self, frame: Bytes) -> Result<(), PeerError> {
        self.frames
            .try_send(Outgoing::Control(Box::new(frame)))
            .map_err(|_| PeerError::CONNECTION_NOT_FOUND)
    }

    /// Asks the writer to flush and DISCONNECT, waiting while the outbox is full.
    ///
    /// # Errors
    /// `PEER_E_CONNECTION_NOT_FOUND` if the writer is already gone.
    pub(crate) async fn disconnect(&self, reason: DisconnectReason) -> Result<(), PeerError> {
        self.frames
            .send(Outgoing::Disconnect(reason))
            .await
            .map_err(|_| PeerError::CONNECTION_NOT_FOUND)
    }

    /// [`disconnect`](Self::disconnect) if the outbox has room now: `Ok(false)` when it
    /// is full.
    ///
    /// # Errors
    /// `PEER_E_CONNECTION_NOT_FOUND` if the writer is already gone.
    pub(crate) fn try_disconnect(&self, reason: DisconnectReason) -> Result<bool, PeerError> {
        match self.frames.try_send(Outgoing::Disconnect(reason)) {
            Ok(()) => Ok(true),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(false),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(PeerError::CONNECTION_NOT_FOUND),
        }
    }
}

/// Why [`Outbox::try_send_data`] did not queue a frame.
pub(crate) enum Refused {
    /// No room now: the payload, to queue by waiting.
    Full(Bytes),
    /// The connection is closing or gone.
    Gone,
}

/// A DATA frame with its place in an outbox taken: [`queue`](Self::queue) puts it there.
pub(crate) struct Slot<'a> {
    place: mpsc::Permit<'a, Outgoing>,
    queued: Box<QueuedData>,
}

impl Slot<'_> {
    /// Puts the frame in its place; it cannot fail.
    pub(crate) fn queue(self) {
        self.place.send(Outgoing::Data(self.queued));
    }
}
