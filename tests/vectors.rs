//! Every vector in `tests/vectors/` (copied byte for byte from `../shared/vectors/`), checked
//! against the library. A vector that cannot be checked fails; nothing is skipped.

use std::path::{Path, PathBuf};

use grapevine::crypto::identity::{is_canonical, recover_compact, sign_compact_with_attempts};
use grapevine::crypto::key_exchange::{SessionKeys, shared_secret};
use grapevine::crypto::keys::{decompress, ecdh_x, public_key, secret_from_bytes};
use grapevine::crypto::{CipherStream, ExchangeProgress, KeyExchange};
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(vectors_dir().join(name))
        .unwrap_or_else(|e| panic!("cannot read vector file {name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {key} missing or not a string in {v}"))
}

fn hx(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(s(v, key)).unwrap_or_else(|e| panic!("field {key} is not hex: {e}"))
}

fn arr<const N: usize>(v: &Value, key: &str) -> [u8; N] {
    hx(v, key)
        .try_into()
        .unwrap_or_else(|_| panic!("field {key} is not {N} bytes"))
}

fn list<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    let items = v[key]
        .as_array()
        .unwrap_or_else(|| panic!("vector field {key} missing or not a list"));
    assert!(!items.is_empty(), "vector list {key} is empty");
    items
}

#[test]
fn vector_copies_are_byte_identical_to_shared() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
    if !shared.is_dir() {
        // A clone elsewhere has only its own copy; CI and developers' trees have both.
        return;
    }
    let mut names: Vec<_> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".json"))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for name in names {
        let theirs = std::fs::read(shared.join(&name)).unwrap();
        let ours = std::fs::read(vectors_dir().join(&name))
            .unwrap_or_else(|e| panic!("tests/vectors lacks {name:?}: {e}"));
        assert!(theirs == ours, "tests/vectors/{name:?} differs from shared");
    }
}

#[test]
fn key_exchange_iv_and_cbc_streams() {
    let v = load("crypto.json");
    for pair in list(&v, "pairs") {
        let a_secret = secret_from_bytes(&arr(pair, "a_ephemeral_private_key")).unwrap();
        let b_secret = secret_from_bytes(&arr(pair, "b_ephemeral_private_key")).unwrap();
        let a_pub: [u8; 33] = arr(pair, "a_ephemeral_public_key_wire");
        let b_pub: [u8; 33] = arr(pair, "b_ephemeral_public_key_wire");
        assert_eq!(public_key(&a_secret), a_pub);
        assert_eq!(public_key(&b_secret), b_pub);

        let ecdh = ecdh_x(&b_secret, &decompress(&a_pub).unwrap()).to_vec();
        assert_eq!(ecdh, hx(pair, "ecdh_point_compressed")[1..]);

        let from_a = shared_secret(&a_secret, &b_pub).unwrap();
        let from_b = shared_secret(&b_secret, &a_pub).unwrap();
        assert_eq!(from_a, from_b);
        assert_eq!(from_a.to_vec(), hx(pair, "shared_secret_sha512_of_x"));

        // The same through the sans-IO exchange, fed byte by byte.
        let mut kx = KeyExchange::with_secret(a_secret);
        assert_eq!(kx.our_public_key(), &a_pub);
        let mut keys = None;
        for (i, b) in b_pub.iter().enumerate() {
            match kx.feed(std::slice::from_ref(b)).unwrap() {
                ExchangeProgress::NeedMore => assert!(i < 32),
                ExchangeProgress::Done {
                    keys: k,
                    peer_key,
                    consumed,
                } => {
                    assert_eq!(i, 32);
                    assert_eq!(consumed, 1);
                    assert_eq!(peer_key, b_pub);
                    keys = Some(k);
                }
            }
        }
        let keys: SessionKeys = keys.expect("exchange completed");
        assert_eq!(
            keys.aes_key.to_vec(),
            hx(pair, "aes256_key_sha256_of_shared_secret")
        );
        assert_eq!(keys.aes_iv.to_vec(), hx(pair, "aes_cbc_iv_bytes"));
        let (hi, lo) = grapevine::crypto::city::city_hash_crc_128(&keys.shared_secret);
        assert_eq!(
            format!("{hi:016x}"),
            s(pair, "city_hash_crc_128_of_shared_secret_hi64")
        );
        assert_eq!(
            format!("{lo:016x}"),
            s(pair, "city_hash_crc_128_of_shared_secret_lo64")
        );
        assert_eq!(
            keys.hello_digest().to_vec(),
            hx(pair, "hello_signature_digest_sha256_of_shared_secret")
        );

        let mut enc = keys.encryptor();
        let mut dec = keys.decryptor();
        let mut all_plain = Vec::new();
        let mut all_cipher = Vec::new();
        for w in list(pair, "stream_writes") {
            let plain = hx(w, "plaintext");
            let mut buf = plain.clone();
            enc.apply(&mut buf).unwrap();
            assert_eq!(buf, hx(w, "ciphertext"));
            dec.apply(&mut buf).unwrap();
            assert_eq!(buf, plain);
            all_plain.extend_from_slice(&plain);
            all_cipher.extend_from_slice(&hx(w, "ciphertext"));
        }
        assert_eq!(all_plain, hx(pair, "stream_plaintext_concatenated"));
        assert_eq!(all_cipher, hx(pair, "stream_ciphertext_concatenated"));
        let mut whole = all_plain.clone();
        CipherStream::encryptor(&keys.aes_key, &keys.aes_iv)
            .apply(&mut whole)
            .unwrap();
        assert_eq!(whole, all_cipher);

        for who in ["a", "b"] {
            check_signature(&pair[format!("hello_signed_shared_secret_by_{who}_node_key")]);
        }
    }
}

