//! The connection runtime on real sockets (127.0.0.1): queued messages leave in order and in
//! few writes, events reach the node batched, whole-message accounting stays exact, a large
//! message arriving in odd pieces is read through, and a stopped connection flushes what was
//! queued before it closes.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use grapevine::runtime::Event;
use grapevine::runtime::clock::Clock;
use grapevine::runtime::connection::{self, MAX_EVENT_BYTES, MAX_MESSAGES_PER_EVENT, Target};
use grapevine::runtime::fair::{FairEvents, Link};
use grapevine::wire::Message;
use grapevine::wire::frame::padded_frame_len;
use grapevine::wire::message::CurrentTimeRequestMessage;
use grapevine::wire::types::TimePoint;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// How long a test waits for something that should happen at once.
const T: Duration = Duration::from_secs(20);

/// A message the node ignores, `len` bytes of data recognisable by `tag` and `len`.
fn tagged(tag: u32, len: usize) -> Message {
    let mut data = vec![(tag % 251) as u8; len];
    if len >= 4 {
        data[..4].copy_from_slice(&tag.to_le_bytes());
    }
    Message::Unknown {
        msg_type: 5050,
        data,
    }
}

/// Two ends of one connection, each run by `connection::run` and reporting to its own
/// `FairEvents`, as the node task's would.
struct Pair {
    a: Arc<Link>,
    a_events: FairEvents,
    b_events: FairEvents,
}

impl Pair {
    /// Connects; whatever `before` queues on `a` is queued before the key exchange is over.
    async fn connect(before: impl FnOnce(&Link)) -> Pair {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut a_events = FairEvents::new();
        let b_events = FairEvents::new();
        let a = a_events.hub().link(1);
        let b = b_events.hub().link(2);
        before(&a);
        tokio::spawn(connection::run(
            1,
            Target::Dial(addr),
            a.clone(),
            Clock::new(),
        ));
        let (stream, _) = listener.accept().await.unwrap();
        tokio::spawn(connection::run(
            2,
            Target::Accepted(stream),
            b.clone(),
            Clock::new(),
        ));
        // A's key exchange: its key read, then established.
        loop {
            let ev = tokio::time::timeout(T, a_events.next(&BTreeSet::new()))
                .await
                .unwrap();
            if matches!(ev, Event::Established { .. }) {
                break;
            }
            assert!(matches!(ev, Event::Bytes { .. }), "{ev:?}");
        }
        Pair {
            a,
            a_events,
            b_events,
        }
    }
}

/// What one end reported, in order.
#[derive(Default)]
struct Seen {
    messages: Vec<Message>,
    message_events: usize,
    bytes: usize,
    sent: usize,
    sent_events: usize,
    closed: bool,
}

