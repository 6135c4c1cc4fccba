//! Events from connections, taken in turn.
//!
//! Each connection reports to the node task over its own small bounded channel
//! ([`CONNECTION_EVENT_QUEUE`]); the node task takes one event from each connection that has
//! one before it takes a second from any. A peer that floods the node therefore waits on its
//! own channel, and another peer's message waits behind at most one event per other
//! connection, however much the flooder has sent (with one shared queue it would wait behind
//! everything the flooder queued first).

use std::collections::BTreeSet;
use std::future::poll_fn;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use super::Event;
use crate::peer::PeerId;

/// Events one connection may have waiting for the node task before its reader waits. Small,
/// since every queued message may be up to 2 MiB: bounds memory per connection, while the
/// reader still decodes ahead of the node task.
pub const CONNECTION_EVENT_QUEUE: usize = 4;

/// The connections' event channels, polled round-robin.
#[derive(Default)]
pub struct FairEvents {
    sources: Vec<(PeerId, mpsc::Receiver<Event>)>,
    /// Where the next round starts: just after the source that gave the last event.
    next: usize,
}

impl FairEvents {
    /// No sources.
    pub fn new() -> Self {
        Self::default()
    }

    /// A connection's channel, polled until every sender is gone.
    pub fn add(&mut self, peer: PeerId, events: mpsc::Receiver<Event>) {
        self.sources.push((peer, events));
    }

    /// Channels still open (or with events left).
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether no channel is left.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The next event, taking sources in turn and skipping those of `paused` connections
    /// (the node has not finished their last message). Pending while no source has one (also
    /// when there are no sources), so it can sit in a `select!` beside other work.
    pub async fn next(&mut self, paused: &BTreeSet<PeerId>) -> Event {
        poll_fn(|cx| self.poll_next(cx, paused)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>, paused: &BTreeSet<PeerId>) -> Poll<Event> {
        let n = self.sources.len();
        let mut closed = Vec::new();
        let mut found = None;
        for k in 0..n {
            let i = (self.next + k) % n;
            if !paused.is_empty() && paused.contains(&self.sources[i].0) {
                continue;
            }
            match self.sources[i].1.poll_recv(cx) {
                Poll::Ready(Some(ev)) => {
                    self.next = i + 1;
                    found = Some(ev);
                    break;
                }
                Poll::Ready(None) => closed.push(i),
                Poll::Pending => {}
            }
        }
        // Drop finished channels, highest index first so the others keep theirs.
        closed.sort_unstable();
        for i in closed.into_iter().rev() {
            self.sources.swap_remove(i);
        }
        if self.next >= self.sources.len() {
            self.next = 0;
        }
        match found {
            Some(ev) => Poll::Ready(ev),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(peer: PeerId) -> Event {
        Event::Bytes {
            peer,
            bytes: 1,
            in_flight: 0,
        }
    }

    fn peer_of(ev: &Event) -> PeerId {
        match ev {
            Event::Bytes { peer, .. } => *peer,
            _ => unreachable!(),
        }
    }

    #[tokio::test]
    async fn a_flooding_source_gets_one_turn_per_round() {
        let mut fair = FairEvents::new();
        let (flood_tx, flood_rx) = mpsc::channel(CONNECTION_EVENT_QUEUE);
        let (quiet_tx, quiet_rx) = mpsc::channel(CONNECTION_EVENT_QUEUE);
        fair.add(1, flood_rx);
        fair.add(2, quiet_rx);
        for _ in 0..CONNECTION_EVENT_QUEUE {
            flood_tx.send(bytes(1)).await.unwrap();
        }
        assert_eq!(peer_of(&fair.next(&BTreeSet::new()).await), 1);
        // The quiet peer speaks once: it is next, whatever the flooder has queued.
        quiet_tx.send(bytes(2)).await.unwrap();
        flood_tx.send(bytes(1)).await.unwrap();
        assert_eq!(peer_of(&fair.next(&BTreeSet::new()).await), 2);
        assert_eq!(peer_of(&fair.next(&BTreeSet::new()).await), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_source_is_not_read() {
        let mut fair = FairEvents::new();
        let (tx, rx) = mpsc::channel(CONNECTION_EVENT_QUEUE);
        fair.add(1, rx);
        tx.send(bytes(1)).await.unwrap();
        let paused = BTreeSet::from([1]);
        let wait = tokio::time::timeout(std::time::Duration::from_millis(10), fair.next(&paused));
        assert!(wait.await.is_err(), "nothing taken from a paused source");
        assert_eq!(peer_of(&fair.next(&BTreeSet::new()).await), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn closed_sources_are_dropped_after_their_last_event() {
        let mut fair = FairEvents::new();
        let (tx, rx) = mpsc::channel(CONNECTION_EVENT_QUEUE);
        let (keep_tx, keep_rx) = mpsc::channel(CONNECTION_EVENT_QUEUE);
        fair.add(1, rx);
        fair.add(2, keep_rx);
        tx.send(bytes(1)).await.unwrap();
        drop(tx);
        assert_eq!(peer_of(&fair.next(&BTreeSet::new()).await), 1);
        keep_tx.send(bytes(2)).await.unwrap();
        assert_eq!(peer_of(&fair.next(&BTreeSet::new()).await), 2);
        // A round with nothing to take visits every channel and drops the finished one.
        let none = BTreeSet::new();
        let idle = tokio::time::timeout(std::time::Duration::from_millis(10), fair.next(&none));
        assert!(idle.await.is_err());
        assert_eq!(fair.len(), 1, "the finished channel is gone");
    }
}
