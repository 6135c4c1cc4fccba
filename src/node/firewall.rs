//! Firewall checks and connection reports (messages 5014-5017), in every role the reference
//! once played: asking a peer whether we are reachable, relaying a peer's "check me" to a helper,
//! testing a third node for someone, relaying replies, and answering get_current_connections.
//!
//! The current reference ignores these messages (they were removed from node.cpp in 2019); we
//! implement them as the protocol defines them, and fix two flaws of the old code: a check from a
//! peer whose hello we have not seen is refused instead of being mistaken for our own, and a
//! relay records the tested endpoint (not the helper's) in the peer database.

use tracing::{debug, info};

use super::config::{FIREWALL_CHECK_INTERVAL_US, FIREWALL_CHECK_MIN_PROTOCOL, MAX_FIREWALL_PROBES};
use super::{FirewallCheckResultKind, Node};
use crate::peer::{ConnectionList, FirewallCheck, PeerId};
use crate::wire::Message;
use crate::wire::message::{
    CheckFirewallMessage, CheckFirewallReplyMessage, CurrentConnectionData,
    GetCurrentConnectionsReplyMessage,
};
use crate::wire::types::{
    Direction, Endpoint, FirewallCheckResult, FirewalledState, Microseconds, NodeId, TimePoint,
};
use crate::wire::variant::Variant;

impl Node {
    /// After a peer accepted our hello: ask it whether we are reachable, at most every 5 minutes
    /// and only while we do not know.
    pub(super) fn maybe_check_own_firewall(&mut self, peer: PeerId, now: TimePoint) {
        if self.firewalled != FirewalledState::Unknown
            || now.0 - self.last_firewall_check < FIREWALL_CHECK_INTERVAL_US
            || !self.config.accept_incoming_connections
        {
            return;
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.protocol_version() < FIREWALL_CHECK_MIN_PROTOCOL || p.firewall_check.is_some() {
            return;
        }
        p.firewall_check = Some(FirewallCheck {
            expected_node_id: NodeId::default(),
            endpoint_to_test: Endpoint::default(),
            nodes_already_tested: Default::default(),
            requesting_peer: None,
        });
        self.last_firewall_check = now.0;
        debug!(endpoint = %p.remote_endpoint, "asking peer whether we are firewalled");
        self.send(
            peer,
            Message::CheckFirewall(CheckFirewallMessage {
                node_id: NodeId::default(),
                endpoint_to_check: Endpoint::default(),
            }),
            now,
        );
    }

    fn send_unable_to_check(
        &mut self,
        peer: PeerId,
        node_id: NodeId,
        endpoint: Endpoint,
        now: TimePoint,
    ) {
        self.send(
            peer,
            Message::CheckFirewallReply(CheckFirewallReplyMessage {
                node_id,
                endpoint_checked: endpoint,
                result: FirewallCheckResult::UnableToCheck,
            }),
            now,
        );
    }

    pub(super) fn on_check_firewall(
        &mut self,
        peer: PeerId,
        m: CheckFirewallMessage,
        now: TimePoint,
    ) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let check_me = m.node_id == NodeId::default() && m.endpoint_to_check == Endpoint::default();
        if check_me {
            let Some(requester) = p.node_id else {
                // No hello yet: we do not know who asks, so we cannot route the answer.
                self.send_unable_to_check(peer, m.node_id, p.remote_endpoint, now);
                return;
            };
            let mut endpoint = p.remote_endpoint;
            if let Some(h) = &p.hello
                && h.inbound_endpoint.port != h.outbound_port
            {
                endpoint.port = h.inbound_endpoint.port;
            }
            if !self.config.advertise.should_advertise(&endpoint) {
                self.send_unable_to_check(peer, m.node_id, endpoint, now);
                return;
            }
            info!(%endpoint, "peer asks whether it is firewalled");
            let check = FirewallCheck {
                expected_node_id: requester,
                endpoint_to_test: endpoint,
                nodes_already_tested: Default::default(),
                requesting_peer: Some(requester),
            };
            self.forward_firewall_check(check, now);
            return;
        }
        // Someone asks us to test a third node: only a peer we accepted, only one probe per
        // requester and a few in all, so nobody can use us to scan or exhaust sockets.
        let requester = match p.node_id {
            Some(r) if p.their_state == crate::peer::TheirHelloState::Accepted => r,
            _ => {
                self.send_unable_to_check(peer, m.node_id, m.endpoint_to_check, now);
                return;
            }
        };
        let probes = self.peers.values().filter_map(|q| q.probe_for.as_ref());
        let (mut total, mut theirs) = (0, 0);
        for probe in probes {
            total += 1;
            theirs += usize::from(probe.requesting_peer == Some(requester));
        }
        if total >= MAX_FIREWALL_PROBES || theirs > 0 {
            self.send_unable_to_check(peer, m.node_id, m.endpoint_to_check, now);
            return;
        }
        let known = m.node_id == self.node_id
            || self.peers.values().any(|q| {
                q.list != ConnectionList::Closing
                    && (q.node_id == Some(m.node_id) || q.remote_endpoint == m.endpoint_to_check)
            });
        let banned = self.banned(&m.endpoint_to_check, now);
        if !self.config.connect_to_new_peers || known || banned || m.endpoint_to_check.port == 0 {
            self.send_unable_to_check(peer, m.node_id, m.endpoint_to_check, now);
            return;
        }
        let probe = self.new_peer(Direction::Outbound, m.endpoint_to_check, now);
        if let Some(q) = self.peers.get_mut(&probe) {
            q.probe_for = Some(FirewallCheck {
                expected_node_id: m.node_id,
                endpoint_to_test: m.endpoint_to_check,
                nodes_already_tested: Default::default(),
                requesting_peer: Some(requester),
            });
        }
        debug!(endpoint = %m.endpoint_to_check, "testing reachability for a peer");
        self.commands.push_back(super::Command::Dial {
            peer: probe,
            endpoint: m.endpoint_to_check,
        });
    }