/// Takes events from `events` until `done` holds.
async fn collect(events: &mut FairEvents, seen: &mut Seen, done: impl Fn(&Seen) -> bool) {
    while !done(seen) {
        let ev = tokio::time::timeout(T, events.next(&BTreeSet::new()))
            .await
            .expect("an event in time");
        match ev {
            Event::Messages {
                messages,
                bytes,
                in_flight,
                ..
            } => {
                assert!(messages.len() <= MAX_MESSAGES_PER_EVENT);
                let size: usize = messages
                    .iter()
                    .map(|m| padded_frame_len(m.to_data().len()))
                    .sum();
                assert!(
                    messages.len() <= 1 || size <= MAX_EVENT_BYTES,
                    "{size} bytes in one event"
                );
                if bytes == 0 {
                    assert_eq!(in_flight, 0, "only the last event of a read counts bytes");
                }
                seen.message_events += 1;
                seen.bytes += bytes;
                seen.messages.extend(messages);
            }
            Event::Sent { bytes, .. } => {
                seen.sent += bytes;
                seen.sent_events += 1;
            }
            Event::Closed { .. } => seen.closed = true,
            Event::Bytes { .. } | Event::Established { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_queued_messages_arrive_in_order_in_few_writes() {
    const COUNT: u32 = 1000;
    let mut pair = Pair::connect(|a| {
        for i in 0..COUNT {
            a.send(tagged(i, 100));
        }
    })
    .await;
    let wire = COUNT as usize * padded_frame_len(100);
    let mut got = Seen::default();
    collect(&mut pair.b_events, &mut got, |s| {
        s.messages.len() == COUNT as usize && s.bytes == wire
    })
    .await;
    for (i, m) in got.messages.iter().enumerate() {
        assert_eq!(m, &tagged(i as u32, 100), "message {i} in order and intact");
    }
    let mut sender = Seen::default();
    collect(&mut pair.a_events, &mut sender, |s| s.sent == wire).await;
    println!(
        "{COUNT} messages: {} Sent events, {} message events",
        sender.sent_events, got.message_events
    );
    // Queued together, they were encoded together: a handful of writes, not one each.
    assert!(
        sender.sent_events <= 10,
        "{} Sent events",
        sender.sent_events
    );
    // And handed to the node batched, not one event each.
    assert!(
        got.message_events <= COUNT as usize / 10,
        "{} events",
        got.message_events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_small_messages_keep_their_order() {
    // Small ones framed together, one encrypted straight from its data, large ones encrypted
    // off the runtime's workers, the largest allowed last but one.
    let sizes = [
        10usize,
        1 << 20,
        3,
        600_000,
        5000,
        0,
        2 * 1024 * 1024,
        77,
        300_000,
    ];
    let messages: Vec<Message> = sizes
        .iter()
        .enumerate()
        .map(|(i, n)| tagged(i as u32, *n))
        .collect();
    let wire: usize = sizes.iter().map(|n| padded_frame_len(*n)).sum();
    let mut pair = Pair::connect(|_| {}).await;
    for m in &messages {
        pair.a.send(m.clone());
    }
    let mut got = Seen::default();
    collect(&mut pair.b_events, &mut got, |s| {
        s.messages.len() == sizes.len() && s.bytes == wire
    })
    .await;
    assert_eq!(got.messages, messages);
    let mut sender = Seen::default();
    collect(&mut pair.a_events, &mut sender, |s| s.sent == wire).await;
    // Nothing more was counted as sent.
    let extra = tokio::time::timeout(
        Duration::from_millis(200),
        pair.a_events.next(&BTreeSet::new()),
    )
    .await;
    assert!(extra.is_err(), "no further event: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_while_a_large_frame_is_encrypted_are_sent() {
    // A large frame is encrypted off the connection's task; a message queued meanwhile wakes
    // the task while it can encode nothing. It must still leave once the frame is done, with
    // no further wake-up (none comes: nothing else is queued).
    let mut pair = Pair::connect(|_| {}).await;
    let mut got = Seen::default();
    for round in 0..30u32 {
        pair.a.send(tagged(round, 600_000));
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        pair.a.send(tagged(round, 10));
        let want = 2 * (round as usize + 1);
        collect(&mut pair.b_events, &mut got, |s| s.messages.len() == want).await;
        assert_eq!(got.messages[want - 1], tagged(round, 10), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_connection_flushes_what_was_queued_then_closes() {
    let mut pair = Pair::connect(|_| {}).await;
    for i in 0..200 {
        pair.a.send(tagged(i, 3000));
    }
    pair.a.stop();
    let mut got = Seen::default();
    collect(&mut pair.b_events, &mut got, |s| s.closed).await;
    assert_eq!(got.messages.len(), 200, "everything queued before the stop");
    assert_eq!(got.messages[199], tagged(199, 3000));
    // The stopped side reports nothing more, and takes nothing more.
    pair.a.send(tagged(999, 1));
    let after = tokio::time::timeout(
        Duration::from_millis(200),
        pair.a_events.next(&BTreeSet::new()),
    )
    .await;
    assert!(after.is_err(), "no event after the stop: {after:?}");
}

/// A node that dials nobody, and an active raw peer on it that has answered the node's sync
/// request (so nothing more is asked of it).
async fn node_and_peer(name: &str) -> (grapevine::runtime::NodeHandle, RawPeer) {
    let mut c = config(temp_dir(name), vec![]);
    c.node.connect_to_new_peers = false;
    let node = start(c).await;
    let mut raw = RawPeer::connect(addr(&node)).await;
    raw.activate(CHAIN).await;
    raw.answer_sync().await;
    // The node's own first time request, answered by nobody: it only measures.
    (node, raw)
}

async fn raw_peer_info(node: &grapevine::runtime::NodeHandle) -> grapevine::node::PeerInfo {
    let peers = node.peers().await.expect("the node answers");
    assert_eq!(peers.len(), 1);
    peers.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_time_requests_is_answered_in_order_and_the_queue_drains() {
    const COUNT: i64 = 1000;
    let (node, mut raw) = node_and_peer("time-burst").await;
    // Let the node's first messages (its time request) go out before counting.
    let _ = raw.recv(Duration::from_millis(300)).await;
    let before = raw_peer_info(&node).await.bytes_sent;
    // All the requests in one write: the node reads them in a few events and queues all
    // the replies at once.
    let mut burst = BytesMut::new();
    for i in 0..COUNT {
        let m = Message::CurrentTimeRequest(CurrentTimeRequestMessage {
            request_sent_time: TimePoint(i),
        });
        raw.channel.send(&m, &mut burst).unwrap();
    }
    raw.stream.write_all(&burst).await.unwrap();
    let mut replies = 0i64;
    let mut wire = 0usize;
    while replies < COUNT {
        let m = raw.recv(T).await.expect("the node answers");
        if let Message::CurrentTimeReply(r) = &m {
            assert_eq!(r.request_sent_time, TimePoint(replies), "answered in order");
            assert!(r.reply_transmitted_time.0 > 0, "stamped");
            replies += 1;
            wire += padded_frame_len(m.to_data().len());
        }
    }
    // The node counted exactly the bytes of the replies as sent, and its queue is empty.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let info = node.info().await.unwrap();
        let sent = raw_peer_info(&node).await.bytes_sent - before;
        if info.memory.queued_bytes_total == 0 && sent == wire as u64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queued {} bytes, {sent} counted sent of {wire}",
            info.memory.queued_bytes_total
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_in_odd_pieces_is_read_through() {
    let (node, mut raw) = node_and_peer("odd-pieces").await;
    let _ = raw.recv(Duration::from_millis(300)).await;
    let before = raw_peer_info(&node).await.bytes_received;
    // 1.5 MiB of an ignored type, written in pieces of prime sizes, each flushed on its own,
    // then a time request: its reply proves the stream stayed in step.
    let mut wire = BytesMut::new();
    raw.channel
        .send_raw(5050, &vec![0x5a; 1536 * 1024], &mut wire)
        .unwrap();
    let total = wire.len();
    let pieces = [1usize, 7, 8191, 13, 65_537, 4099, 31];
    let mut at = 0;
    let mut k = 0;
    while at < total {
        let n = pieces[k % pieces.len()].min(total - at);
        raw.stream.write_all(&wire[at..at + n]).await.unwrap();
        raw.stream.flush().await.unwrap();
        tokio::task::yield_now().await;
        at += n;
        k += 1;
    }
    let rtt = raw.time_round_trip(T).await;
    assert!(
        rtt.is_some(),
        "the node read the whole message and answered"
    );
    let info = raw_peer_info(&node).await;
    assert_eq!(info.state, "active", "still connected");
    let request = padded_frame_len(
        Message::CurrentTimeRequest(CurrentTimeRequestMessage {
            request_sent_time: TimePoint(0),
        })
        .to_data()
        .len(),
    );
    assert_eq!(
        info.bytes_received - before,
        (total + request) as u64,
        "every byte counted"
    );
    node.shutdown().await;
}
