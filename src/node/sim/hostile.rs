//! Hostile simulated nodes: ordinary node cores whose traffic the simulator twists the way a row
//! of the hostile-peer table says. A hostile node handshakes, gossips and dials like anyone (so
//! it keeps coming back); [`Hostility::outgoing`] rewrites or swallows what its core sends, and
//! [`SimNet::hostile_tick`] injects its attack on every connection it has up.

use crate::app::relay_store::make_test_chain;
use crate::peer::ConnectionList;
use crate::wire::Message;
use crate::wire::message::{ItemIdsInventoryMessage, msg_type};
use crate::wire::types::Ripemd160;

use super::links::Payload;
use super::{Observer, SimNet};

/// Item ids a never-serving advertiser offers per tick.
const ADVERTISED_PER_TICK: usize = 3;
/// Ids per inventory message of a flood (the hostile table's flood row sends 1,000).
const FLOOD_IDS_PER_MESSAGE: usize = 1_000;

/// How a hostile node misbehaves (rows of the hostile-peer table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostility {
    /// Sends transactions and blocks nobody asked for.
    UnrequestedItems,
    /// Signs its hello over the wrong digest.
    BadHelloSignature,
    /// Sends frames that do not decode (the receiving runtime reports a protocol error).
    GarbageFrames,
    /// Floods item ids it does not have, and never answers a fetch.
    InventoryFlood,
    /// Advertises a few items, and never answers a fetch, for them or for anything it has.
    AdvertiseNeverServe,
}

impl Hostility {
    /// Every kind, in the order a scenario hands them out.
    pub const ALL: [Hostility; 5] = [
        Hostility::UnrequestedItems,
        Hostility::BadHelloSignature,
        Hostility::GarbageFrames,
        Hostility::InventoryFlood,
        Hostility::AdvertiseNeverServe,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Hostility::UnrequestedItems => "unrequested_items",
            Hostility::BadHelloSignature => "bad_hello_signature",
            Hostility::GarbageFrames => "garbage_frames",
            Hostility::InventoryFlood => "inventory_flood",
            Hostility::AdvertiseNeverServe => "advertise_never_serve",
        }
    }

    /// The kind with this [`Hostility::name`].
    pub fn from_name(name: &str) -> Option<Hostility> {
        Hostility::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether an honest node bans this kind: its misbehaviour is a scored violation. A node
    /// that advertises and never serves looks like an unlucky honest peer (a missing item, a
    /// timeout), which is never scored: it is only disconnected.
    pub fn is_bannable(self) -> bool {
        !matches!(self, Hostility::AdvertiseNeverServe)
    }

    /// What the hostile node really sends when its core sends `message`; `None` to send
    /// nothing.
    pub fn outgoing(self, message: Message) -> Option<Message> {
        match (self, message) {
            (Hostility::BadHelloSignature, Message::Hello(mut h)) => {
                // Still a well-formed signature, over something else.
                h.signed_shared_secret.0[10] ^= 0x5a;
                Some(Message::Hello(h))
            }
            (
                Hostility::InventoryFlood | Hostility::AdvertiseNeverServe,
                Message::Trx(_) | Message::Block(_) | Message::ItemNotAvailable(_),
            ) => None,
            (_, m) => Some(m),
        }
    }
}

impl<O: Observer> SimNet<O> {
    /// Makes node `i` hostile (or honest again with `None`).
    pub fn set_hostility(&mut self, i: usize, hostility: Option<Hostility>) {
        self.meta[i].hostility = hostility;
    }

    /// How node `i` misbehaves, if it does.
    pub fn hostility(&self, i: usize) -> Option<Hostility> {
        self.meta.get(i).and_then(|m| m.hostility)
    }

