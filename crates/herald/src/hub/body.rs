//! The `text/event-stream` body of one connection, drained from its outbox.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::app::App;
use super::conn::Conn;

/// The body of one stream. Dropping it (the client went away, or the stream ended)
/// unregisters the connection.
pub(crate) struct StreamBody {
    app: Arc<App>,
    conn: Arc<Conn>,
}

impl StreamBody {
    pub(crate) fn new(app: Arc<App>, conn: Arc<Conn>) -> Self {
        Self { app, conn }
    }

    /// Ready once the connection was dropped for overflowing its queue.
    pub(crate) fn poll_aborted(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.conn.outbox.poll_aborted(cx)
    }

    /// Everything queued, coalesced; `None` once the stream ended, an error if it overflowed.
    /// Counts the bytes (once per wakeup, not per event) and times a timed message's first write.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, super::outbox::CloseReason>>> {
        self.conn.outbox.poll_next(cx).map(|next| {
            next.map(|chunk| {
                chunk.map(|(bytes, probe)| {
                    let metrics = &self.app.metrics;
                    metrics.bytes_written.inc_by(bytes.len() as u64);
                    if let Some(since) = probe {
                        metrics.first_write_seconds.observe(since.elapsed().as_secs_f64());
                    }
                    bytes
                })
            })
        })
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        self.app.unregister(&self.conn);
    }
}

/// The error that aborts a stream whose client stopped reading.
#[derive(Debug, thiserror::Error)]
#[error("connection closed: its client stopped reading and its queue overflowed")]
pub(crate) struct SlowClient;

impl Body for StreamBody {
    type Data = Bytes;
    type Error = SlowClient;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, SlowClient>>> {
        match self.as_ref().get_ref().poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(SlowClient))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
