//! The seed corpus, built in memory from `tests/vectors/*.json`.
//!
//! `fuzz/src/bin/make_corpus.rs` writes it to `fuzz/corpus/<target>/` for the fuzzer;
//! `tests/fuzz_replay.rs` replays it directly, so it never depends on that (git-ignored) folder.

use std::path::{Path, PathBuf};

use crate::crypto::SessionKeys;
use crate::crypto::key_exchange::{KeyExchange, shared_secret};
use crate::crypto::keys::secret_from_bytes;
use crate::wire::channel::FUZZ_EPHEMERAL_SECRET;
use serde_json::Value;

/// One corpus entry.
#[derive(Clone, Debug)]
pub struct Seed {
    /// File name in the corpus folder.
    pub name: String,
    /// The input.
    pub data: Vec<u8>,
    /// What the target should return for it, where that is known: frames for
    /// `frame_decoder`, messages for `handshake`.
    pub expect: Option<usize>,
}

/// Error loading the vectors.
pub type LoadError = Box<dyn std::error::Error + Send + Sync>;

/// `tests/vectors` of the grapevine source tree this was built from.
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn load(name: &str) -> Result<Value, LoadError> {
    let path = vectors_dir().join(name);
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str, LoadError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("vector lacks string field {key}").into())
}

fn hex_field(v: &Value, key: &str) -> Result<Vec<u8>, LoadError> {
    Ok(hex::decode(str_field(v, key)?)?)
}

fn u32_field(v: &Value, key: &str) -> Result<u32, LoadError> {
    v.get(key)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("vector lacks u32 field {key}").into())
}

fn array<'a>(v: &'a Value, key: &str) -> Result<&'a [Value], LoadError> {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| format!("vector lacks array {key}").into())
}

/// A message of the vectors: its name, type and data, and its plaintext frame.
struct VectorMessage {
    name: String,
    msg_type: u32,
    data: Vec<u8>,
    frame: Vec<u8>,
}

/// The messages of messages.json, then every frame of every live session.
fn vector_messages() -> Result<Vec<VectorMessage>, LoadError> {
    let mut out = Vec::new();
    let messages = load("messages.json")?;
    for m in array(&messages, "messages")? {
        out.push(VectorMessage {
            name: str_field(m, "name")?.to_owned(),
            msg_type: u32_field(m, "type_id")?,
            data: hex_field(m, "data_hex")?,
            frame: hex_field(m, "framed_hex")?,
        });
    }
    for (s, session) in live_sessions()?.iter().enumerate() {
        for (i, f) in array(session, "frames")?.iter().enumerate() {
            out.push(VectorMessage {
                name: format!("live{s}-{i:02}-{}", str_field(f, "name")?),
                msg_type: u32_field(f, "type")?,
                data: hex_field(f, "body_hex")?,
                frame: hex_field(f, "plaintext_frame_hex")?,
            });
        }
    }
    Ok(out)
}

fn live_sessions() -> Result<Vec<Value>, LoadError> {
    Ok(array(&load("live_sessions.json")?, "sessions")?.to_vec())
}

fn key32(hex_str: &str) -> Result<[u8; 32], LoadError> {
    hex::decode(hex_str)?
        .try_into()
        .map_err(|_| "expected 32 bytes".into())
}

/// What a peer whose ephemeral secret is `peer_secret` sends to the fuzzing channel: its
/// public key, then `frames` encrypted with the keys it shares with
/// [`FUZZ_EPHEMERAL_SECRET`].
pub fn encrypted_stream(peer_secret: &[u8; 32], frames: &[&[u8]]) -> Result<Vec<u8>, LoadError> {
    let peer = KeyExchange::with_secret(secret_from_bytes(peer_secret)?);
    let ours = KeyExchange::with_secret(secret_from_bytes(&FUZZ_EPHEMERAL_SECRET)?);
    let secret = secret_from_bytes(peer_secret)?;
    let keys = SessionKeys::from_shared_secret(shared_secret(&secret, ours.our_public_key())?);
    let mut encrypt = keys.encryptor();
    let mut out = peer.our_public_key().to_vec();
    for frame in frames {
        let start = out.len();
        out.extend_from_slice(frame);
        encrypt.apply(&mut out[start..])?;
    }
    Ok(out)
}

