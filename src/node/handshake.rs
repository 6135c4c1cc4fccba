//! The handshake after the key exchange: our hello, the rules for the peer's hello
//! (node.cpp's on_hello_message), connection_accepted / connection_rejected, the address
//! exchange that completes it, and activation.

use tracing::{debug, info};

use super::bans::Violation;
use super::config::*;
use super::{AdvertiseAlgorithm, Node, is_public_address};
use crate::peer::{ConnectionList, OurHelloState, PeerHello, PeerId, TheirHelloState};
use crate::store::peer_db::Disposition;
use crate::wire::Message;
use crate::wire::message::*;
use crate::wire::types::{
    CompactSignatureBytes, Direction, Endpoint, FirewalledState, IpAddress, NodeId,
    RejectionReason, TimePoint, TimePointSec,
};
use crate::wire::variant::{Variant, VariantObject};

impl Node {
    // ----- hello -----------------------------------------------------------------------------

    pub(super) fn build_hello(&self, peer: PeerId, hello_digest: [u8; 32]) -> HelloMessage {
        let p = &self.peers[&peer];
        let (inbound_address, inbound_port, outbound_port) =
            if !self.config.accept_incoming_connections {
                (IpAddress(0), 0, 0)
            } else if let Some(inbound) = self.config.inbound_endpoint {
                // The operator's word wins, as in the reference.
                let local = p.local_endpoint.unwrap_or_default();
                let address = if inbound.address.0 == 0 {
                    local.address
                } else {
                    inbound.address
                };
                (address, inbound.port, local.port)
            } else if let (FirewalledState::NotFirewalled, Some(public)) =
                (self.firewalled, self.public_endpoint)
            {
                (public.address, public.port, public.port)
            } else {
                let local = p.local_endpoint.unwrap_or_default();
                let listen_port = self.listen_endpoint.map_or(0, |e| e.port);
                (local.address, listen_port, local.port)
            };
        HelloMessage {
            user_agent: self.config.user_agent.clone(),
            core_protocol_version: CORE_PROTOCOL_VERSION,
            inbound_address,
            inbound_port,
            outbound_port,
            node_public_key: NodeId(*self.key.public_key()),
            signed_shared_secret: CompactSignatureBytes(self.key.sign_compact(&hello_digest)),
            chain_id: self.config.chain_id,
            user_data: self.hello_user_data(),
        }
    }

    /// The user_data fields a real node sends, in its order.
    pub fn hello_user_data(&self) -> VariantObject {
        let head = self.delegate.head();
        let mut d = VariantObject::new();
        d.set(
            "fc_git_revision_sha",
            Variant::String(format!("grapevine-{}", env!("CARGO_PKG_VERSION"))),
        );
        d.set(
            "fc_git_revision_unix_timestamp",
            Variant::Uint64(RELEASE_UNIX_TIME),
        );
        d.set("platform", Variant::String(platform().into()));
        d.set("bitness", Variant::Uint64(usize::BITS.into()));
        d.set("node_id", Variant::String(self.node_id.to_string()));
        d.set(
            "last_known_block_hash",
            Variant::String(head.block_id.to_string()),
        );
        d.set(
            "last_known_block_number",
            Variant::Uint64(head.number.into()),
        );
        d.set(
            "last_known_block_time",
            Variant::String(head.time.to_string()),
        );
        d
    }

    pub(super) fn peer_by_node_id(&self, node_id: &NodeId, except: PeerId) -> Option<PeerId> {
        let find = |list| {
            self.peers
                .values()
                .find(|p| p.id != except && p.list == list && p.node_id.as_ref() == Some(node_id))
                .map(|p| p.id)
        };
        find(ConnectionList::Active).or_else(|| find(ConnectionList::Handshaking))
    }

    /// Connections whose hello we accepted: what `max_connections` bounds. Counting accepted
    /// hellos rather than sockets means a burst of dialers cannot get everyone rejected.
    pub(super) fn accepted_connections(&self) -> usize {
        self.peers
            .values()
            .filter(|p| {
                p.list != ConnectionList::Closing && p.their_state == TheirHelloState::Accepted
            })
            .count()
    }

