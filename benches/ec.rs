//! The secp256k1 work of one side of one handshake, through grapevine's public crypto API.
//!
//! Per connection each side makes an ephemeral key (`keygen`), derives fc's shared secret from
//! the peer's ephemeral key (`ecdh`: one point multiplication and SHA-512 of x), signs SHA-256
//! of that secret with its node key (`sign`: fc's canonical compact signature, RFC 6979 nonces
//! from the second one on) and recovers the peer's node key from its hello signature
//! (`recover`). `per_side` runs the four in a row, as one side of a handshake does.
//!
//! The same bench measured the k256 backend before the switch to libsecp256k1 (BENCHMARKS.md,
//! "secp256k1 backend").
//!
//! ```text
//! cargo bench --bench ec -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use grapevine::crypto::identity::recover_compact;
use grapevine::crypto::key_exchange::shared_secret;
use grapevine::crypto::keys::random_secret;
use grapevine::crypto::{KeyExchange, NodeKey};
use sha2::{Digest, Sha256};

fn ec(c: &mut Criterion) {
    let mut group = c.benchmark_group("ec");
    let ours = random_secret();
    let peer = KeyExchange::new();
    let peer_public = *peer.our_public_key();
    let node = NodeKey::generate();
    let peer_node = NodeKey::generate();
    let digest: [u8; 32] = Sha256::digest(b"a shared secret").into();
    let peer_signature = peer_node.sign_compact(&digest);
    assert_eq!(
        recover_compact(&peer_signature, &digest).unwrap(),
        *peer_node.public_key()
    );

    group.bench_function("keygen", |b| {
        b.iter(|| *KeyExchange::new().our_public_key())
    });
    group.bench_function("ecdh", |b| {
        b.iter(|| shared_secret(black_box(&ours), black_box(&peer_public)).unwrap())
    });
    group.bench_function("sign", |b| b.iter(|| node.sign_compact(black_box(&digest))));
    group.bench_function("recover", |b| {
        b.iter(|| recover_compact(black_box(&peer_signature), black_box(&digest)).unwrap())
    });
    group.bench_function("per_side", |b| {
        b.iter(|| {
            let exchange = KeyExchange::new();
            let _ = black_box(exchange.our_public_key());
            let secret = shared_secret(&ours, black_box(&peer_public)).unwrap();
            let hello: [u8; 32] = Sha256::digest(secret).into();
            let signature = node.sign_compact(&hello);
            let recovered = recover_compact(black_box(&peer_signature), &digest).unwrap();
            (signature, recovered)
        })
    });
    group.finish();
}

criterion_group!(benches, ec);
criterion_main!(benches);
