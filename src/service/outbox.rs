//! The queue behind every server-streaming call (`Screen`, `VerifyLedger`,
//! `ExportContact`): the producer queues messages, the caller takes them.
//!
//! A caller that stops reading must not hold the server's work forever: a verification
//! pins a storage snapshot, a screening holds its decided chunks. So a message the caller
//! has not taken within the stall limit (`request_timeout`) ends the call: the producer
//! is told to stop and releases what it holds, and the caller, if it ever reads again,
//! gets the messages already queued and then `DEADLINE_EXCEEDED` saying why. (A stream
//! cannot be reset from here: the transport only polls a response body when the caller
//! has room for more, so the error waits behind what is queued.)

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc::{self, error::SendTimeoutError};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::metrics::Metrics;

/// What a streaming handler returns.
pub(crate) type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The producer's end of a streamed response.
#[derive(Debug)]
pub(crate) struct Outbox<T> {
    sender: mpsc::Sender<Result<T, Status>>,
    stall: Duration,
    stalled: Arc<OnceLock<Status>>,
    call: &'static str,
    metrics: Arc<Metrics>,
    runtime: tokio::runtime::Handle,
}

/// A queue of `capacity` messages for the call named `call` (for the error and the log),
/// and the response stream that drains it. Must be created on the runtime.
pub(crate) fn outbox<T: Send + 'static>(
    call: &'static str,
    capacity: usize,
    stall: Duration,
    metrics: Arc<Metrics>,
) -> (Outbox<T>, ResponseStream<T>) {
    let (sender, receiver) = mpsc::channel(capacity);
    let stalled = Arc::new(OnceLock::new());
    let ending = {
        let stalled = Arc::clone(&stalled);
        // Runs once the producer has dropped its end: nothing when it finished, the stall
        // error when it was stopped.
        futures::stream::once(async move { stalled.get().cloned() })
            .filter_map(|status| async move { status.map(Err) })
    };
    let stream = ReceiverStream::new(receiver).chain(ending).boxed();
    let outbox = Outbox {
        sender,
        stall,
        stalled,
        call,
        metrics,
        runtime: tokio::runtime::Handle::current(),
    };
    (outbox, stream)
}

impl<T: Send + 'static> Outbox<T> {
    /// Queues `message`. `false` means the call is over (the caller went away, or did not
    /// read for the stall limit): stop producing and drop the outbox.
    pub(crate) async fn send(&self, message: Result<T, Status>) -> bool {
        if self.stalled.get().is_some() {
            return false; // Already stopped: no second wait.
        }
        match self.sender.send_timeout(message, self.stall).await {
            Ok(()) => true,
            Err(SendTimeoutError::Closed(_)) => false,
            Err(SendTimeoutError::Timeout(_)) => {
                let status = Status::deadline_exceeded(format!(
                    "{}: the caller read nothing for {} s (request_timeout), so the server \
                     stopped the call; messages already sent come before this error",
                    self.call,
                    self.stall.as_secs()
                ));
                if self.stalled.set(status).is_ok() {
                    self.metrics.stalled_streams.inc();
                    tracing::warn!(
                        call = self.call,
                        stall_secs = self.stall.as_secs(),
                        "stream stopped: the caller stopped reading"
                    );
                }
                false
            }
        }
    }

    /// [`Outbox::send`] from a blocking thread (never from the async executor).
    pub(crate) fn blocking_send(&self, message: Result<T, Status>) -> bool {
        self.runtime.block_on(self.send(message))
    }
}
