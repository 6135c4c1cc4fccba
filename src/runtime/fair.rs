//! What a connection and the node task share, and events from connections taken in turn.
//!
//! Each connection has a [`Link`] with the node task: the connection's events for the node
//! (at most [`CONNECTION_EVENT_QUEUE`]; beyond that its reader waits) and the node's messages
//! for the connection. Links with events wait in one ready list, in the order they got their
//! first event; the node task ([`FairEvents::next`]) takes one event from the link at the front
//! and puts the link back at the end if it has more. A peer that floods the node therefore
//! waits on its own link, and another peer's message waits behind at most one event per other
//! connection, however much the flooder has sent. Nothing scans idle links: taking an event
//! costs the same with 10 connections or 10,000.
//!
//! An idle link allocates nothing beyond its own fields: both queues are released when they
//! drain.

use std::collections::{BTreeSet, VecDeque};
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

use super::Event;
use crate::peer::PeerId;
use crate::wire::Message;

/// Events one connection may have waiting for the node task before its reader waits. Small,
/// since an event may carry up to [`super::connection::MAX_EVENT_BYTES`] of messages (or one
/// message of up to 2 MiB): bounds memory per connection, while the reader still decodes
/// ahead of the node task.
pub const CONNECTION_EVENT_QUEUE: usize = 4;

/// Locks a mutex whatever a panicking holder left behind: every critical section here leaves
/// the queues consistent at each step.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The ready list: links with events for the node task.
#[derive(Default)]
pub struct Hub {
    state: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    ready: VecDeque<Arc<Link>>,
    /// The node task, waiting for a link to get an event.
    waker: Option<Waker>,
}

impl Hub {
    /// A new link for `peer`, reporting to this hub.
    pub fn link(self: &Arc<Self>, peer: PeerId) -> Arc<Link> {
        Arc::new(Link {
            peer,
            state: Mutex::new(LinkState::default()),
            wake: Notify::new(),
            hub: self.clone(),
        })
    }

