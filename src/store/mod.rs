//! What the node keeps on disk: the peer database, the ban list (and, later, items). Writes are
//! atomic: write a temporary file, fsync it, rename it over the old one, fsync the directory, so
//! a kill at any instant leaves either the old or the new file, never a torn one.
//!
//! Reads at start follow one rule ([`read_or_move_aside`]): a missing file is empty; a file
//! that does not parse is renamed to `<name>.unreadable-<unix time>` with a warning naming both
//! paths and the node starts without it, so nothing it held is ever overwritten.

pub mod bans;
pub mod fc_json;
pub mod peer_db;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::wire::types::TimePoint;

/// Suffix of a file moved aside because it could not be read, before the unix time.
pub const UNREADABLE_SUFFIX: &str = ".unreadable-";

/// Reads and parses `path`. `Ok(None)` when the file is missing, or when it does not parse: it
/// is then moved aside to `<path>.unreadable-<unix time of now>` (never over another file) and
/// a warning names both paths. Other I/O errors (permissions, a directory in its place) are
/// returned, since the file can then be neither read nor safely replaced.
pub fn read_or_move_aside<T>(
    path: &Path,
    what: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
    now: TimePoint,
) -> std::io::Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let error = match parse(&bytes) {
        Ok(v) => return Ok(Some(v)),
        Err(e) => e,
    };
    let aside = aside_path(path, now);
    fs::rename(path, &aside)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    warn!(
        path = %path.display(),
        moved_to = %aside.display(),
        error,
        "{what} is unreadable; moved it aside and starting without it"
    );
    Ok(None)
}

/// A free name beside `path` for an unreadable copy.
fn aside_path(path: &Path, now: TimePoint) -> PathBuf {
    let secs = now.0.div_euclid(1_000_000);
    let base = format!("{}{UNREADABLE_SUFFIX}{secs}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() || candidate.is_symlink() {
        candidate = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    candidate
}

/// Atomically replaces `path` with `bytes`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_as(path, bytes, None)
}

/// Atomically replaces `path` with `bytes` that are secret: on unix the file is created with
/// mode 0600 before its first byte is written, so it is never readable by others, not even
/// as the temporary file.
pub fn write_private_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_as(path, bytes, Some(0o600))
}

fn write_atomically_as(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let tmp = dir.join(format!(".{file_name}.tmp"));
    {
        let mut options = fs::OpenOptions::new();
        options.write(true);
        if let Some(_mode) = mode {
            // A temporary file left by a crash would keep its old mode if reopened.
            match fs::remove_file(&tmp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            options.create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(_mode);
            }
        } else {
            options.create(true).truncate(true);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    // Make the rename itself durable.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).unwrap();
        let d = std::env::temp_dir().join(format!("grapevine-store-{name}-{}", hex::encode(id)));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn parse_number(b: &[u8]) -> Result<u32, String> {
        std::str::from_utf8(b)
            .map_err(|e| e.to_string())?
            .trim()
            .parse()
            .map_err(|e: std::num::ParseIntError| e.to_string())
    }

    const NOW: TimePoint = TimePoint(1_700_000_000_123_456);

    #[test]
    fn a_missing_file_is_empty_and_nothing_is_created() {
        let d = dir("missing");
        let path = d.join("x.json");
        assert_eq!(
            read_or_move_aside(&path, "x", parse_number, NOW).unwrap(),
            None
        );
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_readable_file_is_read_in_place() {
        let d = dir("readable");
        let path = d.join("x.json");
        write_atomically(&path, b"42").unwrap();
        assert_eq!(
            read_or_move_aside(&path, "x", parse_number, NOW).unwrap(),
            Some(42)
        );
        assert_eq!(fs::read(&path).unwrap(), b"42");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn an_unreadable_file_is_moved_aside_never_overwritten() {
        let d = dir("unreadable");
        let path = d.join("x.json");
        fs::write(&path, b"{ torn").unwrap();
        assert_eq!(
            read_or_move_aside(&path, "x", parse_number, NOW).unwrap(),
            None
        );
        assert!(!path.exists(), "moved, not left to be overwritten");
        let aside = d.join("x.json.unreadable-1700000000");
        assert_eq!(fs::read(&aside).unwrap(), b"{ torn");
        // A second one in the same second gets its own name; the first is kept.
        fs::write(&path, b"also torn").unwrap();
        assert_eq!(
            read_or_move_aside(&path, "x", parse_number, NOW).unwrap(),
            None
        );
        assert_eq!(fs::read(&aside).unwrap(), b"{ torn");
        assert_eq!(
            fs::read(d.join("x.json.unreadable-1700000000-1")).unwrap(),
            b"also torn"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only_even_over_a_stale_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("private");
        let path = d.join("secret");
        let tmp = d.join(".secret.tmp");
        // A temporary file left readable by everyone by an earlier crash.
        fs::write(&tmp, b"old").unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        write_private_atomically(&path, b"key").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"key");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
        assert!(!tmp.exists());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn other_read_errors_are_returned_and_touch_nothing() {
        let d = dir("eisdir");
        let path = d.join("x.json");
        fs::create_dir_all(&path).unwrap();
        assert!(read_or_move_aside(&path, "x", parse_number, NOW).is_err());
        assert!(path.is_dir());
        let _ = fs::remove_dir_all(&d);
    }
}
