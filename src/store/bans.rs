//! The ban list on disk: `bans.json` in the p2p data directory, a JSON array of
//! [`Ban`]s (`ip`, `since`, `until`, `reason`, `score`), written atomically whenever a ban is
//! placed, lifted or lapses. The table that decides them lives in `node::bans`.

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::wire::types::TimePoint;

/// One banned address, as saved in `bans.json` and shown by `GET /bans`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    pub ip: Ipv4Addr,
    /// When the ban was placed.
    pub since: TimePoint,
    /// When it lapses.
    pub until: TimePoint,
    /// The violation that reached the threshold.
    pub reason: String,
    /// The score when it was placed.
    pub score: u32,
}

/// File name of the ban list inside the p2p data directory.
pub const BANS_FILE: &str = "bans.json";

/// Saves the bans as JSON, atomically.
pub fn save(path: &Path, bans: &[Ban]) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(bans).map_err(std::io::Error::other)?;
    super::write_atomically(path, &bytes)
}

/// Parses a saved ban list.
pub fn parse(bytes: &[u8]) -> Result<Vec<Ban>, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Loads the saved bans: a missing file is none; an unreadable one is moved aside (see
/// [`super::read_or_move_aside`]) and is none too.
pub fn load(path: &Path, now: TimePoint) -> std::io::Result<Vec<Ban>> {
    Ok(super::read_or_move_aside(path, "ban list", parse, now)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_unreadable_is_moved_aside() {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).unwrap();
        let dir = std::env::temp_dir().join(format!("grapevine-bans-{}", hex::encode(id)));
        let path = dir.join(BANS_FILE);
        let now = TimePoint(1_700_000_000_000_000);
        assert!(load(&path, now).unwrap().is_empty());
        let bans = vec![Ban {
            ip: "127.0.0.3".parse().unwrap(),
            since: now,
            until: TimePoint(now.0 + 86_400_000_000),
            reason: "invalid_hello_signature".into(),
            score: 100,
        }];
        save(&path, &bans).unwrap();
        assert_eq!(load(&path, now).unwrap(), bans);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"ip\": \"127.0.0.3\""), "{text}");
        std::fs::write(&path, b"[{\"ip\": ").unwrap();
        assert!(load(&path, now).unwrap().is_empty());
        assert!(!path.exists());
        assert!(dir.join("bans.json.unreadable-1700000000").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
