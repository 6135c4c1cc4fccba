//! Simulated TCP connections between node cores: dialling, the key exchange's round trips,
//! ordered delivery with latency and bandwidth, retransmissions, resets, closes.
//!
//! # The model
//! Every pair of nodes has a fixed one-way latency drawn from [`LinkModel`]'s range. A
//! connection carries each direction as a queue: a message starts leaving when the previous one
//! has left, takes `size / bandwidth` to leave (the sender hears [`Node::on_sent`] then, so a
//! slow link really fills the sender's queue), and arrives `latency` later.
//!
//! TCP never loses a message silently, so loss is modelled as what TCP turns it into:
//! - a lost segment is retransmitted after the retransmission timeout (doubling on each
//!   further loss), and everything behind it on that connection waits for it: delay, in order;
//! - a reset (a middlebox dropping state, an injected RST) breaks the connection: nothing more
//!   is delivered and both ends see it close.
//!
//! A partition breaks every connection between its sides the same way, and dials across it
//! time out after [`CONNECT_TIMEOUT_US`]. A dial to an endpoint nobody (alive) listens on is
//! refused after a round trip. A dialler's key exchange completes one latency after the
//! listener accepted, the listener's one latency later (when the dialler's key reaches it).
//!
//! [`Node::on_sent`]: crate::node::Node::on_sent

use std::net::Ipv4Addr;

use crate::node::sim::{Event, Observer, SimNet};
use crate::peer::PeerId;
use crate::wire::types::Endpoint;

/// A connection's number, unique for the whole run (a new connection is a new number).
pub type ConnId = u64;

/// How long a dial across a partition waits before giving up (the runtime's connect timeout).
pub const CONNECT_TIMEOUT_US: i64 = 5_000_000;
/// Retransmissions of one segment before the connection is given up as reset.
pub const MAX_RETRANSMISSIONS: u32 = 6;
/// The port every simulated node listens on.
pub const LISTEN_PORT: u16 = 10_000;
/// The first port a dialler's socket gets; ports then count up and wrap.
pub const FIRST_EPHEMERAL_PORT: u16 = 40_000;

/// How simulated links behave.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkModel {
    /// Smallest one-way latency between two nodes, µs.
    pub latency_min_us: i64,
    /// Largest one-way latency, µs: each pair of nodes gets a fixed latency in between.
    pub latency_max_us: i64,
    /// Bytes a second each direction of a connection carries; 0 for no limit.
    pub bandwidth_bytes_per_sec: u64,
    /// Chance that a message is lost once and must be retransmitted.
    pub loss: f64,
    /// Retransmission timeout of the first retransmission, µs (doubles after).
    pub retransmit_us: i64,
    /// Chance per message that the connection is reset.
    pub reset: f64,
}

impl LinkModel {
    /// Instant, unlimited and perfect links: every message arrives at the time it is sent.
    pub fn instant() -> Self {
        Self {
            latency_min_us: 0,
            latency_max_us: 0,
            bandwidth_bytes_per_sec: 0,
            loss: 0.0,
            retransmit_us: 0,
            reset: 0.0,
        }
    }

    /// A wide-area network: 5-80 ms one way, 1 MB/s per direction, one message in a thousand
    /// retransmitted after 200 ms (Linux's minimum RTO), one in fifty thousand reset.
    pub fn wan() -> Self {
        Self {
            latency_min_us: 5_000,
            latency_max_us: 80_000,
            bandwidth_bytes_per_sec: 1_000_000,
            loss: 0.001,
            retransmit_us: 200_000,
            reset: 0.000_02,
        }
    }

    /// The fixed one-way latency between nodes `a` and `b` in a run with `seed`.
    pub fn latency(&self, seed: u64, a: usize, b: usize) -> i64 {
        let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
        let spread = (self.latency_max_us - self.latency_min_us).max(0) as u64;
        if spread == 0 {
            return self.latency_min_us;
        }
        let h = super::rng::mix64(seed ^ super::rng::mix64((lo << 32) | hi));
        self.latency_min_us + (h % (spread + 1)) as i64
    }

    /// Time to put `size` bytes on the wire.
    fn transmission_us(&self, size: usize) -> i64 {
        if self.bandwidth_bytes_per_sec == 0 {
            return 0;
        }
        (size as u128 * 1_000_000 / u128::from(self.bandwidth_bytes_per_sec)) as i64
    }
}

/// The address of simulated node `i`: 127.0.(i / 250).(i % 250 + 1), one per node so that
/// per-address rules (bans) see nodes apart.
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// The node whose address is `ip`, if it is a simulated node's.
pub fn node_of_ip(ip: Ipv4Addr) -> Option<usize> {
    let [a, b, c, d] = ip.octets();
    (a == 127 && b == 0 && (1..=250).contains(&d))
        .then(|| usize::from(c) * 250 + usize::from(d) - 1)
}