    /// One round of hostile node `i`'s attack on every connection its core has active.
    /// `flood_size` is the number of ids an inventory flood sends at once.
    pub fn hostile_tick(&mut self, i: usize, flood_size: usize) {
        let Some(kind) = self.hostility(i).filter(|_| self.is_alive(i)) else {
            return;
        };
        let active: Vec<_> = self.nodes[i]
            .peers()
            .filter(|p| p.list == ConnectionList::Active)
            .map(|p| p.id)
            .collect();
        for peer in active {
            let Some((c, to, _)) = self.connection(i, peer) else {
                continue;
            };
            match kind {
                Hostility::UnrequestedItems => {
                    // A transaction or a block (of a chain nobody has), in turn at random.
                    let nonce = self.rng.next_u64();
                    let m = if nonce & 1 == 0 {
                        Message::Trx(super::make_trx(nonce, u32::MAX))
                    } else {
                        let parent = Ripemd160(self.rng.bytes());
                        let blocks = make_test_chain(parent, 1, 1_600_000_000);
                        Message::Block(blocks.into_iter().next().unwrap_or_default())
                    };
                    self.put_on_link(c, i, to, m, false);
                }
                Hostility::GarbageFrames => {
                    let Some(conn) = self.conns.get(&c) else {
                        continue;
                    };
                    let side = usize::from(conn.ends[0].node != i);
                    self.transmit(c, side, Payload::Garbage, 64, false);
                }
                Hostility::InventoryFlood | Hostility::AdvertiseNeverServe => {
                    let mut count = if kind == Hostility::InventoryFlood {
                        flood_size
                    } else {
                        ADVERTISED_PER_TICK
                    };
                    while count > 0 {
                        let now = count.min(FLOOD_IDS_PER_MESSAGE);
                        count -= now;
                        let item_hashes_available =
                            (0..now).map(|_| Ripemd160(self.rng.bytes())).collect();
                        let m = Message::ItemIdsInventory(ItemIdsInventoryMessage {
                            item_type: msg_type::TRX,
                            item_hashes_available,
                        });
                        self.put_on_link(c, i, to, m, false);
                    }
                }
                Hostility::BadHelloSignature => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeConfig;
    use crate::node::sim::{LinkModel, listen_endpoint, test_node_id};

    fn cfg() -> NodeConfig {
        NodeConfig {
            connect_to_new_peers: false,
            ..NodeConfig::default()
        }
    }

    /// An honest node 0 and a hostile node 1 that dialled it. The hostile node attacks once;
    /// returns whether the honest node still holds the attacked connection active after
    /// `settle` µs.
    fn still_active_after(kind: Hostility, settle: i64) -> bool {
        let mut net = SimNet::with_seed(3, LinkModel::instant());
        let honest = net.add_node(cfg(), test_node_id(1));
        let bad = net.add_node(cfg(), test_node_id(2));
        net.set_hostility(bad, Some(kind));
        net.with_node(bad, |n, now| n.add_node(listen_endpoint(honest), now));
        net.advance(1);
        let attacked: Vec<_> = net.nodes[honest]
            .peers()
            .filter(|p| p.list == ConnectionList::Active)
            .map(|p| p.id)
            .collect();
        assert_eq!(attacked.len(), 1, "{kind:?}: connected before the attack");
        net.hostile_tick(bad, 50);
        net.advance(settle);
        net.nodes[honest]
            .peer(attacked[0])
            .is_some_and(|p| p.list == ConnectionList::Active)
    }

    #[test]
    fn each_row_gets_the_hostile_node_dropped() {
        for kind in [
            Hostility::UnrequestedItems,
            Hostility::GarbageFrames,
            Hostility::InventoryFlood,
            Hostility::AdvertiseNeverServe,
        ] {
            let slow = matches!(
                kind,
                Hostility::InventoryFlood | Hostility::AdvertiseNeverServe
            );
            // Fetches from a silent advertiser are dropped at the request timeout, not before.
            assert_eq!(still_active_after(kind, 1), slow, "{kind:?} right after");
            let timeout = crate::node::config::REQUEST_TIMEOUT_US;
            assert!(
                !still_active_after(kind, timeout + 2_000_000),
                "{kind:?} after the request timeout"
            );
        }
    }

    #[test]
    fn a_bad_hello_signature_is_rejected() {
        let mut net = SimNet::with_seed(3, LinkModel::instant());
        let honest = net.add_node(cfg(), test_node_id(1));
        let bad = net.add_node(cfg(), test_node_id(2));
        net.set_hostility(bad, Some(Hostility::BadHelloSignature));
        net.with_node(bad, |n, now| n.add_node(listen_endpoint(honest), now));
        net.advance(1);
        assert_eq!(net.nodes[honest].connection_counts().active, 0);
        let rejected = net.sent(honest, bad, msg_type::CONNECTION_REJECTED);
        assert_eq!(rejected.len(), 1);
    }
}
