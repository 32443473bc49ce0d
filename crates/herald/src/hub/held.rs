//! Messages sequenced but not yet delivered, because a durable message ahead of them is still
//! on its way to disk.
//!
//! A durable message reaches nobody before it is committed: a publish answered with an error
//! must have been seen by no one, or the publisher's retry would show clients a second copy
//! under another id. Messages sequenced after it wait behind it, so every connection still gets
//! messages in id order. A failed commit drops its message; its id is simply never used.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::message::Message;

/// The queue of one app, in sequence order.
#[derive(Default)]
pub(crate) struct Held {
    queue: VecDeque<Entry>,
    /// A release is on its way: [`Held::settle`] said so and [`Held::next_ready`] has not run
    /// dry since.
    releasing: bool,
}

struct Entry {
    message: Arc<Message>,
    state: State,
    /// Tells the publisher how many connections the message was handed to.
    delivered: oneshot::Sender<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// A durable message whose commit has not resolved.
    Committing,
    Ready,
    Failed,
}

impl Held {
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues `message`; a durable one waits for [`Held::settle`].
    pub(crate) fn push(&mut self, message: Arc<Message>) -> oneshot::Receiver<usize> {
        let (delivered, rx) = oneshot::channel();
        let state = if message.durable { State::Committing } else { State::Ready };
        debug_assert!(self.queue.back().is_none_or(|last| last.message.seq < message.seq), "in sequence order");
        self.queue.push_back(Entry { message, state, delivered });
        rx
    }

    /// Records the outcome of the commit of message `seq`; true when the caller should release
    /// what may go: the head of the queue can move and no release is on its way. Of a batch's
    /// commits, which settle together, one releases the lot; the others need not take the
    /// app's turn.
    pub(crate) fn settle(&mut self, seq: u64, committed: bool) -> bool {
        // The queue is in sequence order, and a batch's commits can hold thousands of entries.
        if let Ok(i) = self.queue.binary_search_by_key(&seq, |e| e.message.seq) {
            self.queue[i].state = if committed { State::Ready } else { State::Failed };
        }
        let movable = self.queue.front().is_some_and(|head| head.state != State::Committing);
        let release = movable && !self.releasing;
        self.releasing |= release;
        release
    }

    /// The next message that may be delivered now, with its publisher's channel; failed ones are
    /// dropped on the way. `None` when the queue is empty or its head is still committing: the
    /// release is over, and the next settle that can move the head starts another.
    pub(crate) fn next_ready(&mut self) -> Option<(Arc<Message>, oneshot::Sender<usize>)> {
        while let Some(entry) = self.queue.front() {
            match entry.state {
                State::Committing => break,
                State::Failed => drop(self.queue.pop_front()),
                State::Ready => {
                    let entry = self.queue.pop_front().expect("the front exists");
                    return Some((entry.message, entry.delivered));
                }
            }
        }
        self.releasing = false;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Targets;

    fn message(seq: u64, durable: bool) -> Arc<Message> {
        Arc::new(Message::new("ep", seq, 1, Targets::default(), None, "x".into(), durable))
    }

    #[test]
    fn releases_in_order_once_what_is_ahead_is_committed_and_drops_failures() {
        let mut held = Held::default();
        let _a = held.push(message(1, true));
        let _b = held.push(message(2, false));
        let _c = held.push(message(3, true));
        let _d = held.push(message(4, false));
        assert!(held.next_ready().is_none(), "1 is still committing");
        assert!(!held.settle(3, true), "3 is committed, but 1 is ahead of it");
        assert!(held.next_ready().is_none());
        assert!(held.settle(1, false), "the head can move");
        let order: Vec<u64> = std::iter::from_fn(|| held.next_ready()).map(|(m, _)| m.seq).collect();
        assert_eq!(order, [2, 3, 4], "the failed 1 reaches nobody; the rest go in order");
        assert!(held.is_empty());
    }

    #[test]
    fn of_commits_that_settle_together_one_releases_until_the_queue_runs_dry() {
        let mut held = Held::default();
        let _r: Vec<_> = (1..=4).map(|seq| held.push(message(seq, true))).collect();
        assert!(held.settle(1, true), "the head can move: release");
        assert!(!held.settle(2, true), "a release is on its way and will take 2 too");
        assert_eq!(held.next_ready().map(|(m, _)| m.seq), Some(1));
        assert!(!held.settle(3, true), "still on its way");
        let order: Vec<u64> = std::iter::from_fn(|| held.next_ready()).map(|(m, _)| m.seq).collect();
        assert_eq!(order, [2, 3], "4 is still committing");
        assert!(held.settle(4, true), "the release ran dry: the next that can move the head releases");
        assert!(!held.settle(4, true));
    }
}