/// The seeds of the target called `target` (one of `grapevine_fuzz::TARGETS`, in `fuzz/`).
pub fn corpus(target: &str) -> Result<Vec<Seed>, LoadError> {
    let messages = vector_messages()?;
    let mut seeds = Vec::new();
    match target {
        "frame_decoder" => {
            for m in &messages {
                let mut data = vec![15u8];
                data.extend_from_slice(&m.frame);
                seeds.push(Seed {
                    name: m.name.clone(),
                    data,
                    expect: Some(1),
                });
            }
            // All frames back to back, arriving in chunks of 1, 16 and 256 bytes.
            let all: Vec<u8> = messages.iter().flat_map(|m| m.frame.clone()).collect();
            for step in [0u8, 15, 255] {
                let mut data = vec![step];
                data.extend_from_slice(&all);
                seeds.push(Seed {
                    name: format!("all-frames-step{}", u16::from(step) + 1),
                    data,
                    expect: Some(messages.len()),
                });
            }
        }
        "message_decode" => {
            for m in &messages {
                let mut data = m.msg_type.to_le_bytes().to_vec();
                data.extend_from_slice(&m.data);
                seeds.push(Seed {
                    name: m.name.clone(),
                    data,
                    expect: None,
                });
            }
        }
        "raw_roundtrip" => {
            for m in messages
                .iter()
                .filter(|m| super::CORE_TYPES.contains(&m.msg_type))
            {
                let sel = u8::try_from(m.msg_type - super::CORE_TYPES.start())?;
                let mut data = vec![sel];
                data.extend_from_slice(&m.data);
                seeds.push(Seed {
                    name: m.name.clone(),
                    data,
                    expect: None,
                });
            }
        }
        "handshake" => {
            for (s, session) in live_sessions()?.iter().enumerate() {
                let frames = array(session, "frames")?;
                // The session's frames, re-encrypted as the client would send them to a node
                // whose ephemeral key is the fuzzing one.
                let plain: Vec<Vec<u8>> = frames
                    .iter()
                    .map(|f| hex_field(f, "plaintext_frame_hex"))
                    .collect::<Result<_, _>>()?;
                let plain: Vec<&[u8]> = plain.iter().map(Vec::as_slice).collect();
                let peer = key32(str_field(session, "client_ephemeral_private_key")?)?;
                seeds.push(Seed {
                    name: format!("live{s}-reencrypted"),
                    data: encrypted_stream(&peer, &plain)?,
                    expect: Some(plain.len()),
                });
                // The key alone, and the first frame only.
                seeds.push(Seed {
                    name: format!("live{s}-first-frame"),
                    data: encrypted_stream(&peer, &plain[..1])?,
                    expect: Some(1),
                });
                // The client's bytes as recorded: a valid key, ciphertext under another key.
                let mut data = hex_field(session, "client_ephemeral_public_key")?;
                for f in frames
                    .iter()
                    .filter(|f| f.get("dir").and_then(Value::as_str) == Some("client_to_server"))
                {
                    data.extend_from_slice(&hex_field(f, "ciphertext_hex")?);
                }
                seeds.push(Seed {
                    name: format!("live{s}-recorded-client"),
                    data,
                    expect: None,
                });
            }
            // The handshake pairs' keys, sending every message of messages.json.
            let crypto = load("crypto.json")?;
            let frames: Vec<&[u8]> = messages
                .iter()
                .filter(|m| !m.name.starts_with("live"))
                .map(|m| m.frame.as_slice())
                .collect();
            for pair in array(&crypto, "pairs")? {
                let name = str_field(pair, "name")?;
                for side in ["a", "b"] {
                    let secret = key32(str_field(pair, &format!("{side}_ephemeral_private_key"))?)?;
                    seeds.push(Seed {
                        name: format!("{name}-{side}-messages"),
                        data: encrypted_stream(&secret, &frames)?,
                        expect: Some(frames.len()),
                    });
                }
            }
        }
        "node_events" => seeds = node_event_seeds(),
        other => return Err(format!("no fuzz target called {other}").into()),
    }
    Ok(seeds)
}

