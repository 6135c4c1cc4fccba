//! Every vector in `tests/vectors/` (copied byte for byte from `../shared/vectors/`), checked
//! against the library. A vector that cannot be checked fails; nothing is skipped.

use std::path::{Path, PathBuf};

use grapevine::crypto::identity::{is_canonical, recover_compact, sign_compact_with_attempts};
use grapevine::crypto::key_exchange::{SessionKeys, shared_secret};
use grapevine::crypto::keys::{compress, secret_from_bytes};
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
        assert_eq!(compress(&a_secret.public_key()), a_pub);
        assert_eq!(compress(&b_secret.public_key()), b_pub);

        let ecdh = b_secret
            .diffie_hellman(&grapevine::crypto::keys::decompress(&a_pub).unwrap())
            .raw_secret_bytes()
            .to_vec();
        assert_eq!(ecdh, hx(pair, "ecdh_point_compressed")[1..]);

        let from_a = shared_secret(&a_secret, &b_pub).unwrap();
        let from_b = shared_secret(&b_secret, &a_pub).unwrap();
        assert_eq!(from_a, from_b);
        assert_eq!(from_a.to_vec(), hx(pair, "shared_secret_sha512_of_x"));

        // The same through the sans-IO exchange, fed byte by byte.
        let mut kx = KeyExchange::with_secret(a_secret.clone());
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
    assert_eq!(compress(&key.public_key()), public);
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
