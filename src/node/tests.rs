//! Policy tests on the simulated network: every timer is driven by passing time.

use super::config::*;
use super::sim::{SimNet, listen_endpoint, test_node_id};
use super::*;
use crate::wire::message::msg_type;

/// An operator broadcast that must have been accepted (held, duplicate and rejected items
/// fail the test); answers the item's id.
trait AssertAccepted {
    fn accepted(self) -> crate::wire::types::ItemHash;
}

impl AssertAccepted for Broadcast {
    #[track_caller]
    fn accepted(self) -> crate::wire::types::ItemHash {
        assert_eq!(self.outcome, BroadcastOutcome::Accepted, "{:?}", self.id);
        self.id
    }
}

pub(super) fn cfg() -> NodeConfig {
    NodeConfig {
        chain_id: "75a0c028695a5df52f2b1045f5c50fd26169241d099f548b5628cbe3a38a2db0"
            .parse()
            .unwrap(),
        desired_connections: 20,
        max_connections: 200,
        ..NodeConfig::default()
    }
}

/// Adds `count` nodes with ids from `first_id`, each asked to dial `target`.
fn dialers(net: &mut SimNet, count: u8, first_id: u8, target: usize) -> Vec<usize> {
    (0..count)
        .map(|k| {
            let d = net.add_node(cfg(), test_node_id(first_id + k));
            let now = net.now;
            net.nodes[d].add_node(listen_endpoint(target), now);
            d
        })
        .collect()
}

fn counts(net: &SimNet, i: usize) -> ConnectionCounts {
    net.nodes[i].connection_counts()
}

/// closing_connection messages from `from` to `to` that give `reason`.
fn closings(net: &SimNet, from: usize, to: usize, reason: &str) -> usize {
    net.sent(from, to, msg_type::CLOSING_CONNECTION)
        .into_iter()
        .filter(|m| matches!(m, Message::ClosingConnection(c) if c.reason_for_closing == reason))
        .count()
}

/// Honest-but-unlucky peers (timeouts, missing items, another chain, full nodes, closing) are
/// never counted as misbehaving.
fn assert_no_violations(net: &SimNet) {
    for (i, n) in net.nodes.iter().enumerate() {
        let report = n.ban_report(net.now);
        assert!(report.bans.is_empty(), "node {i} banned {:?}", report.bans);
        assert!(
            report.violations.values().all(|v| *v == 0),
            "node {i} counted violations: {:?}",
            report.violations
        );
        assert!(
            n.peer_infos(net.now)
                .iter()
                .all(|p| p.misbehaviour_score == 0)
        );
    }
}

fn rejections(net: &SimNet, from: usize, to: usize) -> Vec<RejectionReason> {
    net.sent(from, to, msg_type::CONNECTION_REJECTED)
        .into_iter()
        .map(|m| match m {
            Message::ConnectionRejected(r) => r.reason_code,
            _ => unreachable!(),
        })
        .collect()
}

#[test]
fn hello_tells_the_configured_inbound_endpoint() {
    let mut net = SimNet::new();
    let with = |inbound: &str| NodeConfig {
        inbound_endpoint: Some(inbound.parse().unwrap()),
        ..cfg()
    };
    let a = net.add_node(with("5.6.7.8:4000"), test_node_id(1));
    let b = net.add_node(with("0.0.0.0:4001"), test_node_id(2));
    let c = net.add_node(cfg(), test_node_id(3));
    net.nodes[a].add_node(listen_endpoint(c), net.now);
    net.nodes[b].add_node(listen_endpoint(c), net.now);
    net.advance(1);
    let hello = |from| match net.sent(from, c, msg_type::HELLO)[0] {
        Message::Hello(h) => h.clone(),
        _ => unreachable!(),
    };
    let (ha, hb) = (hello(a), hello(b));
    assert_eq!(
        (ha.inbound_address.to_string(), ha.inbound_port),
        ("5.6.7.8".into(), 4000)
    );
    // 0.0.0.0: the connection's own address, with the configured port.
    assert_eq!(hb.inbound_port, 4001);
    assert_eq!(hb.inbound_address, listen_endpoint(b).address);
    assert_ne!(hb.outbound_port, 4001);
}

#[test]
fn handshake_both_ways_follows_the_reference_sequence() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let b = net.add_node(cfg(), test_node_id(2));
    net.nodes[a].add_node(listen_endpoint(b), net.now);
    net.advance(1);
    assert_eq!(counts(&net, a).active, 1);
    assert_eq!(counts(&net, b).active, 1);
    // Each side: hello, connection_accepted, address_request, address, current_time_request.
    for (x, y) in [(a, b), (b, a)] {
        let types: Vec<u32> = net
            .trace
            .iter()
            .filter(|d| d.from == x && d.to == y)
            .map(|d| d.message.msg_type())
            .collect();
        for t in [
            msg_type::HELLO,
            msg_type::CONNECTION_ACCEPTED,
            msg_type::ADDRESS_REQUEST,
            msg_type::ADDRESS,
            msg_type::CURRENT_TIME_REQUEST,
            msg_type::CURRENT_TIME_REPLY,
        ] {
            assert!(types.contains(&t), "{x}->{y} lacks {t}: {types:?}");
        }
        assert_eq!(types[0], msg_type::HELLO, "hello first");
    }
    // The hello carries what a real node's does.
    let Message::Hello(h) = net.sent(a, b, msg_type::HELLO)[0] else {
        unreachable!()
    };
    assert_eq!(h.core_protocol_version, 106);
    assert_eq!(h.inbound_port, listen_endpoint(a).port);
    let keys: Vec<&str> = h.user_data.0.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "fc_git_revision_sha",
            "fc_git_revision_unix_timestamp",
            "platform",
            "bitness",
            "node_id",
            "last_known_block_hash",
            "last_known_block_number",
            "last_known_block_time"
        ]
    );
    // The outbound side records a successful connection.
    let r = net.nodes[a].peer_db().get(&listen_endpoint(b)).unwrap();
    assert_eq!(
        r.last_connection_disposition,
        crate::store::peer_db::Disposition::LastConnectionSucceeded
    );
}

#[test]
fn different_chain_is_rejected_and_delayed() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let mut other = cfg();
    other.chain_id = crate::wire::types::Sha256([9; 32]);
    let b = net.add_node(other, test_node_id(2));
    net.nodes[a].add_node(listen_endpoint(b), net.now);
    net.advance(1);
    assert_eq!(rejections(&net, b, a), [RejectionReason::DifferentChain]);
    assert_eq!(rejections(&net, a, b), [RejectionReason::DifferentChain]);
    assert_eq!(counts(&net, a).active, 0);
    // The dialler pushed its next attempt an hour or more away.
    let r = net.nodes[a].peer_db().get(&listen_endpoint(b)).unwrap();
    assert!(r.number_of_failed_connection_attempts >= GREATLY_DELAY_FAILURES);
    net.advance(20 * SECOND_US);
    assert_eq!(counts(&net, a), ConnectionCounts::default());
    assert_eq!(counts(&net, b), ConnectionCounts::default());
    assert_no_violations(&net);
}

#[test]
fn self_connection_is_rejected() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    // A second process with the same node id is "us".
    let b = net.add_node(cfg(), test_node_id(1));
    net.nodes[a].add_node(listen_endpoint(b), net.now);
    net.advance(1);
    assert!(rejections(&net, b, a).contains(&RejectionReason::ConnectedToSelf));
    assert_eq!(counts(&net, a).active + counts(&net, b).active, 0);
    assert_no_violations(&net);
}

#[test]
fn duplicate_node_id_is_rejected() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let b = net.add_node(cfg(), test_node_id(2));
    let c = net.add_node(cfg(), test_node_id(2));
    net.nodes[b].add_node(listen_endpoint(a), net.now);
    net.advance(1);
    assert_eq!(counts(&net, a).active, 1);
    net.nodes[c].add_node(listen_endpoint(a), net.now);
    net.advance(1);
    assert_eq!(rejections(&net, a, c), [RejectionReason::AlreadyConnected]);
    assert_eq!(counts(&net, a).active, 1);
    assert_no_violations(&net);
}

