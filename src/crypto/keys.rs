//! secp256k1 key helpers shared by the key exchange and the node identity.

use k256::elliptic_curve::sec1::ToSec1Point;
use k256::{PublicKey, SecretKey};

use super::CryptoError;

/// Length of a compressed secp256k1 public key, as sent on the wire and packed in messages.
pub const PUBLIC_KEY_SIZE: usize = 33;

/// A compressed public key exactly as it travels: 33 bytes, no length prefix.
pub type PublicKeyBytes = [u8; PUBLIC_KEY_SIZE];

/// Fresh secret key from the operating system's random source.
pub fn random_secret() -> SecretKey {
    loop {
        let mut bytes = [0u8; 32];
        // A machine whose kernel cannot hand out random bytes cannot run a secure node at all.
        getrandom::fill(&mut bytes).expect("the operating system random source failed");
        // Rejection sampling: about one draw in 2^128 is zero or above the order.
        if let Ok(k) = SecretKey::from_slice(&bytes) {
            return k;
        }
    }
}

/// Secret key from 32 big-endian bytes.
pub fn secret_from_bytes(bytes: &[u8; 32]) -> Result<SecretKey, CryptoError> {
    SecretKey::from_slice(bytes).map_err(|_| CryptoError::InvalidSecretKey)
}

/// Compressed encoding of a public key.
pub fn compress(public: &PublicKey) -> PublicKeyBytes {
    let point = public.to_sec1_point(true);
    let mut out = [0u8; PUBLIC_KEY_SIZE];
    out.copy_from_slice(point.as_bytes());
    out
}

/// Parses a compressed public key; anything else (wrong prefix, x not on the curve) is an error.
pub fn decompress(bytes: &PublicKeyBytes) -> Result<PublicKey, CryptoError> {
    if bytes[0] != 0x02 && bytes[0] != 0x03 {
        return Err(CryptoError::InvalidPublicKey);
    }
    PublicKey::from_sec1_bytes(bytes).map_err(|_| CryptoError::InvalidPublicKey)
}