fn check_signature(sig: &Value) {
    assert!(sig.is_object(), "signature vector missing");
    let key = secret_from_bytes(&arr(sig, "signer_private_key")).unwrap();
    let public: [u8; 33] = arr(sig, "signer_public_key");
    assert_eq!(public_key(&key), public);
    let digest: [u8; 32] = arr(sig, "digest");
    let expected: [u8; 65] = arr(sig, "compact_signature");
    let (ours, attempts) = sign_compact_with_attempts(&key, &digest, true);
    assert_eq!(hex::encode(ours), hex::encode(expected));
    assert_eq!(
        u64::from(attempts),
        sig["nonce_attempts_until_canonical"].as_u64().unwrap()
    );
    assert_eq!(u64::from(ours[0]), sig["header_byte"].as_u64().unwrap());
    assert_eq!(
        u64::from(ours[0] - 31),
        sig["recovery_id"].as_u64().unwrap()
    );
    assert_eq!(is_canonical(&ours), sig["is_canonical"].as_bool().unwrap());
    let first: [u8; 65] = arr(sig, "first_candidate_signature_without_canonical_loop");
    let (first_ours, _) = sign_compact_with_attempts(&key, &digest, false);
    assert_eq!(hex::encode(first_ours), hex::encode(first));
    assert_eq!(
        is_canonical(&first),
        sig["first_candidate_is_canonical"].as_bool().unwrap()
    );
    assert_eq!(recover_compact(&expected, &digest).unwrap(), public);
    assert_eq!(recover_compact(&first, &digest).unwrap(), public);
}

#[test]
fn extra_compact_signatures() {
    let v = load("crypto.json");
    let extra = list(&v, "extra_compact_signatures");
    assert!(
        extra
            .iter()
            .any(|e| e["nonce_attempts_until_canonical"].as_u64() == Some(2)),
        "the retry case is covered"
    );
    for sig in extra {
        check_signature(sig);
    }
}

use bytes::BytesMut;
use grapevine::crypto::identity::verify_compact;
use grapevine::wire::Message;
use grapevine::wire::frame::{FrameDecoder, SecureCodec, encode_message};
use grapevine::wire::message::{block_id_of, message_hash};