/// The endpoint simulated node `i` listens on.
pub fn listen_endpoint(i: usize) -> Endpoint {
    Endpoint::new(node_ip(i), LISTEN_PORT)
}

/// What travels on a connection.
#[derive(Debug)]
pub enum Payload {
    /// An encoded message, and the message itself when the receiver need not decode it.
    Frame {
        msg_type: u32,
        data: Vec<u8>,
        message: Option<Box<crate::wire::Message>>,
    },
    /// Bytes that do not decode: the receiver's reader reports a protocol error.
    Garbage,
}

/// One end of a connection.
#[derive(Debug)]
pub struct End {
    pub node: usize,
    /// The node's incarnation that owns this end (a restarted node starts afresh).
    pub incarnation: u32,
    /// The node's id for the connection; `None` until the listener accepted.
    pub peer: Option<PeerId>,
    /// The socket is open at this end.
    pub open: bool,
    /// This end finished the key exchange.
    pub established: bool,
    /// This end's socket address.
    pub local: Endpoint,
    /// When the last byte queued at this end has left it.
    busy_until: i64,
    /// When the last message from this end arrives: no later message overtakes it.
    last_arrival: i64,
}

impl End {
    fn new(node: usize, incarnation: u32, peer: Option<PeerId>, local: Endpoint) -> Self {
        Self {
            node,
            incarnation,
            peer,
            open: peer.is_some(),
            established: false,
            local,
            busy_until: 0,
            last_arrival: 0,
        }
    }
}

/// A connection: end 0 dialled, end 1 accepted.
#[derive(Debug)]
pub struct Conn {
    pub ends: [End; 2],
    pub latency: i64,
    /// SHA-256 of the shared secret, the same at both ends; drawn from the run's seed.
    pub digest: [u8; 32],
    /// Reset (partition, injected reset, a killed end): nothing more is delivered.
    pub broken: bool,
}

impl<O: Observer> SimNet<O> {
    /// Whether nodes `a` and `b` are on different sides of the partition.
    pub fn partitioned(&self, a: usize, b: usize) -> bool {
        self.partition
            .as_ref()
            .is_some_and(|g| g.get(a).copied().unwrap_or(0) != g.get(b).copied().unwrap_or(0))
    }

