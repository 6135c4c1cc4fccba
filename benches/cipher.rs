//! `CipherStream` against plain `cbc` + `aes` on the same bytes.
//!
//! Each group holds, for every size, the `CipherStream` figure and the baseline figure: one
//! long-lived `cbc::Encryptor<Aes256>` (or `Decryptor`) working in place on whole blocks, the
//! way a connection uses its stream. The buffer is transformed again on every iteration, so the
//! chaining state carries over exactly as on a live connection.
//!
//! ```text
//! cargo bench --bench cipher -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;

use aes::Aes256;
use cbc::cipher::{Array, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use grapevine::crypto::CipherStream;

const KEY: [u8; 32] = [0x5c; 32];
const IV: [u8; 16] = [0xa7; 16];

/// The sizes measured, with their labels.
const SIZES: [(usize, &str); 4] = [
    (64, "64B"),
    (1024, "1KiB"),
    (64 * 1024, "64KiB"),
    (1024 * 1024, "1MiB"),
];

fn buffer(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 % 251) as u8).collect()
}

/// The baseline's whole-buffer step, kept out of line like `CipherStream::apply` so that both
/// sides make one call per iteration.
#[inline(never)]
fn baseline_encrypt(e: &mut cbc::Encryptor<Aes256>, buf: &mut [u8]) {
    let (blocks, rest) = Array::slice_as_chunks_mut(buf);
    assert!(rest.is_empty());
    e.encrypt_blocks(blocks);
}

/// See [`baseline_encrypt`].
#[inline(never)]
fn baseline_decrypt(d: &mut cbc::Decryptor<Aes256>, buf: &mut [u8]) {
    let (blocks, rest) = Array::slice_as_chunks_mut(buf);
    assert!(rest.is_empty());
    d.decrypt_blocks(blocks);
}

fn encrypt(c: &mut Criterion) {
    let mut group = c.benchmark_group("encrypt");
    for (size, label) in SIZES {
        group.throughput(Throughput::Bytes(size as u64));

        let mut buf = buffer(size);
        let mut stream = CipherStream::encryptor(&KEY, &IV);
        group.bench_function(BenchmarkId::new("CipherStream", label), |b| {
            b.iter(|| stream.apply(black_box(&mut buf[..])).unwrap())
        });

        let mut buf = buffer(size);
        let mut baseline = cbc::Encryptor::<Aes256>::new(&KEY.into(), &IV.into());
        group.bench_function(BenchmarkId::new("aes_cbc", label), |b| {
            b.iter(|| baseline_encrypt(&mut baseline, black_box(&mut buf[..])))
        });
    }
    group.finish();
}

fn decrypt(c: &mut Criterion) {
    let mut group = c.benchmark_group("decrypt");
    for (size, label) in SIZES {
        group.throughput(Throughput::Bytes(size as u64));

        let mut buf = buffer(size);
        let mut stream = CipherStream::decryptor(&KEY, &IV);
        group.bench_function(BenchmarkId::new("CipherStream", label), |b| {
            b.iter(|| stream.apply(black_box(&mut buf[..])).unwrap())
        });

        let mut buf = buffer(size);
        let mut baseline = cbc::Decryptor::<Aes256>::new(&KEY.into(), &IV.into());
        group.bench_function(BenchmarkId::new("aes_cbc", label), |b| {
            b.iter(|| baseline_decrypt(&mut baseline, black_box(&mut buf[..])))
        });
    }
    group.finish();
}

/// Both streams produce the same bytes as the baseline (so the comparison is like for like).
fn check_same_output() {
    let mut a = buffer(4096);
    let mut b = a.clone();
    CipherStream::encryptor(&KEY, &IV).apply(&mut a).unwrap();
    baseline_encrypt(
        &mut cbc::Encryptor::<Aes256>::new(&KEY.into(), &IV.into()),
        &mut b,
    );
    assert_eq!(a, b, "CipherStream and cbc disagree");
    CipherStream::decryptor(&KEY, &IV).apply(&mut a).unwrap();
    assert_eq!(a, buffer(4096));
}

fn benches(c: &mut Criterion) {
    check_same_output();
    encrypt(c);
    decrypt(c);
}

criterion_group!(cipher, benches);
criterion_main!(cipher);
