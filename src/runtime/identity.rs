//! The node's long-lived identity key on disk, and its per-process node id.

use std::path::Path;

use tracing::info;

use super::StartError;
use crate::crypto::NodeKey;
use crate::wire::types::NodeId;

/// File holding the identity key (hex of the 32 secret bytes) in the p2p directory.
pub const NODE_KEY_FILE: &str = "node_key";

/// Loads the identity key, or makes and saves a new one (readable by the owner only).
pub fn load_or_create_node_key(dir: &Path) -> Result<NodeKey, StartError> {
    let path = dir.join(NODE_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim())
                .map_err(|e| StartError::NodeKey(path.clone(), e.to_string()))?;
            let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
                StartError::NodeKey(path.clone(), "expected 32 bytes of hex".into())
            })?;
            NodeKey::from_bytes(&bytes)
                .map_err(|e| StartError::NodeKey(path.clone(), e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
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
        Err(e) => Err(StartError::DataDir(path, e)),
    }
}

/// A fresh random node id for this process (the reference makes one per start; it is how peers
/// tell nodes apart and notice connections to themselves).
pub fn random_node_id() -> NodeId {
    let mut id = [0u8; 33];
    // The same source the ephemeral keys use; failure means no secure node can run.
    getrandom::fill(&mut id).expect("the operating system random source failed");
    NodeId(id)
}