#[test]
fn a_third_node_learns_the_first_through_address_exchange() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let b = net.add_node(cfg(), test_node_id(2));
    let c = net.add_node(cfg(), test_node_id(3));
    net.nodes[a].add_node(listen_endpoint(b), net.now);
    net.advance(1);
    net.nodes[c].add_node(listen_endpoint(b), net.now);
    net.advance(1);
    // c learnt a's listening endpoint from b and dialled it.
    net.advance(CONNECT_LOOP_INTERVAL_US);
    assert!(net.nodes[c].peer_db().get(&listen_endpoint(a)).is_some());
    assert_eq!(counts(&net, c).active, 2);
    assert_eq!(counts(&net, a).active, 2);
}

#[test]
fn silent_handshake_is_dropped_after_five_seconds() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let b = net.add_node(cfg(), test_node_id(2));
    net.mute.push(b);
    net.nodes[a].add_node(listen_endpoint(b), net.now);
    net.pump();
    net.advance(1);
    assert_eq!(counts(&net, b).handshaking, 1);
    net.advance(HANDSHAKE_INACTIVITY_TIMEOUT_US - 2 * SECOND_US);
    assert_eq!(counts(&net, b).handshaking, 1, "not before 5 s");
    net.advance(2 * SECOND_US);
    assert_eq!(
        counts(&net, b),
        ConnectionCounts::default(),
        "dropped at 5 s"
    );
    assert_no_violations(&net);
}

#[test]
fn closing_handshake_both_ways() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let b = net.add_node(cfg(), test_node_id(2));
    net.nodes[a].add_node(listen_endpoint(b), net.now);
    net.advance(1);
    let peer = net.nodes[a].peers().next().unwrap().id;
    let now = net.now;
    net.nodes[a].disconnect(peer, "testing", false, now);
    net.pump();
    assert_eq!(closings(&net, a, b, "testing"), 1);
    // b closed on receipt, so both sides are gone.
    assert_eq!(counts(&net, a), ConnectionCounts::default());
    assert_eq!(counts(&net, b), ConnectionCounts::default());
    assert_no_violations(&net);
}

#[test]
fn closing_times_out_after_twenty_seconds_when_the_peer_stays() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let b = net.add_node(cfg(), test_node_id(2));
    net.nodes[a].add_node(listen_endpoint(b), net.now);
    net.advance(1);
    net.mute.push(b);
    let peer = net.nodes[a].peers().next().unwrap().id;
    let now = net.now;
    net.nodes[a].disconnect(peer, "testing", false, now);
    net.pump();
    assert_eq!(counts(&net, a).closing, 1);
    net.advance(CLOSING_TIMEOUT_US - SECOND_US);
    assert_eq!(counts(&net, a).closing, 1);
    net.advance(2 * SECOND_US);
    // The connection we closed is gone (b, deaf, may be dialling in again meanwhile).
    assert_eq!(counts(&net, a).closing, 0);
    assert_eq!(counts(&net, a).active, 0);
    assert_no_violations(&net);
}

#[test]
fn full_node_rejects_but_still_hands_out_addresses() {
    let mut net = SimNet::new();
    let mut small = cfg();
    small.max_connections = 8;
    let hub = net.add_node(small, test_node_id(1));
    let dialers = dialers(&mut net, 30, 10, hub);
    net.advance(1);
    net.advance(SECOND_US);
    assert!(counts(&net, hub).active <= 8);
    assert_eq!(counts(&net, hub).active, 8);
    let mut rejected = 0;
    for &d in &dialers {
        let r = rejections(&net, hub, d);
        // A dialer the hub accepted may hear "already connected" on the hub's dial-back (the
        // duplicate that proves its endpoint), when the hub still had a slot to dial it.
        if r.is_empty() || r == [RejectionReason::AlreadyConnected] {
            continue;
        }
        rejected += 1;
        assert_eq!(r, [RejectionReason::NotAcceptingConnections]);
        assert_eq!(
            net.sent(hub, d, msg_type::ADDRESS).len(),
            1,
            "rejected dialer {d} still got addresses"
        );
    }
    assert_eq!(rejected, 22);
    assert_no_violations(&net);
}

#[test]
fn keepalive_then_inactivity_disconnect() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let b = net.add_node(cfg(), test_node_id(2));
    net.nodes[a].add_node(listen_endpoint(b), net.now);
    net.advance(1);
    let before = net.sent(a, b, msg_type::CURRENT_TIME_REQUEST).len();
    net.mute.push(b);
    let keepalive = cfg().keepalive_after_us();
    net.advance(keepalive + SECOND_US);
    assert!(net.sent(a, b, msg_type::CURRENT_TIME_REQUEST).len() > before);
    assert_eq!(counts(&net, a).active, 1);
    net.advance(keepalive);
    assert_eq!(
        counts(&net, a).active,
        0,
        "disconnected after the inactivity timeout"
    );
    assert_no_violations(&net);
}

#[test]
fn a_slow_large_message_keeps_the_peer_alive() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let b = net.add_node(cfg(), test_node_id(2));
    net.nodes[a].add_node(listen_endpoint(b), net.now);
    net.advance(1);
    net.frozen.push(b);
    let peer = net.nodes[a].peers().next().unwrap().id;
    // A block arriving at exactly the minimum rate for twice the inactivity timeout.
    let total = cfg().active_inactivity_timeout_us() * 2;
    let chunk = MIN_IN_FLIGHT_BYTES_PER_SEC as usize;
    let mut in_flight = 0;
    let mut t = 0;
    while t < total {
        net.advance(SECOND_US);
        t += SECOND_US;
        in_flight += chunk;
        let now = net.now;
        net.nodes[a].on_bytes_received(peer, chunk, in_flight, now);
    }
    assert!(in_flight < crate::wire::frame::MAX_MESSAGE_SIZE);
    assert_eq!(counts(&net, a).active, 1);
    // When the bytes stop, the same silence disconnects, at once (no goodbye mid-message).
    net.advance(cfg().active_inactivity_timeout_us() + SECOND_US);
    assert!(net.nodes[a].peer(peer).is_none());
    assert_eq!(counts(&net, a).active, 0);
}

/// Steps the clock by `step` and reports one read of `bytes` from `peer` on node `i`, each
/// adding to the message in flight, until `until` (absolute µs) or the peer is gone. Returns
/// when the peer was dropped, if it was.
fn trickle(
    net: &mut SimNet,
    i: usize,
    peer: PeerId,
    bytes: usize,
    step: i64,
    until: i64,
) -> Option<i64> {
    let gone = |net: &SimNet| {
        net.nodes[i]
            .peer(peer)
            .is_none_or(|p| p.list == ConnectionList::Closing)
    };
    let mut in_flight = 0;
    while net.now.0 < until {
        // Small steps, so the drop is seen within 10 ms of when it happens.
        let next = net.now.0 + step;
        while net.now.0 < next {
            net.advance((next - net.now.0).min(SECOND_US / 100));
            if gone(net) {
                return Some(net.now.0);
            }
        }
        in_flight += bytes;
        let now = net.now;
        net.nodes[i].on_bytes_received(peer, bytes, in_flight, now);
        // The node acts on its own deadlines; check right after the read too.
        net.pump();
        if gone(net) {
            return Some(net.now.0);
        }
    }
    None
}

#[test]
fn a_trickle_below_the_minimum_rate_is_dropped_within_the_inactivity_window() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let b = net.add_node(cfg(), test_node_id(2));
    net.nodes[a].add_node(listen_endpoint(b), net.now);
    net.advance(1);
    net.frozen.push(b);
    let peer = net.nodes[a].peers().next().unwrap().id;
    let last_message = net.nodes[a].peer(peer).unwrap().last_message_at.0;
    let window = cfg().active_inactivity_timeout_us();
    // One byte every 4 s: each read is activity in the old rule, none is in the new one.
    let dropped = trickle(
        &mut net,
        a,
        peer,
        1,
        4 * SECOND_US,
        last_message + 3 * window,
    );
    let dropped = dropped.expect("the trickler is dropped");
    // Its first byte (4 s after its last message) is the last time it was heard from.
    let after = dropped - (last_message + 4 * SECOND_US);
    assert!(
        (window..=window + TERMINATE_CHECK_INTERVAL_US + SECOND_US / 100).contains(&after),
        "dropped {after} µs after its first trickled byte (window {window})"
    );
    // Forcibly: it could not hear a goodbye mid-message.
    assert_eq!(closings(&net, a, b, "Disconnecting due to inactivity"), 0);
    assert!(net.nodes[a].peer(peer).is_none());
    assert_eq!(counts(&net, a).active, 0);
}