/// Scripts for `node_events` (see [`super::node_events`]) that reach deep states: complete
/// handshakes both ways, a sync, serving, firewall checks, floods, timeouts and closes.
/// `expect` is the most active connections the script reaches.
fn node_event_seeds() -> Vec<Seed> {
    use super::node_events::{Header, Script, op};
    let header = |config, head, runtime| Header {
        config,
        head,
        runtime,
    };
    let seed = |name: &str, expect, script: Script| Seed {
        name: name.to_owned(),
        data: script.into_bytes(),
        expect: Some(expect),
    };
    // Many peers each hand us a thousand addresses: the peer database stays bounded while
    // dial-backs and the connect loop add records.
    let mut flood = Script::new(header(7, 0, 0));
    for p in 0..6u8 {
        flood = flood
            .step(op::ACCEPT, &[8 * (p + 1) + 1])
            .step(op::ESTABLISH, &[p])
            .step(op::HELLO, &[p, p, 2 * p])
            .step(op::SIMPLE, &[p, 0, 0])
            .step(op::ADDRESS, &[p, 0xFF, 2 * p]);
    }
    flood = flood
        .step(op::TIMEOUT, &[])
        .step(op::TIME, &[0xFF])
        .step(op::TIMEOUT, &[]);
    vec![
        // An inbound peer completes the handshake, then we sync the whole chain from it.
        seed(
            "inbound-handshake-sync",
            1,
            Script::new(header(3, 0, 0))
                .inbound_handshake(9, 0, 0)
                .answer(0, 12),
        ),
        // We dial an endpoint the operator added; the handshake completes from our side.
        seed(
            "outbound-handshake-sync",
            1,
            Script::new(header(3, 5, 0))
                .step(op::OPERATOR, &[3, 17])
                .step(op::TIMEOUT, &[])
                .step(op::ESTABLISH, &[0])
                .step(op::HELLO, &[0, 1, 0])
                .step(op::SIMPLE, &[0, 0, 0])
                .step(op::SIMPLE, &[0, 2, 0])
                .step(op::ADDRESS, &[0, 20, 4])
                .answer(0, 10),
        ),
        // A peer fetches blocks and transactions we have, drains its queue, then asks too much.
        seed(
            "serve-then-overask",
            1,
            Script::new(header(3, 30, 0))
                .inbound_handshake(9, 0, 1)
                .step(op::OPERATOR, &[0, 3])
                .step(op::FETCH_ITEMS, &[0, 0, 10, 0])
                .step(op::FETCH_ITEMS, &[0, 1, 5, 3])
                .step(op::FETCH_ITEMS, &[0, 2, 3, 3])
                .step(op::SENT, &[0, 0])
                .step(op::FETCH_ITEMS, &[0, 3, 4, 9])
                .step(op::FETCH_ITEMS, &[0, 1, 0xFF, 0]),
        ),
        // Gossip: two peers advertise blocks and transactions, we fetch, one answers, one says
        // it has none, and we relay to the other.
        seed(
            "gossip-two-peers",
            2,
            Script::new(header(3, 39, 0))
                .inbound_handshake(9, 0, 1)
                .inbound_handshake(17, 1, 2)
                .step(op::ITEM_INVENTORY, &[0, 2, 4, 0])
                .step(op::ITEM_INVENTORY, &[1, 2, 4, 2])
                .step(op::ANSWER, &[0, 2])
                .step(op::NOT_AVAILABLE, &[1, 1])
                .step(op::TIME, &[0x42])
                .step(op::ANSWER, &[1, 2])
                .step(op::TRX, &[0, 7])
                .step(op::TIME, &[0x84]),
        ),
        // Firewall checks: a peer asks us to check it (relayed to the other peer, who answers),
        // and asks us to test a third node (a probe connection).
        seed(
            "firewall-checks",
            2,
            Script::new(header(3, 0, 0))
                .inbound_handshake(9, 0, 1)
                .inbound_handshake(17, 1, 2)
                .step(op::SIMPLE, &[0, 6, 0])
                .step(op::SIMPLE, &[1, 8, 0x41])
                .step(op::SIMPLE, &[0, 7, 0x1A])
                .step(op::ESTABLISH, &[2])
                .step(op::SIMPLE, &[1, 7, 0x2B])
                .step(op::DIAL_FAILED, &[3])
                .step(op::SIMPLE, &[0, 9, 0]),
        ),
        seed("address-flood", 6, flood),
        // Deferred durability: we sync from an inbound peer while the application makes what it
        // accepted durable only when time moves; past a few batches it is saturated and sync
        // waits for the next commit.
        seed(
            "deferred-durability-sync",
            1,
            Script::new(header(3, 0, 4))
                .inbound_handshake(9, 0, 0)
                .answer(0, 6)
                .step(op::TIME, &[1])
                .answer(0, 6)
                .step(op::TIME, &[1])
                .answer(0, 6)
                .step(op::TIMEOUT, &[]),
        ),
        // Deferred durability with gossip: fetched items wait for their commit before they
        // are relayed to the other peer.
        seed(
            "deferred-durability-gossip",
            2,
            Script::new(header(3, 39, 4))
                .inbound_handshake(9, 0, 1)
                .inbound_handshake(17, 1, 2)
                .step(op::ITEM_INVENTORY, &[0, 2, 4, 0])
                .step(op::ANSWER, &[0, 2])
                .step(op::TRX, &[0, 7])
                .step(op::TIME, &[0x01])
                .step(op::ITEM_INVENTORY, &[1, 2, 4, 2])
                .step(op::ANSWER, &[1, 2])
                .step(op::TIME, &[0x42]),
        ),
        // Timers: keepalive, inactivity, closing timeout and handshake timeout.
        seed(
            "timeouts",
            1,
            Script::new(header(3, 0, 0))
                .inbound_handshake(9, 0, 0)
                .step(op::ACCEPT, &[25])
                .step(op::TIME, &[0x86])
                .step(op::TIME, &[0xC1])
                .step(op::TIME, &[0xC1])
                .step(op::TIMEOUT, &[])
                .step(op::TIME, &[0xC1]),
        ),
        // A deferred close: the peer keeps talking after we dropped it, then the socket closes.
        seed(
            "deferred-close",
            1,
            Script::new(header(3, 10, 1))
                .inbound_handshake(9, 0, 0)
                .step(op::PROTOCOL_ERROR, &[0])
                .step(op::FETCH_ITEMS, &[0, 0, 3, 0])
                .step(op::SIMPLE, &[0, 4, 9])
                .step(op::BLOCK, &[0, 3])
                .step(op::CLOSED, &[0]),
        ),
        // Blocks of every kind from an active peer, raw messages, broadcasts and a shutdown.
        seed(
            "blocks-raw-shutdown",
            1,
            Script::new(header(3, 2, 0))
                .inbound_handshake(9, 0, 0)
                .step(op::BLOCK, &[0, 2])
                .step(op::IDS_INVENTORY, &[0, 1, 5, 0])
                .step(op::FETCH_IDS, &[0, 1])
                .step(op::RAW, &[0, 6, 3, 1, 2, 3])
                .step(op::OPERATOR, &[1, 3])
                .step(op::OPERATOR, &[1, 0x85])
                .step(op::OPERATOR, &[2, 7])
                .step(op::OPERATOR, &[4, 33])
                .step(op::OPERATOR, &[5, 0xFF])
                .step(op::TIMEOUT, &[])
                .step(op::TIME, &[0xC1]),
        ),
    ]
}
