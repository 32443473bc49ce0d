//! One connection's outbound queue, and the response body that drains it.
//!
//! Publishers append already-encoded frames (shared [`Bytes`]) and never wait: when a queue
//! holds more than its byte bound, the connection is closed as too slow (the client resumes
//! with `Last-Event-ID`) and nobody else is held up. The body takes everything queued at once
//! and hands it to hyper as one chunk, so a burst costs one wakeup and one write per
//! connection rather than one per event.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// What one wakeup writes: everything queued, and when a timed message in it was sequenced.
pub(crate) type Chunk = (Bytes, Option<Instant>);

/// Why a stream ended from the hub's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Kicked by the backend.
    Kicked,
    /// Its queue overflowed: the client stopped reading.
    Slow,
    /// Its token expired.
    Expired,
    /// The hub is shutting down.
    Shutdown,
    /// The cluster's history was lost or outran this node; clients must reset.
    Resync,
}

#[derive(Debug)]
enum State {
    /// Registered for live delivery while replay is prepared: live frames wait here with
    /// their sequence so the seam can drop those the replay already covers.
    Holding(Vec<(Option<u64>, Bytes)>),
    Open,
    /// Write what is queued, then end the stream.
    Draining,
    /// End now, dropping what is queued.
    Aborted(CloseReason),
}

#[derive(Debug)]
struct Inner {
    queue: VecDeque<Bytes>,
    queued: usize,
    state: State,
    waker: Option<Waker>,
    /// When the oldest timed message now queued was sequenced (see [`Outbox::push_timed`]).
    probe: Option<Instant>,
}

/// The queue of one connection.
///
/// A `parking_lot::Mutex` because it is held only to move a few `Bytes` handles, never across
/// an `.await`, and the waker is woken after the lock is released.
#[derive(Debug)]
pub(crate) struct Outbox {
    inner: Mutex<Inner>,
    limit: usize,
    /// Set by every write; the heartbeat tick clears it and pings only connections that stayed quiet.
    wrote: AtomicBool,
    /// Closes the client's transport when its queue overflows: a client that stopped reading
    /// never polls the body again, so ending the body alone would not free the socket.
    kill: Option<CancellationToken>,
}