#[test]
fn request_timeouts_follow_the_same_rate_rule() {
    let mut net = SimNet::new();
    let mut c = cfg();
    c.connect_to_new_peers = false;
    let a = net.add_node(c.clone(), test_node_id(1));
    let slow = net.add_node(c.clone(), test_node_id(2));
    let trickler = net.add_node(c, test_node_id(3));
    connect(&mut net, a, slow);
    connect(&mut net, a, trickler);
    let peer_of = |net: &SimNet, j: usize| {
        net.nodes[a]
            .peers()
            .find(|p| p.remote_endpoint == listen_endpoint(j))
            .unwrap()
            .id
    };
    let (slow_peer, trickler_peer) = (peer_of(&net, slow), peer_of(&net, trickler));
    for (k, j) in [(1, slow), (2, trickler)] {
        let t = trx(100 + k);
        let now = net.now;
        net.nodes[j].broadcast(msg_type::TRX, t, now).accepted();
        // Its inventory reaches a; a's request never reaches it.
        net.frozen.push(j);
        net.pump();
        assert_eq!(net.sent(a, j, msg_type::FETCH_ITEMS).len(), 1);
    }
    let start = net.now.0;
    // The answer to `slow` arrives at 64 KiB/s for 20 s (1.25 MiB), past REQUEST_TIMEOUT_US.
    let dropped = trickle(
        &mut net,
        a,
        slow_peer,
        16 * 1024,
        SECOND_US / 4,
        start + 20 * SECOND_US,
    );
    assert_eq!(
        dropped, None,
        "a request answered at 64 KiB/s is not timed out"
    );
    assert_eq!(counts(&net, a).active, 1, "but the trickler was");
    assert!(net.nodes[a].peer(trickler_peer).is_none());
    // Meanwhile the trickler's bytes (one every 4 s) did not hold its request open.
    let mut net2 = SimNet::new();
    let mut c = cfg();
    c.connect_to_new_peers = false;
    let a2 = net2.add_node(c.clone(), test_node_id(1));
    let t2 = net2.add_node(c, test_node_id(3));
    connect(&mut net2, a2, t2);
    let now = net2.now;
    net2.nodes[t2]
        .broadcast(msg_type::TRX, trx(9), now)
        .accepted();
    net2.frozen.push(t2);
    net2.pump();
    let peer = net2.nodes[a2].peers().next().unwrap().id;
    let asked = net2.now.0;
    let dropped = trickle(
        &mut net2,
        a2,
        peer,
        1,
        SECOND_US / 2,
        asked + 60 * SECOND_US,
    );
    let after = dropped.expect("the trickler is timed out") - asked;
    assert!(
        (REQUEST_TIMEOUT_US..=REQUEST_TIMEOUT_US + 2 * SECOND_US).contains(&after),
        "timed out {after} µs after the request"
    );
}

/// A node with one inbound socket accepted at the current time.
fn accepted(net: &mut SimNet, i: usize, port: u16) -> PeerId {
    let now = net.now;
    let remote = Endpoint::new(std::net::Ipv4Addr::new(127, 0, 0, 3), port);
    net.nodes[i].accept_inbound(remote, now).unwrap()
}

#[test]
fn bytes_never_extend_a_handshake() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    // The key trickled a byte a second.
    let start = net.now.0;
    let peer = accepted(&mut net, a, 40_001);
    let dropped = trickle(&mut net, a, peer, 1, SECOND_US, start + 30 * SECOND_US);
    assert_eq!(dropped, Some(start + HANDSHAKE_INACTIVITY_TIMEOUT_US));
    // The key exchange done, the hello trickled a byte a second.
    net.advance(SECOND_US);
    let start = net.now.0;
    let peer = accepted(&mut net, a, 40_002);
    net.advance(SECOND_US);
    let now = net.now;
    net.nodes[a].on_established(peer, listen_endpoint(a), [7; 32], now);
    net.pump();
    let dropped = trickle(&mut net, a, peer, 1, SECOND_US, start + 30 * SECOND_US);
    assert_eq!(
        dropped,
        Some(start + SECOND_US + HANDSHAKE_INACTIVITY_TIMEOUT_US),
        "5 s after the key exchange"
    );
}

#[test]
fn a_chatty_handshake_is_capped() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let start = net.now.0;
    let peer = accepted(&mut net, a, 40_001);
    let now = net.now;
    net.nodes[a].on_established(peer, listen_endpoint(a), [7; 32], now);
    // A complete message every 3 s: never silent, never active.
    let request = Message::CurrentTimeRequest(CurrentTimeRequestMessage {
        request_sent_time: TimePoint(0),
    });
    while net.now.0 + 3 * SECOND_US < start + MAX_HANDSHAKE_DURATION_US {
        net.advance(3 * SECOND_US);
        let now = net.now;
        net.nodes[a].on_message(peer, request.clone(), Some([7; 32]), now);
        net.pump();
        assert!(net.nodes[a].peer(peer).is_some(), "kept while it talks");
    }
    net.advance(start + MAX_HANDSHAKE_DURATION_US - net.now.0);
    assert!(net.nodes[a].peer(peer).is_none(), "dropped at the cap");
}

#[test]
fn key_exchanges_are_capped_by_closing_the_oldest() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let first: Vec<PeerId> = (0..=MAX_INBOUND_KEY_EXCHANGES)
        .map(|k| {
            net.advance(1);
            let peer = accepted(&mut net, a, 40_000 + k as u16);
            if k == 0 {
                // The oldest finished its key exchange: it is not a candidate.
                let now = net.now;
                net.nodes[a].on_established(peer, listen_endpoint(a), [7; 32], now);
            }
            peer
        })
        .collect();
    net.advance(1);
    let newcomer = accepted(&mut net, a, 50_000);
    net.pump();
    assert!(
        net.nodes[a].peer(newcomer).is_some(),
        "the newcomer gets in"
    );
    assert!(
        net.nodes[a].peer(first[0]).is_some(),
        "the established one stays"
    );
    assert!(
        net.nodes[a].peer(first[1]).is_none(),
        "the oldest key exchange goes"
    );
    assert!(net.nodes[a].peer(first[2]).is_some());
    assert_eq!(counts(&net, a).handshaking, MAX_INBOUND_KEY_EXCHANGES + 1);
}

#[test]
fn a_full_handshaking_list_makes_room_from_key_exchanges_only() {
    let mut net = SimNet::new();
    let mut small = cfg();
    small.max_connections = 2;
    let a = net.add_node(small, test_node_id(1));
    let cap = 2 + EXTRA_HANDSHAKING_CONNECTIONS;
    let peers: Vec<PeerId> = (0..cap)
        .map(|k| accepted(&mut net, a, 40_000 + k as u16))
        .collect();
    let now = net.now;
    for &p in &peers[..cap - 1] {
        net.nodes[a].on_established(p, listen_endpoint(a), [7; 32], now);
    }
    net.pump();
    // Full, one socket still in the key exchange: it makes room.
    let newcomer = accepted(&mut net, a, 50_000);
    net.pump();
    assert!(net.nodes[a].peer(peers[cap - 1]).is_none());
    assert_eq!(counts(&net, a).handshaking, cap);
    // Full of established handshakes: refused.
    let now = net.now;
    net.nodes[a].on_established(newcomer, listen_endpoint(a), [7; 32], now);
    let remote = Endpoint::new(std::net::Ipv4Addr::new(127, 0, 0, 3), 50_001);
    assert_eq!(net.nodes[a].accept_inbound(remote, now), None);
}

#[test]
fn failed_peers_back_off_linearly() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let nowhere = Endpoint::new(std::net::Ipv4Addr::LOCALHOST, 9);
    net.nodes[a].add_node(nowhere, net.now);
    net.advance(1);
    let attempts = |net: &SimNet| {
        net.nodes[a]
            .peer_db()
            .get(&nowhere)
            .unwrap()
            .number_of_failed_connection_attempts
    };
    assert_eq!(attempts(&net), 1);
    // Retried after (1 + 1) × 30 s, not before.
    net.advance(2 * PEER_CONNECTION_RETRY_US - 11 * SECOND_US);
    assert_eq!(attempts(&net), 1);
    net.advance(11 * SECOND_US);
    assert_eq!(attempts(&net), 2);
    assert_no_violations(&net);
}