    pub(super) fn on_hello(
        &mut self,
        peer: PeerId,
        hello: HelloMessage,
        hello_digest: Option<[u8; 32]>,
        now: TimePoint,
    ) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        // 1. state
        if p.their_state != TheirHelloState::Waiting {
            self.misbehaved(peer, Violation::DuplicateHello, now);
            self.disconnect(peer, "Received an unexpected hello_message", false, now);
            return;
        }
        let direction = p.direction;
        let remote = p.remote_endpoint;
        // 2. chain id
        if hello.chain_id != self.config.chain_id {
            if direction == Direction::Outbound {
                self.greatly_delay(remote, now);
            }
            let text = format!(
                "You're on a different chain than I am.  I'm on {} and you're on {}",
                self.config.chain_id, hello.chain_id
            );
            self.reject(peer, RejectionReason::DifferentChain, &text, now);
            self.disconnect(peer, "You are on a different chain from me", false, now);
            return;
        }
        // 3. signature over SHA-256 of the shared secret
        let valid = hello_digest.is_some_and(|d| {
            crate::crypto::identity::verify_compact(
                &hello.signed_shared_secret.0,
                &d,
                &hello.node_public_key.0,
            )
        });
        if !valid {
            let text = "Invalid signature in hello message";
            self.misbehaved(peer, Violation::InvalidHelloSignature, now);
            self.reject(peer, RejectionReason::InvalidHelloMessage, text, now);
            self.disconnect(peer, text, false, now);
            return;
        }
        // 4. node id: user_data's if it parses, else the public key
        let node_id = hello
            .user_data
            .get("node_id")
            .and_then(Variant::as_str)
            .and_then(|s| s.parse::<NodeId>().ok())
            .unwrap_or(hello.node_public_key);
        if node_id == NodeId::default() {
            self.disconnect(
                peer,
                "Your node_id in the hello_message is null",
                false,
                now,
            );
            return;
        }
        // 5. ourselves (never scored: a node reaching itself through another address is a
        // misconfiguration, not an attack)
        if node_id == self.node_id {
            if direction == Direction::Outbound {
                self.greatly_delay(remote, now);
            }
            let text = "I'm connecting to myself";
            self.reject(peer, RejectionReason::ConnectedToSelf, text, now);
            self.disconnect(peer, text, false, now);
            return;
        }
        let duplicate = self.peer_by_node_id(&node_id, peer);
        let info = PeerHello::from(&hello);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.node_id = Some(node_id);
            if p.remote_inbound_endpoint.is_none() {
                // An inbound peer: where it says it listens, checked against what we see.
                let observed = p.remote_endpoint.address;
                let claimed = info.inbound_endpoint;
                p.remote_inbound_endpoint = Some(if claimed.port == 0 {
                    Endpoint {
                        address: observed,
                        port: 0,
                    }
                } else if is_public_address(claimed.address.to_ipv4())
                    || claimed.address == observed
                {
                    claimed
                } else {
                    p.remote_endpoint
                });
            }
            p.hello = Some(info.clone());
        }
        // 6. duplicate node id
        if let Some(existing) = duplicate {
            self.record_dial_back(existing, peer, &info, now);
            let text = "I'm already connected to you";
            self.reject(peer, RejectionReason::AlreadyConnected, text, now);
            self.disconnect(peer, text, false, now);
            return;
        }
        // 7. capacity
        if direction == Direction::Inbound {
            self.note_inbound_endpoints(peer, &info);
        }
        if self.accepted_connections() >= self.config.max_connections {
            self.reject(
                peer,
                RejectionReason::NotAcceptingConnections,
                "not accepting any more incoming connections",
                now,
            );
            return;
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.their_state = TheirHelloState::Accepted;
        }
        self.send(
            peer,
            Message::ConnectionAccepted(ConnectionAcceptedMessage {}),
            now,
        );
    }

    /// An inbound peer's possible listening endpoints, to be dialled back once it is active.
    pub(super) fn note_inbound_endpoints(&mut self, peer: PeerId, info: &PeerHello) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if info.inbound_endpoint.port == 0 {
            p.firewalled = FirewalledState::Firewalled;
            return;
        }
        let observed = p.remote_endpoint;
        let candidates = [
            info.inbound_endpoint,
            observed,
            Endpoint {
                address: observed.address,
                port: info.inbound_endpoint.port,
            },
        ];
        for ep in candidates {
            // The reference also records 0.0.0.0 and port 0; they can never be dialled.
            if ep.port != 0 && ep.address.0 != 0 && !p.potential_inbound_endpoints.contains(&ep) {
                p.potential_inbound_endpoints.push(ep);
            }
        }
    }

    /// Our dial-back reached a node we already know by an inbound connection: the endpoint is
    /// proven, and the existing connection is not firewalled.
    pub(super) fn record_dial_back(
        &mut self,
        existing: PeerId,
        new: PeerId,
        info: &PeerHello,
        now: TimePoint,
    ) {
        let Some(n) = self.peers.get(&new) else {
            return;
        };
        if n.direction != Direction::Outbound {
            return;
        }
        let ep = n.remote_endpoint;
        let Some(e) = self.peers.get_mut(&existing) else {
            return;
        };
        if e.hello.as_ref().map(|h| h.node_public_key) != Some(info.node_public_key) {
            return;
        }
        e.additional_inbound_endpoints.insert(ep);
        let current_public = e
            .remote_inbound_endpoint
            .is_some_and(|c| is_public_address(c.address.to_ipv4()));
        if e.firewalled != FirewalledState::NotFirewalled
            || is_public_address(ep.address.to_ipv4())
            || !current_public
        {
            e.remote_inbound_endpoint = Some(ep);
            e.firewalled = FirewalledState::NotFirewalled;
        }
        if e.list == ConnectionList::Active {
            self.save_successful_address(ep, now);
        }
    }

    pub(super) fn greatly_delay(&mut self, endpoint: Endpoint, now: TimePoint) {
        self.db.update(&endpoint, |r| {
            r.last_connection_disposition = Disposition::LastConnectionRejected;
            r.last_connection_attempt_time = now;
            r.number_of_failed_connection_attempts = r
                .number_of_failed_connection_attempts
                .saturating_add(GREATLY_DELAY_FAILURES);
        });
    }

    pub(super) fn save_successful_address(&mut self, endpoint: Endpoint, now: TimePoint) {
        let r = self.db.entry(endpoint);
        r.last_connection_disposition = Disposition::LastConnectionSucceeded;
        r.last_connection_attempt_time = now;
        r.number_of_failed_connection_attempts /= 2;
        r.last_seen_time = now;
    }

    pub(super) fn on_connection_accepted(&mut self, peer: PeerId, now: TimePoint) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.our_state != OurHelloState::Sent {
            debug!(endpoint = %p.remote_endpoint, "ignoring unexpected connection_accepted");
            return;
        }
        p.our_state = OurHelloState::Accepted;
        p.expecting_address_message = true;
        self.send(peer, Message::AddressRequest(AddressRequestMessage {}), now);
        self.maybe_check_own_firewall(peer, now);
    }

    pub(super) fn on_connection_rejected(
        &mut self,
        peer: PeerId,
        m: ConnectionRejectedMessage,
        now: TimePoint,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.our_state != OurHelloState::Sent {
            self.disconnect(
                peer,
                "Received an unexpected connection_rejected_message",
                false,
                now,
            );
            return;
        }
        p.our_state = OurHelloState::Rejected;
        let remote = p.remote_endpoint;
        info!(endpoint = %remote, reason = %m.reason_code, text = %m.reason_string, "peer rejected our hello");
        match m.reason_code {
            RejectionReason::ConnectedToSelf | RejectionReason::DifferentChain => {
                self.greatly_delay(remote, now);
                self.close_now(peer, now);
            }
            _ => {
                self.db.update(&remote, |r| {
                    r.last_connection_disposition = Disposition::LastConnectionRejected;
                    r.last_connection_attempt_time = now;
                });
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.expecting_address_message = true;
                }
                // Still learn its peers before leaving: a rejected newcomer is not stranded.
                self.send(peer, Message::AddressRequest(AddressRequestMessage {}), now);
            }
        }
    }

    // ----- addresses -------------------------------------------------------------------------

    /// What we tell peers about: active peers with a known listening endpoint.
    pub fn address_list(&self, now: TimePoint) -> Vec<AddressInfo> {
        if self.config.advertise == AdvertiseAlgorithm::Nothing {
            return Vec::new();
        }
        self.peers
            .values()
            .filter(|p| p.list == ConnectionList::Active)
            .filter_map(|p| {
                let ep = p.remote_inbound_endpoint?;
                if !self.config.advertise.should_advertise(&ep) {
                    return None;
                }
                Some(AddressInfo {
                    remote_endpoint: ep,
                    last_seen_time: TimePointSec(u32::try_from(now.0 / SECOND_US).unwrap_or(0)),
                    latency: crate::wire::types::Microseconds(p.round_trip_delay_us),
                    node_id: p.node_id.unwrap_or_default(),
                    direction: p.direction,
                    firewalled: p.firewalled,
                })
            })
            .collect()
    }

    pub(super) fn on_address_request(&mut self, peer: PeerId, now: TimePoint) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        if p.their_state == TheirHelloState::Waiting {
            self.disconnect(
                peer,
                "Received an unexpected address_request_message",
                false,
                now,
            );
            return;
        }
        let rejected = p.their_state == TheirHelloState::Rejected;
        let addresses = self.address_list(now);
        for a in &addresses {
            if a.remote_endpoint.port != 0 {
                self.db
                    .update(&a.remote_endpoint, |r| r.last_seen_time = now);
            }
        }
        self.send(peer, Message::Address(AddressMessage { addresses }), now);
        if rejected {
            self.disconnect(
                peer,
                "I rejected your connection request (hello message) so I'm disconnecting",
                false,
                now,
            );
        }
    }

    pub(super) fn on_address(&mut self, peer: PeerId, m: AddressMessage, now: TimePoint) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !p.expecting_address_message {
            debug!(endpoint = %p.remote_endpoint, "ignoring unrequested address message");
            return;
        }
        p.expecting_address_message = false;
        let (list, our_state, their_state, direction, remote) = (
            p.list,
            p.our_state,
            p.their_state,
            p.direction,
            p.remote_endpoint,
        );
        if self.config.connect_to_new_peers {
            let mut changed = false;
            for a in m
                .addresses
                .iter()
                .filter(|a| a.remote_endpoint.port != 0)
                .take(MAX_ADDRESSES_TO_HANDLE_AT_ONCE)
            {
                if Some(a.remote_endpoint) == self.listen_endpoint {
                    continue;
                }
                changed |= self.db.saw(a.remote_endpoint, now);
            }
            if changed {
                self.db.prune();
                self.trigger_connect_loop(now);
            }
        }
        if list != ConnectionList::Handshaking {
            return;
        }
        if our_state == OurHelloState::Rejected {
            self.disconnect(
                peer,
                "You rejected my connection request (hello message) so I'm disconnecting",
                false,
                now,
            );
        } else if their_state == TheirHelloState::Rejected {
            self.disconnect(
                peer,
                "I rejected your connection request (hello message) so I'm disconnecting",
                false,
                now,
            );
        } else if our_state == OurHelloState::Accepted && their_state == TheirHelloState::Accepted {
            if direction == Direction::Outbound {
                self.save_successful_address(remote, now);
            }
            self.activate(peer, now);
        }
    }

    /// The handshake is complete: the peer joins the active list.
    pub(super) fn activate(&mut self, peer: PeerId, now: TimePoint) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.list != ConnectionList::Handshaking {
            return;
        }
        p.list = ConnectionList::Active;
        p.was_active = true;
        let endpoint = p.remote_endpoint;
        info!(%endpoint, direction = %p.direction, peer, "peer active");
        if self.seed_warned_at.remove(&endpoint).is_some() {
            info!(%endpoint, "seed node reachable again");
        }
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let dial_back = if p.direction == Direction::Inbound {
            p.potential_inbound_endpoints.clone()
        } else {
            Vec::new()
        };
        self.send_time_request(peer, now);
        self.start_sync(peer, now);
        for ep in dial_back {
            if !self.add_once.contains(&ep) && self.add_once.len() < MAX_ADD_ONCE {
                self.add_once.push(ep);
            }
        }
        self.trigger_connect_loop(now);
    }

    pub(super) fn send_time_request(&mut self, peer: PeerId, now: TimePoint) {
        // The runtime stamps the real send time when the message leaves the queue.
        self.send(
            peer,
            Message::CurrentTimeRequest(CurrentTimeRequestMessage {
                request_sent_time: now,
            }),
            now,
        );
    }
}

/// Stands in for fc's git revision time in hello: the release time of this version.
const RELEASE_UNIX_TIME: u64 = 1_795_000_000;

fn platform() -> &'static str {
    match std::env::consts::OS {
        "linux" => "linux",
        "macos" => "osx",
        "openbsd" => "obsd",
        "windows" => "win32",
        _ => "other",
    }
}