    pub(super) fn new_conn(&mut self, ends: [End; 2], latency: i64) -> ConnId {
        let c = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            c,
            Conn {
                ends,
                latency,
                digest: [0; 32],
                broken: false,
            },
        );
        c
    }

    /// Node `i` dials `endpoint` for its connection `peer`.
    pub(super) fn dial(&mut self, i: usize, peer: PeerId, endpoint: Endpoint) {
        let local = Endpoint::new(node_ip(i), self.next_port);
        self.next_port = self
            .next_port
            .checked_add(1)
            .unwrap_or(FIRST_EPHEMERAL_PORT);
        let target = self
            .listening
            .get(&endpoint)
            .copied()
            .filter(|&j| self.meta[j].alive);
        let latency = match target {
            Some(j) => self.links.latency(self.seed, i, j),
            None => self.links.latency_min_us,
        };
        let dialer = End::new(i, self.meta[i].incarnation, Some(peer), local);
        let listener = End::new(target.unwrap_or(usize::MAX), 0, None, endpoint);
        let c = self.new_conn([dialer, listener], latency);
        self.by_peer.insert((i, peer), c);
        let now = self.now.0;
        match target {
            None => self.schedule(
                now + 2 * latency,
                Event::DialFailed(c, "connection refused"),
            ),
            Some(j) if self.partitioned(i, j) => self.schedule(
                now + CONNECT_TIMEOUT_US,
                Event::DialFailed(c, "connect timed out"),
            ),
            Some(_) => self.schedule(now + latency, Event::Syn(c)),
        }
    }

    /// The dial reaches the listener.
    pub(super) fn on_syn(&mut self, c: ConnId) {
        let now = self.now;
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        if !conn.ends[0].open {
            return;
        }
        let (i, j, latency, local) = (
            conn.ends[0].node,
            conn.ends[1].node,
            conn.latency,
            conn.ends[0].local,
        );
        if !self.meta[j].alive {
            self.schedule(now.0 + latency, Event::DialFailed(c, "connection refused"));
            return;
        }
        if self.partitioned(i, j) {
            let at = (now.0 + CONNECT_TIMEOUT_US - latency).max(now.0);
            self.schedule(at, Event::DialFailed(c, "connect timed out"));
            return;
        }
        let accepted = self.nodes[j].accept_inbound(local, now);
        self.touch(j);
        let Some(pj) = accepted else {
            self.schedule(now.0 + latency, Event::DialFailed(c, "connection reset"));
            return;
        };
        let digest = self.rng.bytes::<32>();
        let incarnation = self.meta[j].incarnation;
        if let Some(conn) = self.conns.get_mut(&c) {
            let e = &mut conn.ends[1];
            e.incarnation = incarnation;
            e.peer = Some(pj);
            e.open = true;
            conn.digest = digest;
        }
        self.by_peer.insert((j, pj), c);
        if self.mute.contains(&j) {
            return;
        }
        self.schedule(now.0 + latency, Event::Established(c, 0));
        self.schedule(now.0 + 2 * latency, Event::Established(c, 1));
    }

    /// The end `side` of `c`, if its node is still the incarnation that opened it and the socket
    /// is open: (node, peer).
    fn live_end(&self, c: ConnId, side: usize) -> Option<(usize, PeerId)> {
        let e = &self.conns.get(&c)?.ends[side];
        let m = self.meta.get(e.node)?;
        (e.open && m.alive && m.incarnation == e.incarnation).then_some((e.node, e.peer?))
    }

    pub(super) fn on_established(&mut self, c: ConnId, side: usize) {
        let Some((n, peer)) = self.live_end(c, side) else {
            return;
        };
        if self.mute.contains(&n) {
            return;
        }
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        conn.ends[side].established = true;
        let (local, digest) = (conn.ends[side].local, conn.digest);
        let now = self.now;
        self.nodes[n].on_established(peer, local, digest, now);
        self.touch(n);
    }

    pub(super) fn on_dial_failed(&mut self, c: ConnId, error: &'static str) {
        let Some((n, peer)) = self.live_end(c, 0) else {
            return;
        };
        self.close_end(c, 0);
        let now = self.now;
        self.nodes[n].on_dial_failed(peer, error, now);
        self.touch(n);
    }

    /// Puts `payload` on `c` from end `side`. `report_sent` tells the sender when it has left
    /// (false for bytes the sender's core never queued, like a hostile node's injections).
    pub(super) fn transmit(
        &mut self,
        c: ConnId,
        side: usize,
        payload: Payload,
        size: usize,
        report_sent: bool,
    ) {
        let now = self.now.0;
        let transmission = self.links.transmission_us(size);
        let (loss, mut rto, reset) = (self.links.loss, self.links.retransmit_us, self.links.reset);
        let mut retransmissions = 0;
        while retransmissions < MAX_RETRANSMISSIONS && self.rng.chance(loss) {
            retransmissions += 1;
        }
        let reset = retransmissions == MAX_RETRANSMISSIONS || self.rng.chance(reset);
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let latency = conn.latency;
        let e = &mut conn.ends[side];
        let left = now.max(e.busy_until) + transmission;
        e.busy_until = left;
        let mut arrival = left + latency;
        for _ in 0..retransmissions {
            arrival += rto;
            rto *= 2;
        }
        arrival = arrival.max(e.last_arrival);
        e.last_arrival = arrival;
        if report_sent {
            self.schedule(left, Event::Sent(c, side, size));
        }
        self.schedule(arrival, Event::Arrive(c, 1 - side, payload, size));
        if reset {
            self.break_conn(c);
        }
    }

    pub(super) fn on_sent(&mut self, c: ConnId, side: usize, bytes: usize) {
        let Some((n, peer)) = self.live_end(c, side) else {
            return;
        };
        let now = self.now;
        self.nodes[n].on_sent(peer, bytes, now);
        self.touch(n);
    }

    pub(super) fn on_arrive(&mut self, c: ConnId, side: usize, payload: Payload, size: usize) {
        if self.conns.get(&c).is_none_or(|conn| conn.broken) {
            return;
        }
        let Some((to, peer)) = self.live_end(c, side) else {
            return;
        };
        if self.mute.contains(&to) || self.frozen.contains(&to) {
            return;
        }
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let (from, digest) = (conn.ends[1 - side].node, conn.digest);
        let now = self.now;
        match payload {
            Payload::Frame {
                msg_type,
                data,
                message,
            } => {
                self.record_delivery(from, to, msg_type, &data);
                let message = message.map(|m| *m).unwrap_or_else(|| {
                    crate::wire::Message::decode(msg_type, &data)
                        .unwrap_or_else(|e| panic!("a node sent an undecodable message: {e}"))
                });
                self.observer.on_delivery(now, from, to, &message);
                // As the runtime reports a read: its messages, then its bytes.
                self.nodes[to].on_message(peer, message, Some(digest), now);
                self.nodes[to].on_bytes_received(peer, size, 0, now);
            }
            Payload::Garbage => {
                self.record_delivery(from, to, 0, b"garbage");
                self.nodes[to].on_bytes_received(peer, size, 0, now);
                self.nodes[to].on_protocol_error(peer, "a frame that does not decode", now);
            }
        }
        self.touch(to);
    }

    /// End `side` sees its socket closed by the other end, a reset or a partition.
    pub(super) fn on_gone(&mut self, c: ConnId, side: usize) {
        let Some((n, peer)) = self.live_end(c, side) else {
            return;
        };
        let established = self
            .conns
            .get(&c)
            .is_some_and(|conn| conn.ends[side].established);
        self.close_end(c, side);
        let now = self.now;
        if side == 0 && !established {
            self.nodes[n].on_dial_failed(peer, "closed during the key exchange", now);
        } else {
            self.nodes[n].on_closed(peer, now);
        }
        self.touch(n);
    }

    /// Marks end `side` closed and forgets the connection once both ends are.
    fn close_end(&mut self, c: ConnId, side: usize) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let e = &mut conn.ends[side];
        e.open = false;
        if let Some(peer) = e.peer {
            let key = (e.node, peer);
            if self.by_peer.get(&key) == Some(&c) {
                self.by_peer.remove(&key);
            }
        }
        if !conn.ends[0].open && !conn.ends[1].open {
            self.conns.remove(&c);
        }
    }

    /// Node `i` closes its connection `peer`: the runtime reports it closed at once, and the
    /// other end sees the close after the bytes already queued.
    pub(super) fn close(&mut self, i: usize, peer: PeerId) {
        let now = self.now;
        if let Some(p) = self.nodes[i].peer(peer) {
            self.observer.on_close(now, i, p);
        }
        self.nodes[i].on_closed(peer, now);
        let Some(&c) = self.by_peer.get(&(i, peer)) else {
            return;
        };
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        let side = usize::from(conn.ends[0].node != i || conn.ends[0].peer != Some(peer));
        let other = &conn.ends[1 - side];
        let notify = other.open && other.peer.is_some();
        let at = now.0.max(conn.ends[side].busy_until) + conn.latency;
        self.close_end(c, side);
        if notify {
            self.schedule(at, Event::Gone(c, 1 - side));
        }
    }

    /// Resets `c`: nothing more is delivered, and each open end sees it close.
    pub(super) fn break_conn(&mut self, c: ConnId) {
        let now = self.now.0;
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        conn.broken = true;
        let latency = conn.latency;
        let open = [conn.ends[0].open, conn.ends[1].open];
        for (side, open) in open.into_iter().enumerate() {
            if open {
                self.schedule(now + latency, Event::Gone(c, side));
            }
        }
    }

    /// Node `i`'s process died: every connection it had is reset, and the other ends see it.
    pub(super) fn drop_connections_of(&mut self, i: usize) {
        let ids: Vec<ConnId> = self
            .by_peer
            .range((i, PeerId::MIN)..=(i, PeerId::MAX))
            .map(|(_, c)| *c)
            .collect();
        for c in ids {
            let Some(conn) = self.conns.get(&c) else {
                continue;
            };
            let side = usize::from(conn.ends[0].node != i);
            self.close_end(c, side);
            self.break_conn(c);
        }
    }

    /// Connections with ends on both sides of the current partition break.
    pub(super) fn break_partitioned(&mut self) {
        let crossing: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, conn)| {
                !conn.broken
                    && conn.ends[1].peer.is_some()
                    && self.partitioned(conn.ends[0].node, conn.ends[1].node)
            })
            .map(|(c, _)| *c)
            .collect();
        for c in crossing {
            self.break_conn(c);
        }
    }

    /// The connection node `i` knows as `peer`, and its other end: (connection, node, peer).
    pub fn connection(&self, i: usize, peer: PeerId) -> Option<(ConnId, usize, PeerId)> {
        let c = *self.by_peer.get(&(i, peer))?;
        let conn = self.conns.get(&c)?;
        let side = usize::from(conn.ends[0].node != i || conn.ends[0].peer != Some(peer));
        let other = &conn.ends[1 - side];
        Some((c, other.node, other.peer?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_per_node_and_map_back() {
        for i in [0, 1, 249, 250, 999, 1000] {
            assert_eq!(node_of_ip(node_ip(i)), Some(i));
        }
        assert_eq!(node_ip(0), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(node_ip(250), Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(node_of_ip(Ipv4Addr::new(127, 0, 0, 0)), None);
    }

    #[test]
    fn latency_is_symmetric_fixed_and_in_range() {
        let m = LinkModel::wan();
        for (a, b) in [(0, 1), (5, 900), (17, 3)] {
            let l = m.latency(42, a, b);
            assert_eq!(l, m.latency(42, b, a));
            assert!((m.latency_min_us..=m.latency_max_us).contains(&l));
        }
        assert_eq!(LinkModel::instant().latency(1, 2, 3), 0);
        assert_eq!(m.transmission_us(1_000), 1_000);
    }
}