#[test]
fn seeds_are_retried_after_many_failures() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let seed = listen_endpoint(7);
    net.nodes[a].add_seed(seed, net.now);
    net.advance(1);
    net.advance(2 * SEED_RETRY_WHEN_ALONE_US);
    let r = net.nodes[a].peer_db().get(&seed).unwrap();
    assert!(r.seed);
    assert!(r.number_of_failed_connection_attempts >= 3);
    // The seed comes up: the node connects to it.
    let s = net.add_node(cfg(), test_node_id(2));
    assert_eq!(listen_endpoint(s), listen_endpoint(1));
    // (index 1 listens where the seed was expected only if they match; use add_seed on it)
    net.nodes[a].add_seed(listen_endpoint(s), net.now);
    net.advance(SECOND_US);
    assert_eq!(counts(&net, a).active, 1);
}

#[test]
fn a_seed_that_was_down_at_start_is_found_within_seconds() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let seed_ep = listen_endpoint(1);
    net.nodes[a].add_seed(seed_ep, net.now);
    net.advance(1);
    assert_eq!(counts(&net, a).active, 0);
    // The seed comes up a moment later.
    let s = net.add_node(cfg(), test_node_id(2));
    assert_eq!(listen_endpoint(s), seed_ep);
    net.advance(SEED_RETRY_BASE_US * 2 + CONNECT_LOOP_INTERVAL_US);
    assert_eq!(counts(&net, a).active, 1);
}

#[test]
fn never_exceeds_max_connections_when_dialing() {
    let mut net = SimNet::new();
    let mut c = cfg();
    c.desired_connections = 3;
    c.max_connections = 4;
    let a = net.add_node(c, test_node_id(1));
    let others: Vec<usize> = (0..10)
        .map(|k| net.add_node(cfg(), test_node_id(20 + k)))
        .collect();
    for &o in &others {
        net.nodes[a].add_node(listen_endpoint(o), net.now);
    }
    net.advance(1);
    for _ in 0..5 {
        net.advance(CONNECT_LOOP_INTERVAL_US);
        let c = counts(&net, a);
        assert!(c.active + c.handshaking <= 4, "{c:?}");
    }
}

#[test]
fn time_reply_sets_offset_and_round_trip() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let b = net.add_node(cfg(), test_node_id(2));
    net.nodes[a].add_node(listen_endpoint(b), net.now);
    net.advance(1);
    let peer = net.nodes[a].peers().next().unwrap().id;
    let t0 = net.now.0;
    let reply = CurrentTimeReplyMessage {
        request_sent_time: TimePoint(t0 - 1000),
        request_received_time: TimePoint(t0 + 5_000),
        reply_transmitted_time: TimePoint(t0 + 5_200),
    };
    let now = net.now;
    net.nodes[a].on_message(peer, Message::CurrentTimeReply(reply), None, now);
    let p = net.nodes[a].peer(peer).unwrap();
    // offset = ((t1 - t0) + (t2 - t3)) / 2 = (6000 + 5200) / 2
    assert_eq!(p.clock_offset_us, 5_600);
    // rtt = (t3 - t0) - (t2 - t1) = 1000 - 200
    assert_eq!(p.round_trip_delay_us, 800);
}

#[test]
fn peer_database_is_saved_when_changed_and_at_shutdown() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let b = net.add_node(cfg(), test_node_id(2));
    net.nodes[a].add_node(listen_endpoint(b), net.now);
    net.advance(PEER_DB_SAVE_INTERVAL_US + SECOND_US);
    let saved = net.saved.get(&a).expect("periodic save");
    assert!(saved.iter().any(|r| r.endpoint == listen_endpoint(b)));
    net.saved.clear();
    let now = net.now;
    net.nodes[a].shutdown(now);
    net.pump();
    assert!(net.saved.contains_key(&a));
    assert_eq!(closings(&net, a, b, "Peer is shutting down"), 1);
    assert_no_violations(&net);
}

#[test]
fn a_node_shutting_down_has_no_deadline_in_the_past() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let b = net.add_node(cfg(), test_node_id(2));
    net.nodes[a].add_node(listen_endpoint(b), net.now);
    net.advance(SECOND_US);
    let now = net.now;
    // Work due right now as the shutdown begins: a connect-loop pass.
    net.nodes[a].add_node(listen_endpoint(7), now);
    net.nodes[a].shutdown(now);
    net.nodes[a].handle_timeout(now);
    assert!(
        net.nodes[a].next_deadline() > now,
        "a deadline that stays due would spin whoever drives the node"
    );
    // And the simulator, which drives it so, gets through the goodbyes.
    net.advance(CLOSING_TIMEOUT_US + SECOND_US);
    assert_eq!(net.nodes[a].connection_counts().active, 0);
}

#[test]
fn an_inbound_peer_is_dialled_back_and_verified() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let b = net.add_node(cfg(), test_node_id(2));
    net.nodes[b].add_node(listen_endpoint(a), net.now);
    net.advance(1);
    net.advance(CONNECT_LOOP_INTERVAL_US);
    // a dialled b's claimed endpoint, met itself as a duplicate, and so proved it.
    assert_eq!(rejections(&net, b, a), [RejectionReason::AlreadyConnected]);
    let p = net.nodes[a]
        .peers()
        .find(|p| p.list == crate::peer::ConnectionList::Active)
        .unwrap();
    assert_eq!(
        p.firewalled,
        crate::wire::types::FirewalledState::NotFirewalled
    );
    assert!(p.additional_inbound_endpoints.contains(&listen_endpoint(b)));
    let r = net.nodes[a].peer_db().get(&listen_endpoint(b)).unwrap();
    assert_eq!(
        r.last_connection_disposition,
        crate::store::peer_db::Disposition::LastConnectionSucceeded
    );
    assert_eq!(counts(&net, a).active, 1);
    assert_eq!(counts(&net, b).active, 1);
}

#[test]
fn after_sync_the_peer_learns_we_are_in_sync_and_gossips_new_blocks() {
    let mut net = SimNet::new();
    let mut c = cfg();
    c.connect_to_new_peers = false;
    let a = net.add_node(c.clone(), test_node_id(1));
    let blocks = crate::app::relay_store::make_test_chain(Default::default(), 60, 1_600_000_000);
    let now = net.now;
    for blk in &blocks[..50] {
        net.nodes[a]
            .broadcast(msg_type::BLOCK, blk.clone(), now)
            .accepted();
    }
    let late = net.add_node(c, test_node_id(2));
    net.nodes[late].add_node(listen_endpoint(a), now);
    net.advance(5 * SECOND_US);
    assert_eq!(net.nodes[late].delegate().head().number, 50);
    // New blocks on a now reach late by inventory gossip.
    for blk in &blocks[50..] {
        let now = net.now;
        net.nodes[a]
            .broadcast(msg_type::BLOCK, blk.clone(), now)
            .accepted();
        net.pump();
    }
    net.advance(SECOND_US);
    assert_eq!(net.nodes[late].delegate().head().number, 60);
}

#[test]
fn unknown_core_types_are_ignored_and_others_disconnect() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let b = net.add_node(cfg(), test_node_id(2));
    net.nodes[a].add_node(listen_endpoint(b), net.now);
    net.advance(1);
    let peer_in_b = net.nodes[b].peers().next().unwrap().id;
    let now = net.now;
    net.nodes[b].on_message(
        peer_in_b,
        Message::Unknown {
            msg_type: 5050,
            data: vec![1, 2],
        },
        None,
        now,
    );
    net.pump();
    assert_eq!(counts(&net, b).active, 1);
    net.nodes[b].on_message(peer_in_b, Message::Trx(vec![0; 10]), None, now);
    net.pump();
    assert_eq!(counts(&net, b).active, 0);
}

#[test]
fn firewall_check_relay_and_probe() {
    // a asks b whether it is reachable; b relays to c, which probes a and reports back.
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let b = net.add_node(cfg(), test_node_id(2));
    let c = net.add_node(cfg(), test_node_id(3));
    net.nodes[c].add_node(listen_endpoint(b), net.now);
    net.advance(1);
    net.nodes[a].add_node(listen_endpoint(b), net.now);
    net.advance(1);
    assert_eq!(net.sent(a, b, msg_type::CHECK_FIREWALL).len(), 1);
    assert!(
        !net.sent(b, c, msg_type::CHECK_FIREWALL).is_empty()
            || !net.sent(b, a, msg_type::CHECK_FIREWALL_REPLY).is_empty()
    );
    let replies = net.sent(b, a, msg_type::CHECK_FIREWALL_REPLY);
    assert_eq!(replies.len(), 1, "a gets one answer");
    let Message::CheckFirewallReply(r) = replies[0] else {
        unreachable!()
    };
    assert_eq!(
        r.result,
        crate::wire::types::FirewallCheckResult::ConnectionSuccessful
    );
    assert_eq!(net.nodes[a].info(net.now).firewalled, "not_firewalled");
}

