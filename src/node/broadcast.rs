//! What became of an item the operator broadcast ([`super::Node::broadcast`]): the honest
//! answer `POST /broadcast` and `grapevine broadcast` give, with the item's id.

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::app::DelegateError;
use crate::wire::types::{BlockId, ItemHash};

/// A broadcast item's id and outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broadcast {
    /// The item hash: ripemd160 of the message data (a block's inventory hash, not its id).
    pub id: ItemHash,
    pub outcome: BroadcastOutcome,
}

/// What the application and the node did with a broadcast item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BroadcastOutcome {
    /// The application took it; it is advertised to the active peers.
    Accepted,
    /// A block whose parent the application lacks: held until that block arrives, then
    /// applied and advertised. Until then it is not relayed and not served.
    Held { missing_parent: BlockId },
    /// The node already had it; nothing was applied. A transaction is advertised again to
    /// active peers that have not heard of it from us.
    Duplicate,
    /// The application refused it: invalid, unusable (e.g. an expired transaction), or a
    /// local failure (disk, database) that is nobody else's fault.
    Rejected(DelegateError),
    /// The message type is not an item type (1000 or 1001).
    NotAnItem(u32),
}

impl BroadcastOutcome {
    /// The outcome's name in answers: "accepted", "held", "duplicate", "rejected" (the item's
    /// fault, or not an item) or "failed" (ours).
    pub fn name(&self) -> &'static str {
        match self {
            BroadcastOutcome::Accepted => "accepted",
            BroadcastOutcome::Held { .. } => "held",
            BroadcastOutcome::Duplicate => "duplicate",
            BroadcastOutcome::Rejected(DelegateError::Local(_)) => "failed",
            BroadcastOutcome::Rejected(_) | BroadcastOutcome::NotAnItem(_) => "rejected",
        }
    }

    /// The block a held block waits for.
    pub fn missing_parent(&self) -> Option<BlockId> {
        match self {
            BroadcastOutcome::Held { missing_parent } => Some(*missing_parent),
            _ => None,
        }
    }

    /// Why the item was not accepted, for a person; `None` when it was.
    pub fn error(&self) -> Option<String> {
        match self {
            BroadcastOutcome::Accepted => None,
            BroadcastOutcome::Held { missing_parent } => Some(format!(
                "parent block {missing_parent} is unknown; the block is held until it arrives \
                 and is not relayed before"
            )),
            BroadcastOutcome::Duplicate => Some("the node already has this item".into()),
            BroadcastOutcome::Rejected(e) => Some(e.to_string()),
            BroadcastOutcome::NotAnItem(t) => {
                Some(format!("message type {t} is not an item (1000 or 1001)"))
            }
        }
    }
}

impl Serialize for Broadcast {
    /// The answer's JSON: `{"id", "outcome", "missing_parent", "error"}`, the last two null
    /// when they do not apply.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("id", &self.id.to_string())?;
        m.serialize_entry("outcome", self.outcome.name())?;
        m.serialize_entry(
            "missing_parent",
            &self.outcome.missing_parent().map(|p| p.to_string()),
        )?;
        m.serialize_entry("error", &self.outcome.error())?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::types::Ripemd160;
    use serde_json::json;

    #[test]
    fn answers_name_the_outcome_and_keep_the_id() {
        let id = Ripemd160([1; 20]);
        let parent = Ripemd160([2; 20]);
        let answer = |outcome| serde_json::to_value(Broadcast { id, outcome }).unwrap();
        assert_eq!(
            answer(BroadcastOutcome::Accepted),
            json!({"id": id.to_string(), "outcome": "accepted", "missing_parent": null, "error": null})
        );
        let held = answer(BroadcastOutcome::Held {
            missing_parent: parent,
        });
        assert_eq!(held["outcome"], "held");
        assert_eq!(held["missing_parent"], parent.to_string());
        assert!(
            held["error"]
                .as_str()
                .unwrap()
                .contains(&parent.to_string())
        );
        assert_eq!(answer(BroadcastOutcome::Duplicate)["outcome"], "duplicate");
        let invalid = answer(BroadcastOutcome::Rejected(DelegateError::Invalid(
            "x".into(),
        )));
        assert_eq!(invalid["outcome"], "rejected");
        assert_eq!(invalid["error"], "invalid item: x");
        let local = answer(BroadcastOutcome::Rejected(DelegateError::Local(
            "disk".into(),
        )));
        assert_eq!(local["outcome"], "failed");
        assert_eq!(
            answer(BroadcastOutcome::NotAnItem(5006))["outcome"],
            "rejected"
        );
    }
}
