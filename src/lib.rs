//! grapevine: a BitShares (graphene) peer-to-peer node.
pub mod crypto;
pub mod wire;