#[test]
fn get_current_connections_is_answered() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let b = net.add_node(cfg(), test_node_id(2));
    net.nodes[a].add_node(listen_endpoint(b), net.now);
    net.advance(1);
    let peer = net.nodes[a].peers().next().unwrap().id;
    net.inject(
        a,
        peer,
        Message::GetCurrentConnectionsRequest(GetCurrentConnectionsRequestMessage {}),
    );
    let replies = net.sent(b, a, msg_type::GET_CURRENT_CONNECTIONS_REPLY);
    assert_eq!(replies.len(), 1);
    let Message::GetCurrentConnectionsReply(r) = replies[0] else {
        unreachable!()
    };
    assert_eq!(r.current_connections.len(), 1);
    assert_eq!(r.current_connections[0].node_id, test_node_id(1));
}

// ----- items and sync -----------------------------------------------------------------------

use crate::app::relay_store::make_test_chain;
use crate::wire::types::Ripemd160;

/// A valid transaction (the vector's, with `i` in its ref_block_prefix so each is distinct).
fn trx(i: u32) -> Vec<u8> {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../../tests/vectors/messages.json")).unwrap();
    let mut data = hex::decode(v["messages"][0]["data_hex"].as_str().unwrap()).unwrap();
    data[2..6].copy_from_slice(&i.to_le_bytes());
    // Expires long after the simulated clock.
    data[6..10].copy_from_slice(&2_000_000_000u32.to_le_bytes());
    data
}

fn has(net: &SimNet, i: usize, item_type: u32, data: &[u8]) -> bool {
    net.nodes[i].delegate().has_item(&ItemId {
        item_type,
        item_hash: crate::wire::message::message_hash(data),
    })
}

fn connect(net: &mut SimNet, from: usize, to: usize) {
    let now = net.now;
    net.nodes[from].add_node(listen_endpoint(to), now);
    net.advance(1);
}

fn line(n: usize) -> SimNet {
    let mut net = SimNet::new();
    let mut c = cfg();
    c.connect_to_new_peers = false;
    for k in 0..n {
        net.add_node(c.clone(), test_node_id(k as u8 + 1));
    }
    for k in 1..n {
        connect(&mut net, k, k - 1);
    }
    net
}

#[test]
fn a_transaction_crosses_a_line_of_three() {
    let mut net = line(3);
    let t = trx(1);
    let now = net.now;
    net.nodes[0]
        .broadcast(msg_type::TRX, t.clone(), now)
        .accepted();
    net.pump();
    net.advance(SECOND_US);
    assert!(has(&net, 2, msg_type::TRX, &t));
    // Each hop fetched it once, and nobody advertised it back to its source.
    assert_eq!(net.sent(1, 0, msg_type::ITEM_IDS_INVENTORY).len(), 0);
    assert_eq!(net.sent(1, 2, msg_type::ITEM_IDS_INVENTORY).len(), 1);
}

#[test]
fn a_fetched_transaction_is_advertised_at_once_when_idle_and_batched_under_load() {
    // 0, 2 and 3 around 1, on instant links: only node 1's batching can delay anything.
    let mut net = SimNet::new();
    let mut c = cfg();
    c.connect_to_new_peers = false;
    for k in 0..4u8 {
        net.add_node(c.clone(), test_node_id(k + 1));
    }
    for k in [0, 2, 3] {
        connect(&mut net, k, 1);
    }
    net.advance(SECOND_US);
    let (a, b) = (trx(1), trx(2));
    let now = net.now;
    net.nodes[0]
        .broadcast(msg_type::TRX, a.clone(), now)
        .accepted();
    net.advance(0);
    // Node 1 had advertised nothing for a window: it passes A on in the same instant.
    assert!(has(&net, 1, msg_type::TRX, &a));
    assert!(has(&net, 2, msg_type::TRX, &a));
    assert_eq!(net.sent(1, 2, msg_type::ITEM_IDS_INVENTORY).len(), 1);

    // B reaches node 1 a millisecond after it advertised A: it waits for A's window to end.
    net.advance(1_000);
    let now = net.now;
    net.nodes[3]
        .broadcast(msg_type::TRX, b.clone(), now)
        .accepted();
    net.advance(0);
    assert!(has(&net, 1, msg_type::TRX, &b));
    net.advance(ADVERTISE_BATCH_US - 1_000 - 1);
    assert!(!has(&net, 2, msg_type::TRX, &b));
    assert_eq!(net.sent(1, 2, msg_type::ITEM_IDS_INVENTORY).len(), 1);
    net.advance(1);
    assert!(has(&net, 2, msg_type::TRX, &b));
    assert_eq!(net.sent(1, 2, msg_type::ITEM_IDS_INVENTORY).len(), 2);
}

#[test]
fn every_node_of_a_random_graph_gets_each_body_exactly_once() {
    let mut net = SimNet::new();
    let mut c = cfg();
    c.connect_to_new_peers = false;
    let n = 10;
    for k in 0..n {
        net.add_node(c.clone(), test_node_id(k as u8 + 1));
    }
    // A ring plus seeded random chords: connected, with many paths.
    let mut seed = 0x1234_5678u64;
    for k in 0..n {
        connect(&mut net, k, (k + 1) % n);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let other = (seed % n as u64) as usize;
        if other != k && other != (k + 1) % n && (other + 1) % n != k {
            connect(&mut net, k, other);
        }
    }
    let items: Vec<Vec<u8>> = (0..20).map(trx).collect();
    for (i, t) in items.iter().enumerate() {
        let now = net.now;
        net.nodes[i % n]
            .broadcast(msg_type::TRX, t.clone(), now)
            .accepted();
        net.pump();
    }
    net.advance(5 * SECOND_US);
    for k in 0..n {
        for t in &items {
            assert!(has(&net, k, msg_type::TRX, t), "node {k} lacks an item");
        }
        let info = net.nodes[k].info(net.now);
        assert_eq!(
            info.duplicate_items_received, 0,
            "node {k} got a body twice"
        );
    }
    // Bodies delivered in all = items × (nodes − 1): exactly once per node.
    let bodies = net
        .trace
        .iter()
        .filter(|d| d.message.msg_type() == msg_type::TRX)
        .count();
    assert_eq!(bodies, items.len() * (n - 1));
    assert_no_violations(&net);
}

#[test]
fn a_late_node_syncs_from_two_peers_in_parallel_then_serves_a_fourth() {
    let mut net = SimNet::new();
    let mut c = cfg();
    c.connect_to_new_peers = false;
    let a = net.add_node(c.clone(), test_node_id(1));
    let b = net.add_node(c.clone(), test_node_id(2));
    let blocks = make_test_chain(Ripemd160::default(), 2000, 1_600_000_000);
    for i in [a, b] {
        let now = net.now;
        for blk in &blocks {
            net.nodes[i]
                .broadcast(msg_type::BLOCK, blk.clone(), now)
                .accepted();
        }
        // Durable once its commit completes.
        net.pump();
        assert_eq!(net.nodes[i].delegate().head().number, 2000);
    }
    let late = net.add_node(c.clone(), test_node_id(3));
    // Both connections come up before any block moves.
    let now = net.now;
    net.nodes[late].add_node(listen_endpoint(a), now);
    net.nodes[late].add_node(listen_endpoint(b), now);
    net.advance(10 * SECOND_US);
    assert_eq!(net.nodes[late].delegate().head().number, 2000);
    let from_a = net.sent(a, late, msg_type::BLOCK).len();
    let from_b = net.sent(b, late, msg_type::BLOCK).len();
    assert!(
        from_a > 0 && from_b > 0,
        "both peers served blocks: {from_a} + {from_b}"
    );
    assert_eq!(from_a + from_b, 2000, "no block fetched twice");
    let fourth = net.add_node(c, test_node_id(4));
    connect(&mut net, fourth, late);
    net.advance(10 * SECOND_US);
    assert_eq!(net.nodes[fourth].delegate().head().number, 2000);
    assert_eq!(
        net.nodes[fourth].delegate().head().block_id,
        net.nodes[a].delegate().head().block_id
    );
    assert_no_violations(&net);
}

