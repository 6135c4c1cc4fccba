//! The node's long-lived identity key on disk, and its per-process node id.

use std::path::Path;

use tracing::{info, warn};

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
        restrict_to_owner(&path);
        return Ok(key);
    }
    let key = NodeKey::generate();
    // Mode 0600 from the first byte (the temporary file too).
    crate::store::write_private_atomically(&path, hex::encode(key.to_bytes()).as_bytes())
        .map_err(|e| StartError::DataDir(path.clone(), e))?;
    info!(path = %path.display(), "created a new node identity key");
    Ok(key)
}

/// A key file others can read (written by an older version, or copied) is made owner-only.
fn restrict_to_owner(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => warn!(
                    path = %path.display(),
                    was = format!("{mode:o}"),
                    "the node key was readable by others; made it owner-only (0600)"
                ),
                Err(e) => warn!(
                    path = %path.display(),
                    error = %e,
                    "the node key is readable by others and its mode cannot be changed"
                ),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).unwrap();
        let d = std::env::temp_dir().join(format!("grapevine-key-{name}-{}", hex::encode(id)));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let d = dir("mode");
        let now = TimePoint(1_700_000_000_000_000);
        let key = load_or_create_node_key(&d, now).unwrap();
        let path = d.join(NODE_KEY_FILE);
        assert_eq!(mode(&path), 0o600);
        // An existing key others can read is kept, and made owner-only.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let again = load_or_create_node_key(&d, now).unwrap();
        assert_eq!(again.to_bytes(), key.to_bytes());
        assert_eq!(mode(&path), 0o600);
        let _ = std::fs::remove_dir_all(&d);
    }
}
