//! Under `cfg(fuzzing)` only (cargo-fuzz builds): signing, key recovery, public-key derivation
//! and the ECDH shared secret are pure functions costing 30-150 µs each, which would dominate
//! fuzz targets that run key exchanges and handshakes with a few fixed keys. Their results are
//! remembered in small bounded tables, so a repeated call costs a lookup; the answers are the
//! same as computing them.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{LazyLock, Mutex};

use super::identity::CompactSignature;
use super::{CryptoError, PublicKeyBytes};

/// Entries kept per table; a full table is emptied.
const ENTRIES: usize = 4096;

type Table<K, V> = LazyLock<Mutex<HashMap<K, V>>>;

/// (secret key, digest) to fc's compact signature.
pub(super) static SIGNATURES: Table<([u8; 32], [u8; 32]), CompactSignature> =
    LazyLock::new(Default::default);
/// (signature, digest) to the recovered public key.
pub(super) static RECOVERIES: Table<
    (CompactSignature, [u8; 32]),
    Result<PublicKeyBytes, CryptoError>,
> = LazyLock::new(Default::default);
/// Secret key to its compressed public key.
pub(super) static PUBLIC_KEYS: Table<[u8; 32], PublicKeyBytes> = LazyLock::new(Default::default);
/// (secret key, peer public key) to the shared secret.
pub(super) static SHARED_SECRETS: Table<([u8; 32], PublicKeyBytes), Result<[u8; 64], CryptoError>> =
    LazyLock::new(Default::default);

/// The remembered value for `key`, computed and remembered if missing.
pub(super) fn get_or_insert<K: Hash + Eq, V: Clone>(
    table: &Mutex<HashMap<K, V>>,
    key: K,
    compute: impl FnOnce() -> V,
) -> V {
    let mut map = table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(v) = map.get(&key) {
        return v.clone();
    }
    let v = compute();
    if map.len() >= ENTRIES {
        map.clear();
    }
    map.insert(key, v.clone());
    v
}