#[test]
fn an_advertiser_that_never_answers_is_timed_out() {
    let mut net = SimNet::new();
    let mut c = cfg();
    c.connect_to_new_peers = false;
    let a = net.add_node(c.clone(), test_node_id(1));
    let silent = net.add_node(c.clone(), test_node_id(2));
    let honest = net.add_node(c, test_node_id(3));
    connect(&mut net, a, silent);
    connect(&mut net, a, honest);
    let t = trx(7);
    // The silent node advertises first, then stops answering anything.
    let now = net.now;
    net.nodes[silent]
        .broadcast(msg_type::TRX, t.clone(), now)
        .accepted();
    net.mute.push(silent);
    net.pump();
    let now = net.now;
    net.nodes[honest]
        .broadcast(msg_type::TRX, t.clone(), now)
        .accepted();
    net.pump();
    assert_eq!(net.sent(a, silent, msg_type::FETCH_ITEMS).len(), 1);
    assert!(!has(&net, a, msg_type::TRX, &t));
    net.advance(REQUEST_TIMEOUT_US - SECOND_US);
    assert!(!has(&net, a, msg_type::TRX, &t), "not before the timeout");
    net.advance(2 * SECOND_US);
    assert!(
        has(&net, a, msg_type::TRX, &t),
        "fetched from the honest peer"
    );
    assert_eq!(net.sent(a, honest, msg_type::FETCH_ITEMS).len(), 1);
    assert_no_violations(&net);
}

#[test]
fn a_block_before_its_parent_is_held_then_accepted() {
    let mut net = line(2);
    let blocks = make_test_chain(Ripemd160::default(), 3, 1_600_000_000);
    let now = net.now;
    net.nodes[0]
        .broadcast(msg_type::BLOCK, blocks[0].clone(), now)
        .accepted();
    net.pump();
    net.advance(SECOND_US);
    assert_eq!(net.nodes[1].delegate().head().number, 1);
    // Block 3 before block 2: held, nobody disconnected.
    let now = net.now;
    assert_eq!(
        net.nodes[0]
            .broadcast(msg_type::BLOCK, blocks[2].clone(), now)
            .outcome,
        crate::node::BroadcastOutcome::Held {
            missing_parent: crate::wire::message::block_id_of(&blocks[1]).unwrap()
        }
    );
    net.nodes[0]
        .broadcast(msg_type::BLOCK, blocks[1].clone(), now)
        .accepted();
    net.pump();
    net.advance(SECOND_US);
    assert_eq!(net.nodes[0].delegate().head().number, 3);
    assert_eq!(net.nodes[1].delegate().head().number, 3);
    assert_eq!(counts(&net, 1).active, 1, "no peer blamed");
    assert_no_violations(&net);
}

#[test]
fn unrequested_items_disconnect() {
    let mut net = line(2);
    let peer = net.nodes[1].peers().next().unwrap().id;
    let now = net.now;
    net.nodes[1].on_message(peer, Message::Trx(trx(1)), None, now);
    net.pump();
    assert_eq!(counts(&net, 1).active, 0);
}

// ----- misbehaviour and bans ------------------------------------------------------------------

use crate::crypto::NodeKey;
use crate::wire::types::{CompactSignatureBytes, IpAddress};
use crate::wire::variant::VariantObject;
use bans::Violation;

const EVIL: Ipv4Addr = Ipv4Addr::new(127, 0, 10, 5);
const HONEST: Ipv4Addr = Ipv4Addr::new(127, 0, 10, 6);
const DIGEST: [u8; 32] = [7; 32];

/// A hello signed by `key` over `digest`.
fn hello(key: &NodeKey, digest: [u8; 32]) -> HelloMessage {
    HelloMessage {
        user_agent: "test".into(),
        core_protocol_version: CORE_PROTOCOL_VERSION,
        inbound_address: IpAddress(0),
        inbound_port: 0,
        outbound_port: 0,
        node_public_key: NodeId(*key.public_key()),
        signed_shared_secret: CompactSignatureBytes(key.sign_compact(&digest)),
        chain_id: cfg().chain_id,
        user_data: VariantObject::new(),
    }
}

/// An inbound connection from `ip` on node `i`, key exchange done.
fn inbound(net: &mut SimNet, i: usize, ip: Ipv4Addr, port: u16) -> Option<PeerId> {
    let now = net.now;
    let peer = net.nodes[i].accept_inbound(Endpoint::new(ip, port), now)?;
    net.nodes[i].on_established(peer, listen_endpoint(i), DIGEST, now);
    net.pump();
    Some(peer)
}

fn say(net: &mut SimNet, i: usize, peer: PeerId, m: Message) {
    let now = net.now;
    net.nodes[i].on_message(peer, m, Some(DIGEST), now);
    net.pump();
}

fn peers_from(net: &SimNet, i: usize, ip: Ipv4Addr) -> usize {
    net.nodes[i]
        .peers()
        .filter(|p| p.remote_endpoint.address.to_ipv4() == ip)
        .count()
}

#[test]
fn a_forged_hello_bans_the_address_and_closes_all_its_connections() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let key = NodeKey::generate();
    // An accepted connection from the address, and an honest neighbour.
    let first = inbound(&mut net, a, EVIL, 5001).unwrap();
    say(&mut net, a, first, Message::Hello(hello(&key, DIGEST)));
    let honest = inbound(&mut net, a, HONEST, 5001).unwrap();
    say(&mut net, a, honest, Message::Hello(hello(&key, DIGEST)));
    assert_eq!(peers_from(&net, a, EVIL), 1);
    // A second connection from it signs the wrong secret.
    let second = inbound(&mut net, a, EVIL, 5002).unwrap();
    say(&mut net, a, second, Message::Hello(hello(&key, [8; 32])));
    assert_eq!(peers_from(&net, a, EVIL), 0, "every connection closed");
    assert_eq!(peers_from(&net, a, HONEST), 1, "the neighbour stays");
    let report = net.nodes[a].ban_report(net.now);
    assert_eq!(report.bans.len(), 1);
    let ban = &report.bans[0];
    assert_eq!(
        (ban.ip, ban.reason.as_str()),
        (EVIL, "invalid_hello_signature")
    );
    assert_eq!(ban.until.0 - ban.since.0, DEFAULT_BAN_DURATION_US);
    assert_eq!(report.violations["invalid_hello_signature"], 1);
    assert_eq!(net.saved_bans[&a], report.bans, "saved at once");
    // New sockets from it are closed at accept; the neighbour's score is untouched.
    assert!(inbound(&mut net, a, EVIL, 5003).is_none());
    assert_eq!(net.nodes[a].ban_report(net.now).refused_connections, 1);
    assert!(inbound(&mut net, a, HONEST, 5002).is_some());
    let infos = net.nodes[a].peer_infos(net.now);
    assert!(infos.iter().all(|p| p.misbehaviour_score == 0));
    // It is never dialled.
    let now = net.now;
    net.nodes[a].add_node(Endpoint::new(EVIL, 1776), now);
    net.advance(CONNECT_LOOP_INTERVAL_US);
    assert_eq!(peers_from(&net, a, EVIL), 0);
    // Until the operator lifts the ban.
    let now = net.now;
    assert!(net.nodes[a].unban(EVIL, now));
    net.pump();
    assert_eq!(net.saved_bans[&a], vec![]);
    assert!(inbound(&mut net, a, EVIL, 5004).is_some());
}

#[test]
fn a_ban_lapses_after_the_ban_time() {
    let mut net = SimNet::new();
    let mut c = cfg();
    c.ban_duration_us = 60 * SECOND_US;
    let a = net.add_node(c, test_node_id(1));
    let now = net.now;
    let p = net.nodes[a]
        .accept_inbound(Endpoint::new(EVIL, 5001), now)
        .unwrap();
    // An invalid key in the key exchange is reported before the exchange finishes.
    net.nodes[a].on_protocol_error(p, "invalid public key", now);
    net.pump();
    assert!(net.nodes[a].is_banned(EVIL, net.now));
    net.advance(59 * SECOND_US);
    assert!(inbound(&mut net, a, EVIL, 5002).is_none(), "still banned");
    net.advance(2 * SECOND_US);
    assert!(!net.nodes[a].is_banned(EVIL, net.now));
    assert_eq!(
        net.saved_bans[&a],
        vec![],
        "the lapsed ban is dropped from disk"
    );
    assert!(inbound(&mut net, a, EVIL, 5003).is_some());
}