#[test]
fn every_core_message() {
    let v = load("messages.json");
    assert_eq!(v["core_protocol_version"].as_u64(), Some(106));
    let mut types_seen = std::collections::BTreeSet::new();
    for m in list(&v, "messages") {
        let name = s(m, "name");
        let msg_type = m["type_id"].as_u64().unwrap() as u32;
        let data = hx(m, "data_hex");
        assert_eq!(
            data.len() as u64,
            m["data_size"].as_u64().unwrap(),
            "{name}"
        );
        let msg = Message::decode(msg_type, &data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(msg.msg_type(), msg_type);
        assert!(
            !matches!(msg, Message::Unknown { .. }),
            "{name} decoded as unknown"
        );
        assert!(
            name.starts_with(msg.name()),
            "{name} decoded as {}",
            msg.name()
        );
        assert_eq!(
            hex::encode(msg.to_data()),
            hex::encode(&data),
            "{name} re-encodes"
        );
        assert_eq!(
            message_hash(&data).to_string(),
            s(m, "message_id_ripemd160_of_data"),
            "{name}"
        );
        // The reference's JSON, and back.
        let json = msg.fields_json().unwrap();
        assert_eq!(json, m["fields"], "{name}: JSON form differs");
        let back = Message::from_fields_json(msg_type, m["fields"].clone())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if ![
            "get_current_connections_reply_message",
            "current_time_request_message",
            "current_time_reply_message",
        ]
        .contains(&name)
        {
            // These hold int64 variants and sub-second times that fc.s JSON cannot carry;
            // the inspect document carries them under "exact", checked below.
            assert_eq!(back, msg, "{name}: JSON does not read back");
        }
        // The inspect document: the reference's fields, plus exact values where fc's JSON
        // loses them, reads back to the identical bytes.
        let doc = grapevine::wire::json::message_document(&msg).unwrap();
        assert_eq!(doc["fields"], m["fields"], "{name}");
        assert_eq!(doc["type"].as_u64(), Some(u64::from(msg_type)));
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let reparsed: Value = serde_json::from_str(&text).unwrap();
        let back = grapevine::wire::json::message_from_document(&reparsed)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            hex::encode(back.to_data()),
            hex::encode(&data),
            "{name} via document"
        );
        // The frame.
        let framed = hx(m, "framed_hex");
        let mut out = BytesMut::new();
        encode_message(&msg, &mut out).unwrap();
        assert_eq!(hex::encode(&out), hex::encode(&framed), "{name} framing");
        let mut buf = BytesMut::from(&framed[..]);
        let frame = FrameDecoder::new().decode_frame(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        assert_eq!(frame.msg_type, msg_type);
        assert_eq!(frame.message().unwrap(), msg);
        if msg_type == 1001 {
            let note = s(m, "note");
            let id = block_id_of(&data).unwrap();
            assert!(note.contains(&id.to_string()), "{note}");
            assert!(note.contains(&format!("block number {}", id.block_number())));
        }
        types_seen.insert(msg_type);
    }
    let expected: std::collections::BTreeSet<u32> =
        [1000, 1001].into_iter().chain(5001..=5017).collect();
    assert_eq!(types_seen, expected, "every message type has a vector");
}

/// Checks the partial decode the recorder wrote against our full decode.
fn check_partial_decode(decoded: &Value, msg: &Message, body: &[u8]) {
    let Some(obj) = decoded.as_object() else {
        return;
    };
    let ours = msg.fields_json().unwrap();
    for (key, want) in obj {
        match (msg, key.as_str()) {
            (Message::Block(_), "block_id") => {
                assert_eq!(
                    block_id_of(body).unwrap().to_string(),
                    want.as_str().unwrap()
                )
            }
            (Message::Block(_), "size") => assert_eq!(body.len() as u64, want.as_u64().unwrap()),
            (Message::CurrentTimeRequest(m), "request_sent_time_us") => {
                assert_eq!(m.request_sent_time.0, want.as_i64().unwrap())
            }
            (Message::ConnectionRejected(m), "reason_code") => {
                assert_eq!(u64::from(m.reason_code.to_byte()), want.as_u64().unwrap())
            }
            (Message::ClosingConnection(m), "reason") => {
                assert_eq!(m.reason_for_closing, want.as_str().unwrap())
            }
            (Message::ClosingConnection(m), "due_to_error") => {
                assert_eq!(m.closing_due_to_error, want.as_bool().unwrap())
            }
            (Message::ClosingConnection(m), "has_error") => {
                assert_eq!(m.error.is_some(), want.as_bool().unwrap())
            }
            (_, "ids") => {
                let ids = [
                    "item_hashes_available",
                    "items_to_fetch",
                    "blockchain_synopsis",
                ]
                .iter()
                .find_map(|k| ours.get(*k))
                .expect("message has an id list");
                assert_eq!(ids, want);
            }
            _ => assert_eq!(&ours[key], want, "field {key} of {}", msg.name()),
        }
    }
}

#[test]
fn live_sessions_decrypt_end_to_end() {
    let v = load("live_sessions.json");
    let chain_id = s(&v, "chain_id");
    for session in list(&v, "sessions") {
        let name = s(session, "name");
        let client_secret =
            secret_from_bytes(&arr(session, "client_ephemeral_private_key")).unwrap();
        assert_eq!(
            public_key(&client_secret).to_vec(),
            hx(session, "client_ephemeral_public_key")
        );
        let server_pub: [u8; 33] = arr(session, "server_ephemeral_public_key");
        let keys =
            SessionKeys::from_shared_secret(shared_secret(&client_secret, &server_pub).unwrap());
        assert_eq!(
            keys.shared_secret.to_vec(),
            hx(session, "shared_secret"),
            "{name}"
        );
        assert_eq!(keys.aes_key.to_vec(), hx(session, "aes_key"), "{name}");
        assert_eq!(keys.aes_iv.to_vec(), hx(session, "aes_iv"), "{name}");
        let client_node_pub: [u8; 33] = arr(session, "client_node_public_key");
        let client_node_key = secret_from_bytes(&arr(session, "client_node_private_key")).unwrap();
        assert_eq!(public_key(&client_node_key), client_node_pub);

        // One codec per direction, as each side sees it: the client encrypts what it sends,
        // the server's stream is decrypted from the same key and IV.
        let mut c2s_rx = SecureCodec::for_session(&keys);
        let mut s2c_rx = SecureCodec::for_session(&keys);
        let mut c2s_tx = SecureCodec::for_session(&keys);
        let mut c2s_buf = BytesMut::new();
        let mut s2c_buf = BytesMut::new();
        let mut rejected_reason = None;
        let mut client_hello_valid = None;
        let mut server_hello_valid = None;
        let mut blocks = Vec::new();
        let frames = list(session, "frames");
        for f in frames {
            let dir = s(f, "dir");
            let cipher = hx(f, "ciphertext_hex");
            let plain = hx(f, "plaintext_frame_hex");
            let body = hx(f, "body_hex");
            let (codec, buf) = match dir {
                "client_to_server" => (&mut c2s_rx, &mut c2s_buf),
                "server_to_client" => (&mut s2c_rx, &mut s2c_buf),
                other => panic!("unknown direction {other}"),
            };
            // Feed the ciphertext in awkward pieces.
            let mut frame = None;
            for piece in cipher.chunks(7) {
                buf.extend_from_slice(piece);
                if let Some(fr) = codec.decode_frame(buf).unwrap() {
                    assert!(frame.is_none(), "one frame per recorded write");
                    frame = Some(fr);
                }
            }
            let frame = frame.unwrap_or_else(|| panic!("{name}: {dir} frame incomplete"));
            assert!(buf.is_empty());
            assert_eq!(frame.msg_type as u64, f["type"].as_u64().unwrap());
            assert_eq!(frame.data.to_vec(), body, "{name}");
            let msg = frame.message().unwrap();
            // Re-encoding the message gives back the plaintext frame.
            let mut re = BytesMut::new();
            encode_message(&msg, &mut re).unwrap();
            assert_eq!(
                hex::encode(&re),
                hex::encode(&plain),
                "{name} {}",
                msg.name()
            );
            if dir == "client_to_server" {
                // And encrypting it continues the recorded ciphertext stream.
                let mut ct = BytesMut::new();
                c2s_tx.encode_message(&msg, &mut ct).unwrap();
                assert_eq!(hex::encode(&ct), hex::encode(&cipher), "{name}");
            }
            check_partial_decode(&f["decoded"], &msg, &body);
            match (&msg, dir) {
                (Message::Hello(h), "client_to_server") => {
                    assert_eq!(h.node_public_key.0, client_node_pub);
                    client_hello_valid = Some(verify_compact(
                        &h.signed_shared_secret.0,
                        &keys.hello_digest(),
                        &h.node_public_key.0,
                    ));
                }
                (Message::Hello(h), "server_to_client") => {
                    assert_eq!(h.chain_id.to_string(), chain_id);
                    server_hello_valid = Some(verify_compact(
                        &h.signed_shared_secret.0,
                        &keys.hello_digest(),
                        &h.node_public_key.0,
                    ));
                    assert_eq!(
                        serde_json::to_value(h).unwrap(),
                        session["results"]["peer_hello"],
                        "{name}: peer hello"
                    );
                }
                (Message::ConnectionRejected(r), "server_to_client") => {
                    rejected_reason = Some(r.reason_code.name())
                }
                (Message::Block(b), _) => blocks.push(block_id_of(b).unwrap()),
                _ => {}
            }
        }
        let results = &session["results"];
        assert_eq!(
            server_hello_valid,
            results["peer_hello_signature_valid"].as_bool(),
            "{name}"
        );
        assert_eq!(
            rejected_reason.is_none(),
            results["accepted"].as_bool().unwrap(),
            "{name}"
        );
        // The client's own hello signature is valid exactly when the server did not reject
        // it for an invalid hello.
        assert_eq!(
            client_hello_valid,
            Some(rejected_reason.as_deref() != Some("invalid_hello_message")),
            "{name}"
        );
        let want_blocks: Vec<String> = results["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                assert_eq!(s(b, "id"), s(b, "recomputed_id"));
                s(b, "id").to_string()
            })
            .collect();
        let got: Vec<String> = blocks.iter().map(|b| b.to_string()).collect();
        assert_eq!(got, want_blocks, "{name}");
        for b in results["blocks"].as_array().unwrap() {
            let id = s(b, "id");
            let num = b["num"].as_u64().unwrap() as u32;
            let block_id: grapevine::wire::types::Ripemd160 = id.parse().unwrap();
            assert_eq!(block_id.block_number(), num);
        }
        let trx_sent = frames.iter().any(|f| f["type"].as_u64() == Some(1000));
        assert_eq!(
            trx_sent,
            results["trx_fetched"].as_bool().unwrap(),
            "{name}"
        );
    }
}
