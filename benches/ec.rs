//! The secp256k1 work of one side of one handshake, through grapevine's public crypto API.
//!
//! Per connection each side makes an ephemeral key (`keygen`), derives fc's shared secret from
//! the peer's ephemeral key (`ecdh`: one point multiplication and SHA-512 of x), signs SHA-256
//! of that secret with its node key (`sign`: fc's canonical compact signature, RFC 6979 nonces
//! from the second one on) and recovers the peer's node key from its hello signature
//! (`recover`). `per_side` runs the four in a row, as one side of a handshake does (the
//! signed digest varies as in `sign`).
//!
//! Each operation is measured twice on the same inputs, one after the other: `…/libsecp256k1`
//! is grapevine's code (libsecp256k1 through the `secp256k1` crate), `…/k256` the same work
//! done the way grapevine did it before, with the pure-Rust `k256` crate (BENCHMARKS.md,
//! "secp256k1 backend"). The bench first checks that both give the same bytes.
//!
//! ```text
//! cargo bench --bench ec -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use grapevine::crypto::identity::recover_compact;
use grapevine::crypto::key_exchange::shared_secret;
use grapevine::crypto::keys;
use grapevine::crypto::{KeyExchange, NodeKey};
use sha2::{Digest, Sha256};

/// The k256 baseline: grapevine's crypto as it was before libsecp256k1.
mod k256_baseline {
    use ecdsa::hazmat::sign_prehashed;
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
    use k256::elliptic_curve::bigint::U256;
    use k256::elliptic_curve::sec1::ToSec1Point;
    use k256::elliptic_curve::{Curve, PrimeField};
    use k256::{NonZeroScalar, PublicKey, Scalar, Secp256k1, SecretKey};
    use sha2::{Digest, Sha256, Sha512};

    pub fn random_secret() -> SecretKey {
        loop {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).unwrap();
            if let Ok(k) = SecretKey::from_slice(&bytes) {
                return k;
            }
        }
    }

    pub fn compress(public: &PublicKey) -> [u8; 33] {
        let mut out = [0u8; 33];
        out.copy_from_slice(public.to_sec1_point(true).as_bytes());
        out
    }

    pub fn keygen() -> [u8; 33] {
        compress(&random_secret().public_key())
    }

    pub fn shared_secret(ours: &SecretKey, theirs: &[u8; 33]) -> [u8; 64] {
        let public = PublicKey::from_sec1_bytes(theirs).unwrap();
        let shared = ours.diffie_hellman(&public);
        Sha512::digest(shared.raw_secret_bytes()).into()
    }

    /// fc's canonical compact signature, as grapevine computed it with k256.
    pub fn sign_compact(secret: &SecretKey, digest: &[u8; 32]) -> [u8; 65] {
        let d = secret.to_nonzero_scalar();
        let key_bytes = secret.to_bytes();
        let order: U256 = Secp256k1::ORDER.get();
        let mut counter: u32 = 0;
        loop {
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
            let Ok((sig, recid)) = sign_prehashed::<Secp256k1>(&d, &k, digest) else {
                continue;
            };
            let mut out = [0u8; 65];
            out[0] = 31 + recid.to_byte();
            out[1..].copy_from_slice(&sig.to_bytes());
            if grapevine::crypto::identity::is_canonical(&out) {
                return out;
            }
        }
    }

    pub fn recover(sig: &[u8; 65], digest: &[u8; 32]) -> [u8; 33] {
        let recid = RecoveryId::from_byte((sig[0] - 27) & 3).unwrap();
        let signature = Signature::from_slice(&sig[1..]).unwrap();
        let key = VerifyingKey::recover_from_prehash(digest, &signature, recid).unwrap();
        compress(&key.into())
    }
}

/// Signing costs one k×G per nonce tried and fc tries until r and s are both canonical (about
/// four nonces on average, varying with key and digest), so every signing figure is the mean
/// over the same 64 digests.
const DIGESTS: usize = 64;