#[test]
fn undecodable_data_bans_on_the_second_connection_and_scores_decay() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let p = inbound(&mut net, a, EVIL, 5001).unwrap();
    let now = net.now;
    net.nodes[a].on_protocol_error(p, "bad frame", now);
    net.pump();
    assert!(
        !net.nodes[a].is_banned(EVIL, net.now),
        "one could be a decoder mismatch"
    );
    let q = inbound(&mut net, a, EVIL, 5002).unwrap();
    let info = net.nodes[a].peer_infos(net.now);
    assert_eq!(
        info[0].misbehaviour_score, WEIGHT_UNDECODABLE,
        "/peers shows the score"
    );
    // Five hours later the first is forgiven: the second does not ban.
    net.advance(5 * 3600 * SECOND_US);
    assert!(
        net.nodes[a].peer(q).is_none(),
        "the silent handshake was dropped"
    );
    let q = inbound(&mut net, a, EVIL, 5002).unwrap();
    assert_eq!(net.nodes[a].peer_infos(net.now)[0].misbehaviour_score, 0);
    let now = net.now;
    net.nodes[a].on_protocol_error(q, "bad frame", now);
    net.pump();
    assert!(!net.nodes[a].is_banned(EVIL, net.now));
    // Two in a row do.
    let r = inbound(&mut net, a, EVIL, 5003).unwrap();
    let now = net.now;
    net.nodes[a].on_protocol_error(r, "bad frame", now);
    net.pump();
    assert!(net.nodes[a].is_banned(EVIL, net.now));
    assert_eq!(
        net.nodes[a].ban_report(net.now).violations["undecodable"],
        3
    );
}

#[test]
fn protocol_state_violations_are_counted() {
    let mut net = SimNet::new();
    let a = net.add_node(cfg(), test_node_id(1));
    let key = NodeKey::generate();
    // Item inventory before hello.
    let p = inbound(&mut net, a, EVIL, 5001).unwrap();
    say(
        &mut net,
        a,
        p,
        Message::ItemIdsInventory(ItemIdsInventoryMessage {
            item_type: msg_type::TRX,
            item_hashes_available: vec![],
        }),
    );
    // Two hellos.
    let q = inbound(&mut net, a, EVIL, 5002).unwrap();
    say(&mut net, a, q, Message::Hello(hello(&key, DIGEST)));
    say(&mut net, a, q, Message::Hello(hello(&key, DIGEST)));
    let report = net.nodes[a].ban_report(net.now);
    assert_eq!(report.violations["message_before_hello"], 1);
    assert_eq!(report.violations["duplicate_hello"], 1);
    assert!(net.nodes[a].is_banned(EVIL, net.now), "50 + 50");
    assert_eq!(Violation::DuplicateHello.weight(), WEIGHT_DUPLICATE_HELLO);
}

#[test]
fn fetch_requests_beyond_the_serve_queue_are_a_violation() {
    let mut net = line(2);
    let peer = net.nodes[0].peers().next().unwrap().id;
    let many = vec![Ripemd160::default(); MAX_SERVE_QUEUE + 1];
    net.inject(
        0,
        peer,
        Message::FetchItems(FetchItemsMessage {
            item_type: msg_type::TRX,
            items_to_fetch: many,
        }),
    );
    let report = net.nodes[1].ban_report(net.now);
    assert_eq!(report.violations["fetch_flood"], 1);
}

/// Distinct made-up transaction ids.
fn made_up_ids(count: usize) -> Vec<crate::wire::types::ItemHash> {
    (0..count as u32)
        .map(|i| {
            let mut h = [7u8; 20];
            h[..4].copy_from_slice(&i.to_le_bytes());
            Ripemd160(h)
        })
        .collect()
}

#[test]
fn a_long_advertisement_is_read_in_bounded_turns_and_forgotten_in_time() {
    let mut net = line(2);
    let peer = net.nodes[1].peers().next().unwrap().id;
    let now = net.now;
    let ids = made_up_ids(1000);
    net.nodes[1].on_message(
        peer,
        Message::ItemIdsInventory(ItemIdsInventoryMessage {
            item_type: msg_type::TRX,
            item_hashes_available: ids,
        }),
        None,
        now,
    );
    // One turn read a bounded part; the rest waits, and the runtime is told to pause the peer.
    let m = net.nodes[1].accounting();
    assert_eq!(m.inventory_from_peers_total, MAX_INVENTORY_IDS_PER_TURN);
    assert_eq!(m.pending_inventory_total, 1000 - MAX_INVENTORY_IDS_PER_TURN);
    assert!(net.nodes[1].backlogged_peers().contains(&peer));
    while !net.nodes[1].backlogged_peers().is_empty() {
        net.nodes[1].work_backlog(now);
    }
    let m = net.nodes[1].accounting();
    assert_eq!(m.inventory_from_peers_total, 1000);
    assert_eq!(m.pending_inventory_total, 0);
    assert_eq!(m.items_to_fetch + m.items_requested, 1000);
    // The peer has none of them: each request is answered item_not_available and the item,
    // advertised by nobody else, is forgotten. Two minutes on, nothing is left.
    net.pump();
    net.advance(INVENTORY_MEMORY_US + 2 * SECOND_US);
    let m = net.nodes[1].accounting();
    assert_eq!(
        (
            m.items_to_fetch,
            m.items_requested,
            m.inventory_from_peers_total
        ),
        (0, 0, 0),
        "{m:?}"
    );
    assert_eq!(m.fetch_index_entries, 0, "{m:?}");
    assert_eq!(counts(&net, 1).active, 1, "nobody blamed");
}

#[test]
fn an_item_first_offered_by_a_busy_peer_is_fetched_from_an_idle_one_at_once() {
    let mut net = line(3);
    // Node 1 is connected to 0 and 2. Node 0 looks busy to node 1: a sync request of node 1
    // to it is outstanding (node 0 is frozen, so it never answers).
    let t = trx(42);
    let item = ItemId {
        item_type: msg_type::TRX,
        item_hash: crate::wire::message::message_hash(&t),
    };
    let to_0 = net.nodes[1]
        .peers()
        .find(|p| p.remote_endpoint == listen_endpoint(0))
        .unwrap()
        .id;
    net.frozen.push(0);
    let now = net.now;
    net.nodes[1].on_message(
        to_0,
        Message::FetchBlockchainItemIds(FetchBlockchainItemIdsMessage {
            item_type: msg_type::BLOCK,
            blockchain_synopsis: vec![Ripemd160([9; 20])],
        }),
        None,
        now,
    );
    net.nodes[1].on_message(
        to_0,
        Message::ItemIdsInventory(ItemIdsInventoryMessage {
            item_type: msg_type::TRX,
            item_hashes_available: vec![item.item_hash],
        }),
        None,
        now,
    );
    net.pump();
    assert_eq!(net.sent(1, 0, msg_type::FETCH_ITEMS).len(), 0, "busy");
    // Node 2 has it and advertises it: node 1 asks node 2 at once, no timer needed.
    net.nodes[2]
        .broadcast(msg_type::TRX, t.clone(), now)
        .accepted();
    net.pump();
    assert_eq!(net.sent(1, 2, msg_type::FETCH_ITEMS).len(), 1);
    assert!(has(&net, 1, msg_type::TRX, &t));
}

// ----- found by the node_events fuzz target ----------------------------------------------------

#[test]
fn a_repeated_key_exchange_report_is_ignored() {
    let mut net = line(2);
    let peer = net.nodes[1].peers().next().unwrap().id;
    let now = net.now;
    let digest = [7; 32];
    net.nodes[1].on_established(peer, listen_endpoint(1), digest, now);
    // No second hello, and the finished handshake stays finished.
    assert_eq!(net.nodes[1].poll_command(), None);
    let p = net.nodes[1].peer(peer).unwrap();
    assert_eq!(p.our_state, crate::peer::OurHelloState::Accepted);
    assert_eq!(p.list, ConnectionList::Active);
    assert_eq!(net.nodes[1].check_invariants(), Ok(()));
}

