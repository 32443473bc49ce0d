//! One deadline for every request body (`body_timeout_secs`): a client that announces more than
//! it sends, or trickles it, is answered 408 instead of holding the request open.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use http_body::Frame;
use tokio::time::{Instant, Sleep};

/// The error a body reports once its deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0} seconds (`body_timeout_secs`)")]
pub(crate) struct BodyTimeout(pub(crate) u64);

/// Whether `error`, or anything it wraps, is a [`BodyTimeout`].
pub(crate) fn timed_out<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimeout> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(timeout) = e.downcast_ref::<BodyTimeout>() {
            return Some(timeout);
        }
        current = e.source();
    }
    None
}

/// Gives the body of `request` a deadline `timeout` from now.
pub(crate) fn limit(request: Request, timeout: Duration) -> Request {
    let deadline = Instant::now() + timeout;
    request.map(|inner| Body::new(Deadline { inner, deadline, secs: timeout.as_secs(), sleep: None }))
}

/// A body that fails once its deadline passes. The timer is made on the first read, so a request
/// whose body is never read (every `GET`) costs nothing.
struct Deadline {
    inner: Body,
    deadline: Instant,
    secs: u64,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let deadline = self.deadline;
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        // Checked before reading, so a trickle of data cannot outrun it.
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(self.secs)))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
