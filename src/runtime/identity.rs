//! The node's long-lived identity key on disk, and its per-process node id.

use std::path::Path;

use tracing::info;

use super::StartError;
use crate::crypto::NodeKey;
use crate::wire::types::{NodeId, TimePoint};

/// File holding the identity key (hex of the 32 secret bytes) in the p2p directory.
pub const NODE_KEY_FILE: &str = "node_key";

/// Loads the identity key, or makes and saves a new one (readable by the owner only). A key
/// file that does not parse is moved aside (never overwritten) and a new key is made: the key
/// only names the node to its peers, and a node that cannot start helps nobody.
pub fn load_or_create_node_key(dir: &Path, now: TimePoint) -> Result<NodeKey, StartError> {
    let path = dir.join(NODE_KEY_FILE);
    let loaded = crate::store::read_or_move_aside(&path, "node key", parse_key, now)
        .map_err(|e| StartError::DataDir(path.clone(), e))?;
    if let Some(key) = loaded {
        return Ok(key);
    }
    let key = NodeKey::generate();
    crate::store::write_atomically(&path, hex::encode(key.to_bytes()).as_bytes())
        .map_err(|e| StartError::DataDir(path.clone(), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    info!(path = %path.display(), "created a new node identity key");
    Ok(key)
}

/// A key file's text: 32 bytes of hex.
fn parse_key(bytes: &[u8]) -> Result<NodeKey, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let bytes = hex::decode(text.trim()).map_err(|e| e.to_string())?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "expected 32 bytes of hex".to_string())?;
    NodeKey::from_bytes(&bytes).map_err(|e| e.to_string())
}

/// A fresh random node id for this process (the reference makes one per start; it is how peers
/// tell nodes apart and notice connections to themselves).
pub fn random_node_id() -> NodeId {
    let mut id = [0u8; 33];
    // The same source the ephemeral keys use; failure means no secure node can run.
    getrandom::fill(&mut id).expect("the operating system random source failed");
    NodeId(id)
}