    fn push(&self, link: Arc<Link>) {
        let waker = {
            let mut hub = lock(&self.state);
            hub.ready.push_back(link);
            hub.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// One connection's share with the node task.
pub struct Link {
    peer: PeerId,
    state: Mutex<LinkState>,
    /// Wakes the connection task: a message to send, room for an event, or the stop.
    wake: Notify,
    hub: Arc<Hub>,
}

#[derive(Default)]
struct LinkState {
    /// For the node task, oldest first.
    events: VecDeque<Event>,
    /// For the peer, oldest first. Bounded in bytes by the node core
    /// (`MAX_QUEUED_BYTES_PER_PEER`, counted through `Event::Sent`).
    outgoing: VecDeque<Message>,
    /// The node is done with the connection: read nothing more, flush `outgoing`, close.
    stopped: bool,
}

/// Whether [`Link::try_report`] took the event.
#[derive(Debug)]
pub enum Report {
    Taken,
    /// The queue is full: the event is handed back.
    Full(Event),
    /// The node stopped the connection: nobody wants the event.
    Stopped,
}

impl Link {
    /// The connection's peer id.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    // ----- the node's side ------------------------------------------------------------------

    /// Queues `message` for the peer (dropped once the connection is stopped).
    pub fn send(&self, message: Message) {
        let wake = {
            let mut s = lock(&self.state);
            if s.stopped {
                return;
            }
            s.outgoing.push_back(message);
            s.outgoing.len() == 1
        };
        if wake {
            self.wake.notify_one();
        }
    }

    /// The node is done with the connection: it reads nothing more, writes what was queued
    /// (for at most `connection::CLOSE_FLUSH`) and closes. Events not taken yet are dropped.
    pub fn stop(&self) {
        {
            let mut s = lock(&self.state);
            s.stopped = true;
            s.events = VecDeque::new();
        }
        self.wake.notify_one();
    }

    // ----- the connection's side ------------------------------------------------------------

    /// Whether the node stopped the connection.
    pub fn is_stopped(&self) -> bool {
        lock(&self.state).stopped
    }

    /// Whether an event would be taken now.
    pub fn has_room(&self) -> bool {
        lock(&self.state).events.len() < CONNECTION_EVENT_QUEUE
    }

    /// Hands `event` to the node task if its queue has room.
    pub fn try_report(self: &Arc<Self>, event: Event) -> Report {
        let first = {
            let mut s = lock(&self.state);
            if s.stopped {
                return Report::Stopped;
            }
            if s.events.len() >= CONNECTION_EVENT_QUEUE {
                return Report::Full(event);
            }
            s.events.push_back(event);
            s.events.len() == 1
        };
        if first {
            self.hub.push(self.clone());
        }
        Report::Taken
    }

    /// Hands `event` to the node task, waiting for room; false if the node stopped the
    /// connection first.
    pub async fn report(self: &Arc<Self>, mut event: Event) -> bool {
        loop {
            let woken = self.wake.notified();
            match self.try_report(event) {
                Report::Taken => return true,
                Report::Stopped => return false,
                Report::Full(e) => event = e,
            }
            woken.await;
        }
    }

    /// Whether the node queued messages not taken yet.
    pub fn has_outgoing(&self) -> bool {
        !lock(&self.state).outgoing.is_empty()
    }

    /// Moves the messages the node queued onto the end of `into`.
    pub fn take_outgoing(&self, into: &mut VecDeque<Message>) {
        let mut s = lock(&self.state);
        if into.is_empty() {
            std::mem::swap(into, &mut s.outgoing);
        } else {
            into.extend(s.outgoing.drain(..));
        }
        if s.outgoing.capacity() > 0 {
            s.outgoing = VecDeque::new();
        }
    }

    /// Resolves on the next change the connection may care about (a message queued, room for
    /// an event, the stop), or at once if one came since the last call. The connection has
    /// one waiter at a time on these wake-ups (this, [`Link::report`] or
    /// [`Link::stopped`]): each wakes one waiter.
    pub async fn changed(&self) {
        self.wake.notified().await
    }

    /// Resolves once the node has stopped the connection.
    pub async fn stopped(&self) {
        loop {
            let woken = self.wake.notified();
            if self.is_stopped() {
                return;
            }
            woken.await;
        }
    }

    /// The node task takes the oldest event; the link goes back on the ready list if it has
    /// more, and the connection is woken if the queue had been full.
    fn take_event(self: &Arc<Self>) -> Option<Event> {
        let (event, was_full) = {
            let mut s = lock(&self.state);
            let was_full = s.events.len() >= CONNECTION_EVENT_QUEUE;
            let event = s.events.pop_front();
            let more = !s.events.is_empty();
            if !more && s.events.capacity() > 0 {
                s.events = VecDeque::new();
            }
            if more {
                // Lock order: link, then hub (as in `try_report`).
                lock(&self.hub.state).ready.push_back(self.clone());
            }
            (event, was_full)
        };
        if was_full {
            self.wake.notify_one();
        }
        event
    }
}

/// The node task's side: events from every link, taken in turn.
pub struct FairEvents {
    hub: Arc<Hub>,
    /// Links with events whose peer is paused, set aside until it is not.
    parked: Vec<Arc<Link>>,
}

impl Default for FairEvents {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FairEvents {
    /// Links on the ready list hold the hub: let them go with the node task.
    fn drop(&mut self) {
        lock(&self.hub.state).ready.clear();
    }
}

impl FairEvents {
    /// No links yet.
    pub fn new() -> Self {
        Self {
            hub: Arc::new(Hub::default()),
            parked: Vec::new(),
        }
    }

    /// The hub new links report to.
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Links with events waiting (parked ones included).
    pub fn ready_len(&self) -> usize {
        lock(&self.hub.state).ready.len() + self.parked.len()
    }

    /// The next event, taking links in turn and setting aside those of `paused` peers (the
    /// node has not finished their last message). Pending while no link has one, so it can
    /// sit in a `select!` beside other work; cancel-safe (an event is only taken when it is
    /// returned).
    pub async fn next(&mut self, paused: &BTreeSet<PeerId>) -> Event {
        poll_fn(|cx| self.poll_next(cx, paused)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>, paused: &BTreeSet<PeerId>) -> Poll<Event> {
        if !self.parked.is_empty() {
            let (resume, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
                .into_iter()
                .partition(|l| !paused.contains(&l.peer));
            self.parked = keep;
            lock(&self.hub.state).ready.extend(resume);
        }
        loop {
            let link = {
                let mut hub = lock(&self.hub.state);
                match hub.ready.pop_front() {
                    Some(l) => l,
                    None => {
                        hub.waker = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                }
            };
            if !paused.is_empty() && paused.contains(&link.peer) {
                self.parked.push(link);
                continue;
            }
            // A stopped link's events were dropped: nothing to take.
            if let Some(event) = link.take_event() {
                return Poll::Ready(event);
            }
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
    async fn a_flooding_link_gets_one_turn_per_round() {
        let mut fair = FairEvents::new();
        let flood = fair.hub().link(1);
        let quiet = fair.hub().link(2);
        for _ in 0..CONNECTION_EVENT_QUEUE {
            assert!(matches!(flood.try_report(bytes(1)), Report::Taken));
        }
        assert!(matches!(flood.try_report(bytes(1)), Report::Full(_)));
        assert!(!flood.has_room());
        let none = BTreeSet::new();
        assert_eq!(peer_of(&fair.next(&none).await), 1);
        // The quiet peer speaks once: it waits behind at most one event of the flooder (which
        // went back on the list before it spoke), whatever the flooder has queued.
        assert!(matches!(quiet.try_report(bytes(2)), Report::Taken));
        assert!(matches!(flood.try_report(bytes(1)), Report::Taken));
        let order = [
            peer_of(&fair.next(&none).await),
            peer_of(&fair.next(&none).await),
            peer_of(&fair.next(&none).await),
        ];
        assert_eq!(order, [1, 2, 1]);
        // With both waiting, they alternate.
        assert!(matches!(quiet.try_report(bytes(2)), Report::Taken));
        assert!(matches!(quiet.try_report(bytes(2)), Report::Taken));
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(peer_of(&fair.next(&none).await));
        }
        assert_eq!(got, [1, 2, 1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_link_is_not_read() {
        let mut fair = FairEvents::new();
        let link = fair.hub().link(1);
        assert!(matches!(link.try_report(bytes(1)), Report::Taken));
        let paused = BTreeSet::from([1]);
        let wait = tokio::time::timeout(std::time::Duration::from_millis(10), fair.next(&paused));
        assert!(wait.await.is_err(), "nothing taken from a paused link");
        assert_eq!(fair.ready_len(), 1, "set aside, not lost");
        assert_eq!(peer_of(&fair.next(&BTreeSet::new()).await), 1);
        assert_eq!(fair.ready_len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_link_gives_nothing_more() {
        let mut fair = FairEvents::new();
        let link = fair.hub().link(1);
        let keep = fair.hub().link(2);
        assert!(matches!(link.try_report(bytes(1)), Report::Taken));
        link.stop();
        assert!(link.is_stopped());
        assert!(matches!(link.try_report(bytes(1)), Report::Stopped));
        assert!(matches!(keep.try_report(bytes(2)), Report::Taken));
        assert_eq!(peer_of(&fair.next(&BTreeSet::new()).await), 2);
        let none = BTreeSet::new();
        let idle = tokio::time::timeout(std::time::Duration::from_millis(10), fair.next(&none));
        assert!(idle.await.is_err());
        // Messages are not taken once stopped either.
        link.send(Message::Unknown {
            msg_type: 5050,
            data: vec![],
        });
        let mut q = VecDeque::new();
        link.take_outgoing(&mut q);
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_reporter_is_woken_by_room() {
        let mut fair = FairEvents::new();
        let link = fair.hub().link(1);
        for _ in 0..CONNECTION_EVENT_QUEUE {
            assert!(link.report(bytes(1)).await);
        }
        let reporter = {
            let link = link.clone();
            tokio::spawn(async move { link.report(bytes(1)).await })
        };
        tokio::task::yield_now().await;
        assert!(!reporter.is_finished(), "waits for room");
        fair.next(&BTreeSet::new()).await;
        assert!(reporter.await.unwrap(), "taken once there was room");
        // The queue is full again; stopping releases the reporter with `false`.
        let reporter = {
            let link = link.clone();
            tokio::spawn(async move { link.report(bytes(1)).await })
        };
        tokio::task::yield_now().await;
        link.stop();
        assert!(!reporter.await.unwrap());
    }

    #[tokio::test]
    async fn queues_are_released_when_they_drain() {
        let mut fair = FairEvents::new();
        let link = fair.hub().link(7);
        link.send(Message::Unknown {
            msg_type: 5050,
            data: vec![1],
        });
        let mut q = VecDeque::new();
        link.take_outgoing(&mut q);
        assert_eq!(q.len(), 1);
        assert_eq!(lock(&link.state).outgoing.capacity(), 0);
        assert!(link.report(bytes(7)).await);
        fair.next(&BTreeSet::new()).await;
        assert_eq!(lock(&link.state).events.capacity(), 0);
    }
}
