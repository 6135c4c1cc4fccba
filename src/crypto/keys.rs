//! secp256k1 key helpers shared by the key exchange and the node identity.
//!
//! The curve arithmetic is libsecp256k1's (through the `secp256k1` crate), the library the C++
//! node uses too.

use std::sync::LazyLock;

use secp256k1::{All, Secp256k1};
pub use secp256k1::{PublicKey, SecretKey};

use super::CryptoError;

/// The libsecp256k1 context every operation here uses. Its generator multiplication is blinded
/// with a random value drawn once, when the context is first used.
static CONTEXT: LazyLock<Secp256k1<All>> = LazyLock::new(|| {
    let mut context = Secp256k1::new();
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the operating system random source failed");
    context.seeded_randomize(&seed);
    context
});

/// The shared libsecp256k1 context.
pub(super) fn context() -> &'static Secp256k1<All> {
    &CONTEXT
}

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
        if let Ok(k) = SecretKey::from_byte_array(bytes) {
            return k;
        }
    }
}

/// Secret key from 32 big-endian bytes.
pub fn secret_from_bytes(bytes: &[u8; 32]) -> Result<SecretKey, CryptoError> {
    SecretKey::from_byte_array(*bytes).map_err(|_| CryptoError::InvalidSecretKey)
}

/// The 32 big-endian bytes of a secret key.
pub fn secret_to_bytes(secret: &SecretKey) -> [u8; 32] {
    secret.secret_bytes()
}

/// The compressed public key of a secret key.
pub fn public_key(secret: &SecretKey) -> PublicKeyBytes {
    compress(&PublicKey::from_secret_key(context(), secret))
}

/// Compressed encoding of a public key.
pub fn compress(public: &PublicKey) -> PublicKeyBytes {
    public.serialize()
}

/// Parses a compressed public key; anything else (wrong prefix, x not on the curve) is an error.
pub fn decompress(bytes: &PublicKeyBytes) -> Result<PublicKey, CryptoError> {
    if bytes[0] != 0x02 && bytes[0] != 0x03 {
        return Err(CryptoError::InvalidPublicKey);
    }
    PublicKey::from_slice(bytes).map_err(|_| CryptoError::InvalidPublicKey)
}

/// The x coordinate of `secret` times `public`: the raw ECDH result fc hashes.
pub fn ecdh_x(secret: &SecretKey, public: &PublicKey) -> [u8; 32] {
    let xy = secp256k1::ecdh::shared_secret_point(public, secret);
    let mut x = [0u8; 32];
    x.copy_from_slice(&xy[..32]);
    x
}