impl Outbox {
    /// A queue bounded to `limit` bytes, holding live frames until [`Outbox::open`].
    pub(crate) fn new(limit: usize, kill: Option<CancellationToken>) -> Self {
        Self {
            kill,
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                queued: 0,
                state: State::Holding(Vec::new()),
                waker: None,
                probe: None,
            }),
            limit,
            wrote: AtomicBool::new(true),
        }
    }

    /// Appends a frame. `seq` is the message's position, `None` for control frames.
    ///
    /// Returns `Ok(true)` when queued (or held), `Ok(false)` when the stream is already ending,
    /// and `Err(())` when this frame overflowed the queue and closed the connection.
    pub(crate) fn push(&self, seq: Option<u64>, frame: Bytes) -> Result<bool, ()> {
        self.push_timed(seq, frame, None)
    }

    /// [`Outbox::push`], carrying when the message was sequenced: the write that takes it out
    /// reports the delay (one connection per message is timed, so the cost stays per message).
    pub(crate) fn push_timed(&self, seq: Option<u64>, frame: Bytes, since: Option<Instant>) -> Result<bool, ()> {
        self.push_run(&[(seq, &frame)], &frame, since)
    }

    /// Appends consecutive messages at once: `joined` is their frames end to end, queued with
    /// one push and one wakeup; while holding, each frame is kept with its position instead, for
    /// the seam to filter one by one.
    pub(crate) fn push_run(
        &self,
        run: &[(Option<u64>, &Bytes)],
        joined: &Bytes,
        since: Option<Instant>,
    ) -> Result<bool, ()> {
        let (result, waker) = {
            let mut guard = self.inner.lock();
            let inner = &mut *guard;
            if matches!(inner.state, State::Draining | State::Aborted(_)) {
                return Ok(false);
            }
            if inner.probe.is_none() {
                inner.probe = since;
            }
            inner.queued += joined.len();
            if inner.queued > self.limit {
                inner.queue.clear();
                inner.queued = 0;
                inner.state = State::Aborted(CloseReason::Slow);
                (Err(()), inner.waker.take())
            } else if let State::Holding(held) = &mut inner.state {
                held.extend(run.iter().map(|(seq, frame)| (*seq, Bytes::clone(frame))));
                return Ok(true);
            } else {
                inner.queue.push_back(joined.clone());
                (Ok(true), inner.waker.take())
            }
        };
        self.wrote.store(true, Ordering::Relaxed);
        if let Some(w) = waker {
            w.wake();
        }
        if let (Err(()), Some(kill)) = (result, &self.kill) {
            kill.cancel();
        }
        result
    }

    /// Ends holding: queues `first` (connect, replay), then the held live frames that come
    /// after `covered` (the last position the replay included), in arrival order.
    pub(crate) fn open(&self, first: Vec<Bytes>, covered: u64) {
        let waker = {
            let mut inner = self.inner.lock();
            let inner = &mut *inner;
            let held = match std::mem::replace(&mut inner.state, State::Open) {
                State::Holding(held) => held,
                other => {
                    inner.state = other;
                    return;
                }
            };
            inner.queued = 0;
            for frame in first
                .into_iter()
                .chain(held.into_iter().filter(|(seq, _)| seq.is_none_or(|s| s > covered)).map(|(_, f)| f))
            {
                inner.queued += frame.len();
                inner.queue.push_back(frame);
            }
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Queues `last` (past the byte bound: a final word is always allowed), then ends.
    pub(crate) fn finish(&self, last: Option<Bytes>, reason: CloseReason) {
        let waker = {
            let mut inner = self.inner.lock();
            if matches!(inner.state, State::Draining | State::Aborted(_)) {
                return;
            }
            if let State::Holding(_) = inner.state {
                // Nothing was sent yet; there is nothing to drain.
                inner.state = State::Aborted(reason);
            } else {
                inner.queue.extend(last);
                inner.state = State::Draining;
            }
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Queues `frame` only if nothing was written since the last call: one shared tick keeps
    /// every idle stream alive without a timer per connection.
    pub(crate) fn keep_alive(&self, frame: Bytes) {
        if !self.wrote.swap(false, Ordering::Relaxed) {
            let _ = self.push(None, frame);
            self.wrote.store(false, Ordering::Relaxed);
        }
    }

    /// Ready once the connection was closed for overflowing its queue; meanwhile it keeps
    /// the task's waker, so a writer blocked on a stuck socket learns of it.
    pub(crate) fn poll_aborted(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.inner.lock();
        if let State::Aborted(_) = inner.state {
            return Poll::Ready(());
        }
        if !inner.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            inner.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Everything queued, coalesced, with the sequencing time of a timed message in it; `None`
    /// once the stream ended, an error if it overflowed.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Chunk, CloseReason>>> {
        let mut inner = self.inner.lock();
        if let State::Aborted(reason) = inner.state {
            return Poll::Ready(Some(Err(reason)).filter(|_| reason == CloseReason::Slow));
        }
        let frame = match inner.queue.len() {
            0 => None,
            1 => inner.queue.pop_front(),
            _ => {
                let mut buf = BytesMut::with_capacity(inner.queued);
                for b in inner.queue.drain(..) {
                    buf.extend_from_slice(&b);
                }
                Some(buf.freeze())
            }
        };
        match frame {
            Some(frame) => {
                inner.queued = 0;
                Poll::Ready(Some(Ok((frame, inner.probe.take()))))
            }
            None if matches!(inner.state, State::Draining) => Poll::Ready(None),
            None => {
                if !inner.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    inner.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker_ref;

    fn next(outbox: &Outbox) -> Poll<Option<Result<Bytes, CloseReason>>> {
        outbox.poll_next(&mut Context::from_waker(noop_waker_ref())).map(|o| o.map(|r| r.map(|(frame, _)| frame)))
    }

    #[test]
    fn seam_drops_held_frames_the_replay_covered() {
        let o = Outbox::new(1024, None);
        o.push(Some(4), Bytes::from_static(b"4")).unwrap();
        o.push(None, Bytes::from_static(b"c")).unwrap();
        o.push(Some(6), Bytes::from_static(b"6")).unwrap();
        o.open(vec![Bytes::from_static(b"r5")], 5);
        assert_eq!(next(&o), Poll::Ready(Some(Ok(Bytes::from_static(b"r5c6")))));
        assert!(next(&o).is_pending());
    }

    #[test]
    fn a_run_is_split_at_the_seam_and_whole_once_open() {
        let frames = [Bytes::from_static(b"4"), Bytes::from_static(b"5"), Bytes::from_static(b"6")];
        let run: Vec<(Option<u64>, &Bytes)> = frames.iter().zip(4..).map(|(f, seq)| (Some(seq), f)).collect();
        let joined = Bytes::from_static(b"456");
        let o = Outbox::new(1024, None);
        o.push_run(&run, &joined, None).unwrap();
        o.open(vec![Bytes::from_static(b"r5")], 5);
        assert_eq!(next(&o), Poll::Ready(Some(Ok(Bytes::from_static(b"r56")))));
        o.push_run(&run, &joined, None).unwrap();
        assert_eq!(next(&o), Poll::Ready(Some(Ok(joined))));
        assert!(next(&o).is_pending());
    }

    #[test]
    fn overflow_aborts_and_drain_ends() {
        let o = Outbox::new(4, None);
        o.open(vec![], 0);
        assert_eq!(o.push(Some(1), Bytes::from_static(b"abc")), Ok(true));
        assert_eq!(o.push(Some(2), Bytes::from_static(b"de")), Err(()));
        assert_eq!(next(&o), Poll::Ready(Some(Err(CloseReason::Slow))));

        let o = Outbox::new(4, None);
        o.open(vec![], 0);
        o.push(Some(1), Bytes::from_static(b"a")).unwrap();
        o.finish(Some(Bytes::from_static(b"bye")), CloseReason::Kicked);
        assert_eq!(o.push(Some(2), Bytes::from_static(b"x")), Ok(false));
        assert_eq!(next(&o), Poll::Ready(Some(Ok(Bytes::from_static(b"abye")))));
        assert_eq!(next(&o), Poll::Ready(None));
    }
}