#[test]
fn a_dial_failure_reported_for_a_connected_peer_releases_it_as_a_close() {
    let mut net = line(2);
    let peer = net.nodes[1].peers().next().unwrap().id;
    let now = net.now;
    let item = ItemId {
        item_type: msg_type::TRX,
        item_hash: crate::wire::message::message_hash(&trx(1)),
    };
    // An item in flight from the peer, as fetch_items records it.
    let node = &mut net.nodes[1];
    node.fetch.add(item, peer, now);
    node.fetch.mark_requested(item, peer);
    node.peers
        .get_mut(&peer)
        .unwrap()
        .items_requested
        .insert(item, now);
    node.on_dial_failed(peer, "reset", now);
    assert!(node.peer(peer).is_none());
    assert!(
        node.fetch.requested_from(&item) != Some(peer),
        "the request went with the peer"
    );
    assert_eq!(node.check_invariants(), Ok(()));
    // The peer database does not count a dial failure against it.
    let r = node.peer_db().get(&listen_endpoint(0)).unwrap();
    assert_eq!(r.number_of_failed_connection_attempts, 0);
}

#[test]
fn a_node_that_catches_up_by_sync_tells_its_in_sync_peers() {
    // b and c are in sync at block 0; then b meets a, which has 10 blocks, and syncs them. No
    // new block follows, so no gossip will tell c: b itself must.
    let mut net = SimNet::new();
    let mut c = cfg();
    c.connect_to_new_peers = false;
    let a = net.add_node(c.clone(), test_node_id(1));
    let b = net.add_node(c.clone(), test_node_id(2));
    let behind = net.add_node(c, test_node_id(3));
    let blocks = make_test_chain(Ripemd160::default(), 10, 1_600_000_000);
    connect(&mut net, behind, b);
    net.advance(SECOND_US);
    let now = net.now;
    for blk in &blocks {
        net.nodes[a]
            .broadcast(msg_type::BLOCK, blk.clone(), now)
            .accepted();
    }
    connect(&mut net, b, a);
    net.advance(5 * SECOND_US);
    assert_eq!(net.nodes[b].delegate().head().number, 10);
    assert_eq!(net.nodes[behind].delegate().head().number, 10);
    assert!(
        !net.sent(b, behind, msg_type::FETCH_BLOCKCHAIN_ITEM_IDS)
            .is_empty(),
        "b restarted sync with its in-sync peer"
    );
}

// ----- durability off the node task ------------------------------------------------------------

/// Two connected nodes whose stores take `latency` to commit, in sync with each other.
fn pair_with_slow_disks(latency: i64) -> (SimNet, usize, usize) {
    let mut net = SimNet::new();
    net.commit_latency_us = latency;
    let mut c = cfg();
    c.connect_to_new_peers = false;
    let a = net.add_node(c.clone(), test_node_id(1));
    let b = net.add_node(c, test_node_id(2));
    connect(&mut net, a, b);
    net.advance(SECOND_US);
    assert_eq!(net.nodes[a].connection_counts().active, 1);
    (net, a, b)
}

fn advertised(net: &SimNet, from: usize, to: usize, hash: &crate::wire::types::ItemHash) -> usize {
    net.sent(from, to, msg_type::ITEM_IDS_INVENTORY)
        .iter()
        .filter(
            |m| matches!(m, Message::ItemIdsInventory(m) if m.item_hashes_available.contains(hash)),
        )
        .count()
}

#[test]
fn nothing_is_advertised_before_its_commit_completes() {
    let latency = 50_000;
    let (mut net, a, b) = pair_with_slow_disks(latency);
    let t = trx(1);
    let block =
        crate::app::relay_store::make_test_chain(Default::default(), 1, 1_600_000_000).remove(0);
    let now = net.now;
    let trx_hash = net.nodes[a].broadcast(msg_type::TRX, t, now).accepted();
    let block_hash = net.nodes[a]
        .broadcast(msg_type::BLOCK, block, now)
        .accepted();
    net.pump();
    // Accepted and readable at once, but neither advertised nor the reported head.
    assert!(net.nodes[a].delegate().has_item(&ItemId {
        item_type: msg_type::BLOCK,
        item_hash: block_hash,
    }));
    assert_eq!(net.nodes[a].delegate().accepted_head().number, 1);
    assert_eq!(net.nodes[a].delegate().head().number, 0);
    assert_eq!(net.nodes[a].info(net.now).head_block_number, 0);
    // Timers run meanwhile (the advertisement batch is 5 ms): still nothing.
    net.advance(latency - 1);
    assert_eq!(advertised(&net, a, b, &trx_hash), 0);
    assert_eq!(advertised(&net, a, b, &block_hash), 0);
    // The commit completes: both advertised, once, and b fetches them.
    net.advance(2);
    assert_eq!(advertised(&net, a, b, &trx_hash), 1);
    assert_eq!(advertised(&net, a, b, &block_hash), 1);
    assert_eq!(net.nodes[a].delegate().head().number, 1);
    net.advance(SECOND_US);
    assert_eq!(net.nodes[b].delegate().accepted_head().number, 1);
    assert!(net.nodes[b].delegate().has_item(&ItemId {
        item_type: msg_type::TRX,
        item_hash: trx_hash,
    }));
    assert_no_violations(&net);
}

#[test]
fn a_kill_before_the_commit_loses_only_what_nobody_heard_of() {
    let latency = 50_000;
    let (mut net, a, b) = pair_with_slow_disks(latency);
    let t = trx(2);
    let now = net.now;
    let hash = net.nodes[a]
        .broadcast(msg_type::TRX, t.clone(), now)
        .accepted();
    net.advance(latency / 2);
    net.kill(a);
    net.advance(latency);
    net.restart(a, test_node_id(9));
    net.advance(SECOND_US);
    // Lost with the process, and never advertised: nobody can ask a for it.
    assert!(!has(&net, a, msg_type::TRX, &t));
    assert_eq!(advertised(&net, a, b, &hash), 0);
    assert!(!has(&net, b, msg_type::TRX, &t));
    // What is advertised survives a kill right after.
    connect(&mut net, a, b);
    net.advance(SECOND_US);
    let now = net.now;
    net.nodes[a]
        .broadcast(msg_type::TRX, t.clone(), now)
        .accepted();
    net.advance(latency + 1);
    assert_eq!(advertised(&net, a, b, &hash), 1);
    net.kill(a);
    net.restart(a, test_node_id(10));
    assert!(has(&net, a, msg_type::TRX, &t));
}

#[test]
fn a_saturated_store_stops_sync_until_commits_catch_up() {
    let mut net = SimNet::new();
    let mut c = cfg();
    c.connect_to_new_peers = false;
    let a = net.add_node(c.clone(), test_node_id(1));
    let blocks = crate::app::relay_store::make_test_chain(Default::default(), 2000, 1_600_000_000);
    let now = net.now;
    for blk in &blocks {
        net.nodes[a]
            .broadcast(msg_type::BLOCK, blk.clone(), now)
            .accepted();
    }
    net.pump();
    assert_eq!(net.nodes[a].delegate().head().number, 2000);
    // The late node's commits run only when the test says so; two batches may wait.
    let mut store = crate::app::relay_store::RelayStore::with_backend_deferred(
        redb::backends::InMemoryBackend::new(),
        c.chain_id,
    )
    .unwrap();
    store.set_not_durable_limits(usize::MAX, 2);
    let commits = store.commit_queue();
    let late = net.add_node_with_delegate(
        c,
        test_node_id(2),
        crate::store::peer_db::PeerDatabase::new(),
        Box::new(store),
    );
    connect(&mut net, late, a);
    net.advance(5 * SECOND_US);
    // Three batches accepted, none durable: saturated, so no more are handed over, and the
    // received blocks stop at the prefetch limit.
    let accepted = net.nodes[late].delegate().accepted_head().number;
    assert!(net.nodes[late].delegate().saturated());
    assert!(accepted > 0 && accepted <= 3 * MAX_BLOCKS_TO_HANDLE_AT_ONCE as u32);
    assert_eq!(net.nodes[late].delegate().head().number, 0);
    let fetched = net.sent(a, late, msg_type::BLOCK).len();
    assert!(fetched <= accepted as usize + MAX_SYNC_BLOCKS_TO_PREFETCH);
    net.advance(5 * SECOND_US);
    assert_eq!(net.nodes[late].delegate().accepted_head().number, accepted);
    assert_eq!(net.sent(a, late, msg_type::BLOCK).len(), fetched);
    // Commits catch up: sync goes on to the end.
    for _ in 0..100 {
        if net.nodes[late].delegate().head().number == 2000 {
            break;
        }
        commits.run().unwrap();
        net.with_node(late, |n, now| n.on_durable(now));
        net.advance(SECOND_US / 10);
    }
    assert_eq!(net.nodes[late].delegate().head().number, 2000);
    assert_no_violations(&net);
}
