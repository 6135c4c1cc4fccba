//! The node identity key and fc's 65-byte compact recoverable signatures.
//!
//! A hello carries `node_public_key` and `signed_shared_secret`: the identity key's compact
//! signature of SHA-256 of the connection's shared secret. fc signs with libsecp256k1 and a
//! nonce function that starts at the second RFC 6979 output and moves on to the next one until
//! the signature is "canonical" (r and s both in [2^247, 2^255)); we reproduce that so our
//! signatures are byte-identical to a C++ node's. A receiving node does not require canonical
//! form: it recovers the key from any header 27..=34 and compares it with the claimed key.

use k256::elliptic_curve::bigint::U256;
use k256::elliptic_curve::ops::Reduce;
use k256::elliptic_curve::scalar::IsHigh;
use k256::elliptic_curve::{Curve, PrimeField};
use k256::{FieldBytes, Scalar, Secp256k1};
use secp256k1::Message;
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use sha2::Sha256;

use super::CryptoError;
use super::keys::{
    PublicKeyBytes, SecretKey, compress, context, public_key, random_secret, secret_from_bytes,
};

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
        let public = public_key(&secret);
        Self { secret, public }
    }

    /// The 32 secret bytes, for persisting the identity.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.secret.secret_bytes()
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
///
/// libsecp256k1 offers no safe way to sign with fc's nonce sequence, so the signature is put
/// together here: the nonce from RFC 6979, R = k×G by libsecp256k1 (the costly step), and the
/// scalar arithmetic (s = k⁻¹·(z + r·d), low-S, recovery id) as libsecp256k1 does it.
pub fn sign_compact_with_attempts(
    secret: &SecretKey,
    digest: &[u8; 32],
    require_canonical: bool,
) -> (CompactSignature, u32) {
    let key_bytes = secret.secret_bytes();
    let d = Option::<Scalar>::from(Scalar::from_repr(FieldBytes::from(key_bytes)))
        .expect("a secp256k1 secret key is a scalar below the order");
    let z = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(*digest));
    let order: U256 = Secp256k1::ORDER.get();
    let mut generator = rfc6979::KGenerator::<Sha256, U256>::new(&key_bytes, digest, &[], &order);
    let mut k_bytes = [0u8; 32];
    // fc's nonce function bumps its counter before every call, so the first nonce is RFC 6979
    // output number 1 (zero-based), the next attempt output 2, and so on.
    generator.fill_next_k(&mut k_bytes);
    let mut counter: u32 = 0;
    loop {
        counter += 1;
        generator.fill_next_k(&mut k_bytes);
        if let Some(out) = sign_with_nonce(&d, &z, &k_bytes, require_canonical) {
            return (out, counter);
        }
    }
}

/// One signing attempt with nonce `k_bytes`: `None` when the nonce is unusable (zero or not
/// below the order, r or s zero) or, with `require_canonical`, the signature is not canonical.
fn sign_with_nonce(
    d: &Scalar,
    z: &Scalar,
    k_bytes: &[u8; 32],
    require_canonical: bool,
) -> Option<CompactSignature> {
    // Accepts exactly the nonces 1..n-1.
    let k_secret = SecretKey::from_byte_array(*k_bytes).ok()?;
    let big_r = public_key(&k_secret);
    let mut x = [0u8; 32];
    x.copy_from_slice(&big_r[1..]);
    let r = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(x));
    if bool::from(r.is_zero()) {
        return None;
    }
    let r_bytes: [u8; 32] = r.to_repr().into();
    if require_canonical && !half_is_canonical(&r_bytes) {
        // s cannot rescue a non-canonical r: skip the inversion.
        return None;
    }
    let k = Option::<Scalar>::from(Scalar::from_repr(FieldBytes::from(*k_bytes)))?;
    let k_inv = Option::<Scalar>::from(k.invert())?;
    let mut s = k_inv * (*z + r * d);
    if bool::from(s.is_zero()) {
        return None;
    }
    let y_is_odd = big_r[0] == 0x03;
    let x_was_reduced = r_bytes != x;
    let mut recid = u8::from(y_is_odd) | (u8::from(x_was_reduced) << 1);
    if bool::from(s.is_high()) {
        s = -s;
        recid ^= 1;
    }
    let mut out = [0u8; COMPACT_SIGNATURE_SIZE];
    out[0] = HEADER_COMPRESSED + recid;
    out[1..33].copy_from_slice(&r_bytes);
    out[33..].copy_from_slice(&s.to_repr());
    if require_canonical && !is_canonical(&out) {
        return None;
    }
    Some(out)
}

/// fc's canonical test for one of r and s (32 big-endian bytes).
fn half_is_canonical(half: &[u8]) -> bool {
    half[0] & 0x80 == 0 && !(half[0] == 0 && half[1] & 0x80 == 0)
}

/// fc's canonical test: r and s each have their top bit clear and are not short.
pub fn is_canonical(sig: &CompactSignature) -> bool {
    half_is_canonical(&sig[1..33]) && half_is_canonical(&sig[33..])
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
    // r or s zero: libsecp256k1 parses it and then fails to recover; call it malformed.
    if sig[1..33].iter().all(|b| *b == 0) || sig[33..].iter().all(|b| *b == 0) {
        return Err(CryptoError::MalformedSignature);
    }
    let recid = RecoveryId::from_u8_masked(header - 27);
    // Rejects r or s not below the order.
    let signature = RecoverableSignature::from_compact(&sig[1..], recid)
        .map_err(|_| CryptoError::MalformedSignature)?;
    let key = context()
        .recover_ecdsa(Message::from_digest(*digest), &signature)
        .map_err(|_| CryptoError::RecoveryFailed)?;
    Ok(compress(&key))
}

/// True when `sig` over `digest` recovers to `expected`.
pub fn verify_compact(
    sig: &CompactSignature,
    digest: &[u8; 32],
    expected: &PublicKeyBytes,
) -> bool {
    recover_compact(sig, digest).is_ok_and(|k| &k == expected)
}