    /// Hands a check to the next active peer able to test it, or answers "unable to check".
    pub(super) fn forward_firewall_check(&mut self, mut check: FirewallCheck, now: TimePoint) {
        let helper = if self.config.advertise == super::AdvertiseAlgorithm::Nothing {
            None
        } else {
            self.peers
                .values()
                .find(|q| {
                    q.list == ConnectionList::Active
                        && q.node_id.is_some_and(|n| {
                            n != check.expected_node_id && !check.nodes_already_tested.contains(&n)
                        })
                        && q.firewall_check.is_none()
                        && self.config.advertise.should_advertise(&q.remote_endpoint)
                        && q.protocol_version() >= FIREWALL_CHECK_MIN_PROTOCOL
                })
                .map(|q| q.id)
        };
        match helper {
            Some(h) => {
                let message = CheckFirewallMessage {
                    node_id: check.expected_node_id,
                    endpoint_to_check: check.endpoint_to_test,
                };
                if let Some(q) = self.peers.get_mut(&h) {
                    if let Some(n) = q.node_id {
                        check.nodes_already_tested.insert(n);
                    }
                    q.firewall_check = Some(check);
                }
                self.send(h, Message::CheckFirewall(message), now);
            }
            None => {
                if let Some(target) = self.peer_by_node_id(&check.expected_node_id, 0) {
                    self.send_unable_to_check(
                        target,
                        check.expected_node_id,
                        check.endpoint_to_test,
                        now,
                    );
                }
            }
        }
    }

    /// A probe connection for someone else's check ended.
    pub(super) fn finish_probe(
        &mut self,
        probe: PeerId,
        outcome: FirewallCheckResultKind,
        now: TimePoint,
    ) {
        let Some(check) = self.peers.get_mut(&probe).and_then(|p| p.probe_for.take()) else {
            return;
        };
        let result = match outcome {
            FirewallCheckResultKind::Success => FirewallCheckResult::ConnectionSuccessful,
            FirewallCheckResultKind::Unreachable => FirewallCheckResult::UnableToConnect,
        };
        if let Some(requester) = check
            .requesting_peer
            .and_then(|r| self.peer_by_node_id(&r, probe))
        {
            self.send(
                requester,
                Message::CheckFirewallReply(CheckFirewallReplyMessage {
                    node_id: check.expected_node_id,
                    endpoint_checked: check.endpoint_to_test,
                    result,
                }),
                now,
            );
        }
        // Keep the peer marked as a probe until its socket is gone, so it never counts as a
        // connection.
        if let Some(p) = self.peers.get_mut(&probe) {
            p.probe_for = Some(check);
        }
        if outcome == FirewallCheckResultKind::Success {
            self.close_now(probe, now);
        }
    }