fn ec(c: &mut Criterion) {
    let mut group = c.benchmark_group("ec");
    let ours_bytes = [0x11u8; 32];
    let node_bytes = [0x22u8; 32];
    let peer_node_bytes = [0x33u8; 32];
    let peer_public = keys::public_key(&keys::secret_from_bytes(&[0x44; 32]).unwrap());
    let digests: Vec<[u8; 32]> = (0..DIGESTS as u32)
        .map(|i| Sha256::digest(i.to_le_bytes()).into())
        .collect();

    // libsecp256k1, through grapevine's API.
    let ours = keys::secret_from_bytes(&ours_bytes).unwrap();
    let node = NodeKey::from_bytes(&node_bytes).unwrap();
    let peer_node = NodeKey::from_bytes(&peer_node_bytes).unwrap();
    let signatures: Vec<_> = digests.iter().map(|d| peer_node.sign_compact(d)).collect();
    // The k256 baseline on the same inputs.
    let k_ours = k256::SecretKey::from_slice(&ours_bytes).unwrap();
    let k_node = k256::SecretKey::from_slice(&node_bytes).unwrap();
    let k_peer_node = k256::SecretKey::from_slice(&peer_node_bytes).unwrap();

    // Both give the same bytes.
    assert_eq!(
        k256_baseline::shared_secret(&k_ours, &peer_public),
        shared_secret(&ours, &peer_public).unwrap()
    );
    for (d, sig) in digests.iter().zip(&signatures) {
        assert_eq!(k256_baseline::sign_compact(&k_peer_node, d), *sig);
        assert_eq!(
            k256_baseline::recover(sig, d),
            recover_compact(sig, d).unwrap()
        );
    }

    group.bench_function("keygen/libsecp256k1", |b| {
        b.iter(|| *KeyExchange::new().our_public_key())
    });
    group.bench_function("keygen/k256", |b| b.iter(k256_baseline::keygen));
    group.bench_function("ecdh/libsecp256k1", |b| {
        b.iter(|| shared_secret(black_box(&ours), black_box(&peer_public)).unwrap())
    });
    group.bench_function("ecdh/k256", |b| {
        b.iter(|| k256_baseline::shared_secret(black_box(&k_ours), black_box(&peer_public)))
    });
    let mut i = 0;
    group.bench_function("sign/libsecp256k1", |b| {
        b.iter(|| {
            i = (i + 1) % DIGESTS;
            node.sign_compact(black_box(&digests[i]))
        })
    });
    group.bench_function("sign/k256", |b| {
        b.iter(|| {
            i = (i + 1) % DIGESTS;
            k256_baseline::sign_compact(&k_node, black_box(&digests[i]))
        })
    });
    group.bench_function("recover/libsecp256k1", |b| {
        b.iter(|| {
            i = (i + 1) % DIGESTS;
            recover_compact(black_box(&signatures[i]), &digests[i]).unwrap()
        })
    });
    group.bench_function("recover/k256", |b| {
        b.iter(|| {
            i = (i + 1) % DIGESTS;
            k256_baseline::recover(black_box(&signatures[i]), &digests[i])
        })
    });
    group.bench_function("per_side/libsecp256k1", |b| {
        b.iter(|| {
            i = (i + 1) % DIGESTS;
            let exchange = KeyExchange::new();
            let _ = black_box(exchange.our_public_key());
            let _ = black_box(shared_secret(&ours, black_box(&peer_public)).unwrap());
            let signature = node.sign_compact(&digests[i]);
            let recovered = recover_compact(black_box(&signatures[i]), &digests[i]).unwrap();
            (signature, recovered)
        })
    });
    group.bench_function("per_side/k256", |b| {
        b.iter(|| {
            i = (i + 1) % DIGESTS;
            let _ = black_box(k256_baseline::keygen());
            let _ = black_box(k256_baseline::shared_secret(
                &k_ours,
                black_box(&peer_public),
            ));
            let signature = k256_baseline::sign_compact(&k_node, &digests[i]);
            let recovered = k256_baseline::recover(black_box(&signatures[i]), &digests[i]);
            (signature, recovered)
        })
    });
    group.finish();
}

criterion_group!(benches, ec);
criterion_main!(benches);
