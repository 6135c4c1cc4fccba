//! The crypto layer's error type.

/// Something in the key exchange or in a signature is wrong. Every variant is a thing a peer can
/// really send us; none of them is a local bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The 33 bytes the peer sent as its ephemeral key are not a compressed secp256k1 point.
    #[error("peer sent an invalid public key")]
    InvalidPublicKey,
    /// The peer's key multiplied by ours is the point at infinity (only possible for a hostile key).
    #[error("key exchange produced no shared point")]
    DegenerateSharedPoint,
    /// A compact signature whose header byte is outside 27..=34.
    #[error("compact signature header byte {0} is outside 27..=34")]
    BadSignatureHeader(u8),
    /// r or s is zero or not below the curve order.
    #[error("compact signature has an out-of-range r or s")]
    MalformedSignature,
    /// No public key can be recovered from this signature and digest.
    #[error("no public key recovers from the signature")]
    RecoveryFailed,
    /// A secret key of all zeros or not below the curve order.
    #[error("invalid secret key")]
    InvalidSecretKey,
    /// A CBC stream was given a buffer that is not a whole number of 16-byte blocks.
    #[error("cipher input of {0} bytes is not a multiple of 16")]
    NotBlockAligned(usize),
}
