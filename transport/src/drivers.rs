//! Where quinn runs an endpoint's tasks: its endpoint driver (which reads the socket) and
//! one connection driver per link.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::thread::{self, ThreadId};
use std::time::Instant;

use quinn::{AsyncTimer, AsyncUdpSocket, Runtime};

/// Where quinn runs an endpoint's drivers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Drivers {
    /// Tasks of the tokio runtime (`tokio::spawn`): right for any tokio runtime.
    #[default]
    Runtime,
    /// Local tasks (`tokio::task::spawn_local`) of the `LocalSet` of the thread that binds
    /// the endpoint, such as an actix arbiter's, when the code using the endpoint runs
    /// there too. A datagram then goes from the socket to the application in one turn of
    /// that set's queue: with the drivers on the runtime's queue and the application on the
    /// set's, the current-thread scheduler polls the socket once more (without waiting) each
    /// time it passes from one queue to the other, which is once per message of a request
    /// and answer. A driver that quinn starts from another thread (a connect called there)
    /// is a runtime task as with [`Drivers::Runtime`]. Bind such an endpoint only from inside
    /// the thread's `LocalSet`: tokio refuses (panics) a local task outside one.
    Local,
}

impl Drivers {
    /// The quinn runtime that runs drivers here, around tokio's.
    ///
    /// # Errors
    /// An I/O error when called outside a tokio runtime.
    pub(crate) fn runtime(self) -> io::Result<Arc<dyn Runtime>> {
        let tokio = quinn::default_runtime()
            .ok_or_else(|| io::Error::other("no async runtime to drive the endpoint"))?;
        Ok(match self {
            Drivers::Runtime => tokio,
            Drivers::Local => Arc::new(LocalDrivers {
                tokio,
                thread: thread::current().id(),
            }),
        })
    }
}

/// tokio's runtime for quinn, but spawning on the binding thread's `LocalSet`.
struct LocalDrivers {
    tokio: Arc<dyn Runtime>,
    /// The thread whose `LocalSet` runs the drivers.
    thread: ThreadId,
}

impl fmt::Debug for LocalDrivers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalDrivers")
            .field("thread", &self.thread)
            .finish()
    }
}

impl Runtime for LocalDrivers {
    fn new_timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>> {
        self.tokio.new_timer(at)
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        if thread::current().id() == self.thread {
            tokio::task::spawn_local(future);
        } else {
            self.tokio.spawn(future);
        }
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        self.tokio.wrap_udp_socket(socket)
    }

    fn now(&self) -> Instant {
        // tokio's clock, as quinn's tokio runtime reads it, without a dynamic call per
        // packet (quinn asks for the time on every datagram and timer).
        tokio::time::Instant::now().into_std()
    }
}
