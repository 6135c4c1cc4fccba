//! Policy tests on the simulated network: every timer is driven by passing time.

use super::config::*;
use super::sim::{SimNet, listen_endpoint, test_node_id};
use super::*;
use crate::wire::message::msg_type;

fn cfg() -> NodeConfig {
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
    // A 2 MiB block trickling in at 16 KiB a second for longer than the inactivity timeout.
    let total = cfg().active_inactivity_timeout_us() * 2;
    let mut t = 0;
    while t < total {
        net.advance(SECOND_US);
        t += SECOND_US;
        let now = net.now;
        net.nodes[a].on_bytes_received(peer, 16 * 1024, now);
    }
    assert_eq!(counts(&net, a).active, 1);
    // Without the trickle the same silence disconnects.
    net.advance(total);
    assert_eq!(counts(&net, a).active, 0);
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
            .unwrap();
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
            .unwrap();
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
        .unwrap();
    net.pump();
    net.advance(SECOND_US);
    assert!(has(&net, 2, msg_type::TRX, &t));
    // Each hop fetched it once, and nobody advertised it back to its source.
    assert_eq!(net.sent(1, 0, msg_type::ITEM_IDS_INVENTORY).len(), 0);
    assert_eq!(net.sent(1, 2, msg_type::ITEM_IDS_INVENTORY).len(), 1);
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
            .unwrap();
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
                .unwrap();
        }
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
        .unwrap();
    net.mute.push(silent);
    net.pump();
    let now = net.now;
    net.nodes[honest]
        .broadcast(msg_type::TRX, t.clone(), now)
        .unwrap();
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
}

#[test]
fn a_block_before_its_parent_is_held_then_accepted() {
    let mut net = line(2);
    let blocks = make_test_chain(Ripemd160::default(), 3, 1_600_000_000);
    let now = net.now;
    net.nodes[0]
        .broadcast(msg_type::BLOCK, blocks[0].clone(), now)
        .unwrap();
    net.pump();
    net.advance(SECOND_US);
    assert_eq!(net.nodes[1].delegate().head().number, 1);
    // Block 3 before block 2: held, nobody disconnected.
    let now = net.now;
    net.nodes[0]
        .broadcast(msg_type::BLOCK, blocks[2].clone(), now)
        .unwrap();
    net.nodes[0]
        .broadcast(msg_type::BLOCK, blocks[1].clone(), now)
        .unwrap();
    net.pump();
    net.advance(SECOND_US);
    assert_eq!(net.nodes[0].delegate().head().number, 3);
    assert_eq!(net.nodes[1].delegate().head().number, 3);
    assert_eq!(counts(&net, 1).active, 1, "no peer blamed");
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
            .unwrap();
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
