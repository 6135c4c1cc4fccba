//! Frame and message codec throughput.
//!
//! - `frame`: a stream of 500 plaintext frames of mixed sizes (0 B to 16 KiB), encoded with
//!   `encode_frame`, decoded with `FrameDecoder` from one buffer and from 4 KiB reads, and the
//!   same through `SecureCodec` (framing plus AES-256-CBC).
//! - `message_decode` / `message_encode`: `Message::decode` and `Message::encode_data` of every
//!   message of `tests/vectors/messages.json`, of an address message with 200 entries and of a
//!   1 MiB block.
//!
//! ```text
//! cargo bench --bench codec -- --warm-up-time 1 --measurement-time 2
//! ```

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use grapevine::wire::Message;
use grapevine::wire::frame::{FrameDecoder, SecureCodec, encode_frame};
use serde_json::Value;

const MESSAGES_JSON: &str = include_str!("../tests/vectors/messages.json");

/// Data sizes of the frame mix, repeated [`FRAME_ROUNDS`] times.
const FRAME_SIZES: [usize; 10] = [0, 8, 24, 45, 107, 147, 557, 1500, 4096, 16384];
const FRAME_ROUNDS: usize = 50;
const READ_SIZE: usize = 4096;

const KEY: [u8; 32] = [0x42; 32];
const IV: [u8; 16] = [0x24; 16];

/// The frames of the mix: (type, data).
fn frame_mix() -> Vec<(u32, Vec<u8>)> {
    (0..FRAME_ROUNDS)
        .flat_map(|round| {
            FRAME_SIZES.iter().enumerate().map(move |(i, &size)| {
                let data = (0..size).map(|b| (b + round + i) as u8).collect();
                (5001 + i as u32, data)
            })
        })
        .collect()
}

fn secure_codec() -> SecureCodec {
    SecureCodec::from_key_iv(&KEY, &IV)
}

fn frames(c: &mut Criterion) {
    let mix = frame_mix();
    let mut wire = BytesMut::new();
    for (t, data) in &mix {
        encode_frame(*t, data, &mut wire).unwrap();
    }
    let wire = wire.freeze();
    let mut ciphertext = BytesMut::new();
    let mut tx = secure_codec();
    for (t, data) in &mix {
        tx.encode_raw(*t, data, &mut ciphertext).unwrap();
    }
    let ciphertext = ciphertext.freeze();
    assert_eq!(ciphertext.len(), wire.len());

    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Bytes(wire.len() as u64));

    let mut out = BytesMut::with_capacity(wire.len());
    group.bench_function("encode_frame", |b| {
        b.iter(|| {
            out.clear();
            for (t, data) in &mix {
                encode_frame(*t, black_box(data), &mut out).unwrap();
            }
            black_box(&out);
        })
    });

    group.bench_function("decode_one_buffer", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| {
                let mut decoder = FrameDecoder::new();
                let mut n = 0;
                while let Some(frame) = decoder.decode_frame(&mut buf).unwrap() {
                    black_box(&frame);
                    n += 1;
                }
                assert_eq!(n, mix.len());
            },
            BatchSize::LargeInput,
        )
    });

    group.bench_function(BenchmarkId::new("decode_reads", READ_SIZE), |b| {
        b.iter(|| {
            let mut decoder = FrameDecoder::new();
            let mut buf = BytesMut::new();
            let mut n = 0;
            for read in wire.chunks(READ_SIZE) {
                buf.extend_from_slice(read);
                while let Some(frame) = decoder.decode_frame(&mut buf).unwrap() {
                    black_box(&frame);
                    n += 1;
                }
            }
            assert_eq!(n, mix.len());
        })
    });

    let mut out = BytesMut::with_capacity(wire.len());
    let mut codec = secure_codec();
    group.bench_function("secure_encode", |b| {
        b.iter(|| {
            out.clear();
            for (t, data) in &mix {
                codec.encode_raw(*t, black_box(data), &mut out).unwrap();
            }
            black_box(&out);
        })
    });

    group.bench_function(BenchmarkId::new("secure_decode_reads", READ_SIZE), |b| {
        b.iter(|| {
            let mut codec = secure_codec();
            let mut buf = BytesMut::new();
            let mut n = 0;
            for read in ciphertext.chunks(READ_SIZE) {
                buf.extend_from_slice(read);
                while let Some(frame) = codec.decode_frame(&mut buf).unwrap() {
                    black_box(&frame);
                    n += 1;
                }
            }
            assert_eq!(n, mix.len());
        })
    });
    group.finish();
}

/// (name, type, data) of every message measured.
fn message_cases() -> Vec<(String, u32, Vec<u8>)> {
    let vectors: Value = serde_json::from_str(MESSAGES_JSON).unwrap();
    let mut cases: Vec<(String, u32, Vec<u8>)> = vectors["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                u32::try_from(m["type_id"].as_u64().unwrap()).unwrap(),
                hex::decode(m["data_hex"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();

    // An address message with 200 entries, from the vector's entries.
    let (_, t, data) = cases
        .iter()
        .find(|(name, ..)| name == "address_message")
        .unwrap();
    let Message::Address(mut address) = Message::decode(*t, data).unwrap() else {
        panic!("address_message is not an address message");
    };
    assert!(!address.addresses.is_empty());
    address.addresses = address
        .addresses
        .iter()
        .cycle()
        .take(200)
        .cloned()
        .collect();
    let address = Message::Address(address);
    cases.push((
        "address_message_200".to_owned(),
        address.msg_type(),
        address.to_data(),
    ));

    // A 1 MiB block: opaque bytes ending in a block id.
    let block: Vec<u8> = (0..1024 * 1024).map(|i| (i % 253) as u8).collect();
    cases.push(("block_message_1MiB".to_owned(), 1001, block));
    cases
}

/// Bytes, or one element for the messages that have no data.
fn throughput(data: &[u8]) -> Throughput {
    if data.is_empty() {
        Throughput::Elements(1)
    } else {
        Throughput::Bytes(data.len() as u64)
    }
}

fn messages(c: &mut Criterion) {
    let cases = message_cases();

    let mut group = c.benchmark_group("message_decode");
    for (name, t, data) in &cases {
        group.throughput(throughput(data));
        group.bench_function(name.as_str(), |b| {
            b.iter(|| Message::decode(black_box(*t), black_box(data)).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("message_encode");
    for (name, t, data) in &cases {
        let message = Message::decode(*t, data).unwrap();
        assert_eq!(&message.to_data(), data, "{name} re-encodes to its vector");
        group.throughput(throughput(data));
        let mut out = Vec::with_capacity(data.len());
        group.bench_function(name.as_str(), |b| {
            b.iter(|| {
                out.clear();
                black_box(&message).encode_data(&mut out);
                black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group!(codec, frames, messages);
criterion_main!(codec);