    pub(super) fn on_check_firewall_reply(
        &mut self,
        peer: PeerId,
        m: CheckFirewallReplyMessage,
        now: TimePoint,
    ) {
        let Some(check) = self
            .peers
            .get_mut(&peer)
            .and_then(|p| p.firewall_check.take())
        else {
            debug!("firewall check reply to a request we never sent");
            return;
        };
        match check.requesting_peer {
            None => match m.result {
                FirewallCheckResult::ConnectionSuccessful => {
                    // A helper could lie about where it reached us; only an endpoint on our own
                    // listening port is worth advertising in hello.
                    let listen_port = self.listen_endpoint.map(|l| l.port);
                    if Some(m.endpoint_checked.port) == listen_port {
                        info!(public_endpoint = %m.endpoint_checked, "we are reachable from outside");
                        self.firewalled = FirewalledState::NotFirewalled;
                        self.public_endpoint = Some(m.endpoint_checked);
                    }
                }
                FirewallCheckResult::UnableToConnect => {
                    info!("we are firewalled");
                    self.firewalled = FirewalledState::Firewalled;
                    self.public_endpoint = None;
                }
                _ => {}
            },
            Some(requester) => {
                if m.result == FirewallCheckResult::UnableToCheck
                    || matches!(m.result, FirewallCheckResult::Other(_))
                {
                    self.forward_firewall_check(check, now);
                    return;
                }
                let Some(original) = self.peer_by_node_id(&requester, peer) else {
                    return;
                };
                if m.result == FirewallCheckResult::ConnectionSuccessful {
                    if let Some(o) = self.peers.get_mut(&original) {
                        o.firewalled = FirewalledState::NotFirewalled;
                    }
                    self.db.saw(check.endpoint_to_test, now);
                }
                self.send(original, Message::CheckFirewallReply(m), now);
            }
        }
    }

    pub(super) fn on_get_current_connections(&mut self, peer: PeerId, now: TimePoint) {
        let rates = self.bandwidth.rates();
        let current_connections = if self.config.advertise == super::AdvertiseAlgorithm::Nothing {
            Vec::new()
        } else {
            self.peers
                .values()
                .filter(|q| q.list == ConnectionList::Active)
                .filter(|q| self.config.advertise.should_advertise(&q.remote_endpoint))
                .map(|q| {
                    let mut user_data = crate::wire::variant::VariantObject::new();
                    if let Some(h) = &q.hello {
                        for key in [
                            "fc_git_revision_sha",
                            "fc_git_revision_unix_timestamp",
                            "platform",
                            "bitness",
                        ] {
                            if let Some(v) = h.user_data.get(key) {
                                user_data.set(key, v.clone());
                            }
                        }
                        user_data.set("user_agent", Variant::String(h.user_agent.clone()));
                        for key in [
                            "last_known_block_hash",
                            "last_known_block_number",
                            "last_known_block_time",
                        ] {
                            if let Some(v) = h.user_data.get(key) {
                                user_data.set(key, v.clone());
                            }
                        }
                    }
                    CurrentConnectionData {
                        connection_duration: u32::try_from((now.0 - q.initiated_at.0) / 1_000_000)
                            .unwrap_or(0),
                        remote_endpoint: q.remote_endpoint,
                        node_id: q.node_id.unwrap_or_default(),
                        clock_offset: Microseconds(q.clock_offset_us),
                        round_trip_delay: Microseconds(q.round_trip_delay_us),
                        connection_direction: q.direction,
                        firewalled: q.firewalled,
                        user_data,
                    }
                })
                .collect()
        };
        let reply = GetCurrentConnectionsReplyMessage {
            upload_rate_one_minute: rates.upload_one_minute,
            download_rate_one_minute: rates.download_one_minute,
            upload_rate_fifteen_minutes: rates.upload_fifteen_minutes,
            download_rate_fifteen_minutes: rates.download_fifteen_minutes,
            upload_rate_one_hour: rates.upload_one_hour,
            download_rate_one_hour: rates.download_one_hour,
            current_connections,
        };
        self.send(peer, Message::GetCurrentConnectionsReply(reply), now);
    }
}
