//! The node identity key and fc's 65-byte compact recoverable signatures.
//!
//! A hello carries `node_public_key` and `signed_shared_secret`: the identity key's compact
//! signature of SHA-256 of the connection's shared secret. fc signs with libsecp256k1 and a
//! nonce function that starts at the second RFC 6979 output and moves on to the next one until
//! the signature is "canonical" (r and s both in [2^247, 2^255)); we reproduce that so our
//! signatures are byte-identical to a C++ node's. A receiving node does not require canonical
//! form: it recovers the key from any header 27..=34 and compares it with the claimed key.

use ecdsa::hazmat::sign_prehashed;
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use k256::elliptic_curve::Curve;
use k256::elliptic_curve::PrimeField;
use k256::elliptic_curve::bigint::U256;
use k256::{NonZeroScalar, Scalar, Secp256k1, SecretKey};
use sha2::Sha256;

use super::CryptoError;
use super::keys::{PublicKeyBytes, compress, random_secret, secret_from_bytes};

/// Length of fc's compact signature: header byte, r, s.
pub const COMPACT_SIGNATURE_SIZE: usize = 65;

/// fc's compact signature as it travels.
pub type CompactSignature = [u8; COMPACT_SIGNATURE_SIZE];

/// Header byte base: 27, plus 4 for "compressed key", plus the recovery id.
const HEADER_COMPRESSED: u8 = 27 + 4;

/// A long-lived secp256k1 identity key.
#[derive(Clone)]
pub struct NodeKey {
    secret: SecretKey,
    public: PublicKeyBytes,
}

impl NodeKey {
    /// A fresh random identity.
    pub fn generate() -> Self {
        Self::from_secret(random_secret())
    }

    /// An identity from its 32 secret bytes (big-endian scalar).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        Ok(Self::from_secret(secret_from_bytes(bytes)?))
    }

    fn from_secret(secret: SecretKey) -> Self {
        let public = compress(&secret.public_key());
        Self { secret, public }
    }

    /// The 32 secret bytes, for persisting the identity.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes().into()
    }

    /// The compressed public key, which is also the node id the reference puts in hello.
    pub fn public_key(&self) -> &PublicKeyBytes {
        &self.public
    }

    /// fc's `sign_compact(digest, require_canonical = true)`.
    pub fn sign_compact(&self, digest: &[u8; 32]) -> CompactSignature {
        #[cfg(fuzzing)]
        {
            let key = (self.to_bytes(), *digest);
            super::fuzz_memo::get_or_insert(&super::fuzz_memo::SIGNATURES, key, || {
                sign_compact_with_attempts(&self.secret, digest, true).0
            })
        }
        #[cfg(not(fuzzing))]
        sign_compact_with_attempts(&self.secret, digest, true).0
    }
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({})", hex::encode(self.public))
    }
}

/// Signs as fc does and also reports how many nonces were tried. With `require_canonical`
/// false the first signature is returned whatever its form.
pub fn sign_compact_with_attempts(
    secret: &SecretKey,
    digest: &[u8; 32],
    require_canonical: bool,
) -> (CompactSignature, u32) {
    let d = secret.to_nonzero_scalar();
    let key_bytes = secret.to_bytes();
    let order: U256 = Secp256k1::ORDER.get();
    let mut counter: u32 = 0;
    loop {
        // fc's nonce function bumps its counter before every call, so the first nonce is
        // RFC 6979 output number 1 (zero-based), the next attempt output 2, and so on.
        counter += 1;
        let mut generator =
            rfc6979::KGenerator::<Sha256, U256>::new(&key_bytes, digest, &[], &order);
        let mut k_bytes = [0u8; 32];
        for _ in 0..=counter {
            generator.fill_next_k(&mut k_bytes);
        }
        let Some(k) = Option::<Scalar>::from(Scalar::from_repr(k_bytes.into()))
            .and_then(|s| Option::<NonZeroScalar>::from(NonZeroScalar::new(s)))
        else {
            continue;
        };
        // sign_prehashed normalises s to the low half and adjusts the recovery id, as
        // libsecp256k1 does.
        let Ok((sig, recid)) = sign_prehashed::<Secp256k1>(&d, &k, digest) else {
            continue;
        };
        let mut out = [0u8; COMPACT_SIGNATURE_SIZE];
        out[0] = HEADER_COMPRESSED + recid.to_byte();
        out[1..].copy_from_slice(&sig.to_bytes());
        if !require_canonical || is_canonical(&out) {
            return (out, counter);
        }
    }
}

/// fc's canonical test: r and s each have their top bit clear and are not short.
pub fn is_canonical(sig: &CompactSignature) -> bool {
    sig[1] & 0x80 == 0
        && !(sig[1] == 0 && sig[2] & 0x80 == 0)
        && sig[33] & 0x80 == 0
        && !(sig[33] == 0 && sig[34] & 0x80 == 0)
}

/// Recovers the compressed public key that made `sig` over `digest`, accepting any header in
/// 27..=34 and non-canonical forms, as node.cpp does for hello.
pub fn recover_compact(
    sig: &CompactSignature,
    digest: &[u8; 32],
) -> Result<PublicKeyBytes, CryptoError> {
    #[cfg(fuzzing)]
    {
        let key = (*sig, *digest);
        super::fuzz_memo::get_or_insert(&super::fuzz_memo::RECOVERIES, key, || {
            recover_uncached(sig, digest)
        })
    }
    #[cfg(not(fuzzing))]
    recover_uncached(sig, digest)
}

fn recover_uncached(
    sig: &CompactSignature,
    digest: &[u8; 32],
) -> Result<PublicKeyBytes, CryptoError> {
    let header = sig[0];
    if !(27..=34).contains(&header) {
        return Err(CryptoError::BadSignatureHeader(header));
    }
    let recid = RecoveryId::from_byte((header - 27) & 3).ok_or(CryptoError::MalformedSignature)?;
    let signature =
        Signature::from_slice(&sig[1..]).map_err(|_| CryptoError::MalformedSignature)?;
    let key = VerifyingKey::recover_from_prehash(digest, &signature, recid)
        .map_err(|_| CryptoError::RecoveryFailed)?;
    Ok(compress(&key.into()))
}

/// True when `sig` over `digest` recovers to `expected`.
pub fn verify_compact(
    sig: &CompactSignature,
    digest: &[u8; 32],
    expected: &PublicKeyBytes,
) -> bool {
    recover_compact(sig, digest).is_ok_and(|k| &k == expected)
}
