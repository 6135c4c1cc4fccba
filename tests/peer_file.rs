//! `p2p/peers.json` is bitshares-core's file: grapevine reads what the reference writes (every
//! field, `last_error` an fc exception with a stack of log messages), writes what the
//! reference reads, and never loses a file it cannot read.
//!
//! `tests/fixtures/peers_bitshares_core.json` is written by hand in the reference's exact
//! shape and layout: the records as FC_REFLECT of potential_peer_record lists them, serialized
//! as fc's to_variant does (enum names, time_point_sec strings, exceptions as code, name,
//! message, stack) and pretty-printed as fc's save_to_file prints them.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use grapevine::store::UNREADABLE_SUFFIX;
use grapevine::store::fc_json::{FcException, LogLevel};
use grapevine::store::peer_db::{self, Disposition, PeerDatabase, PeerRecord};
use grapevine::wire::types::{Endpoint, TimePoint};
use serde_json::{Value, json};

const FIXTURE: &str = include_str!("fixtures/peers_bitshares_core.json");

fn secs(text: &str) -> TimePoint {
    TimePoint(grapevine::wire::time::parse_micros(text).unwrap())
}

fn ep(text: &str) -> Endpoint {
    text.parse().unwrap()
}

#[test]
fn a_bitshares_core_file_loads_with_every_field() {
    let records = peer_db::parse(FIXTURE.as_bytes()).expect("the reference's file parses");
    assert_eq!(records.len(), 5);

    let ok = &records[0];
    assert_eq!(ok.endpoint, ep("192.0.2.10:1776"));
    assert_eq!(ok.last_seen_time, secs("2024-03-01T09:59:58"));
    assert_eq!(
        ok.last_connection_disposition,
        Disposition::LastConnectionSucceeded
    );
    assert_eq!(ok.last_connection_attempt_time, secs("2024-03-01T08:12:40"));
    assert_eq!(ok.number_of_successful_connection_attempts, 14);
    assert_eq!(ok.number_of_failed_connection_attempts, 0);
    assert_eq!(ok.last_error, None);
    assert!(!ok.seed);

    let failed = &records[1];
    assert_eq!(
        failed.last_connection_disposition,
        Disposition::LastConnectionFailed
    );
    assert_eq!(failed.number_of_successful_connection_attempts, 3);
    assert_eq!(failed.number_of_failed_connection_attempts, 2);
    let e = failed.last_error.as_ref().expect("an exception");
    assert_eq!(
        (e.code, e.name.as_str(), e.message.as_str()),
        (0, "exception", "unspecified")
    );
    assert_eq!(e.stack.len(), 2);
    let inner = &e.stack[0];
    assert_eq!(inner.context.level, LogLevel::Error);
    assert_eq!(inner.context.file, "asio.cpp");
    assert_eq!(inner.context.line, 99);
    assert_eq!(inner.context.method, "connect_handler");
    assert_eq!(inner.context.hostname, "");
    assert_eq!(inner.context.thread_name, "fc::asio worker #1");
    assert_eq!(inner.context.timestamp, secs("2024-03-01T09:40:12"));
    assert_eq!(inner.context.context, None);
    assert_eq!(inner.format, "${message} ");
    assert_eq!(inner.data["message"], "Connection refused");
    let outer = &e.stack[1];
    assert_eq!(outer.context.level, LogLevel::Warn);
    assert_eq!(outer.context.context.as_deref(), Some("connect_to_task"));
    assert_eq!(outer.data["attempt"], 2);
    assert_eq!(outer.text(), "error connecting to 198.51.100.4:1776");
    // What a person reads (and GET /potential-peers shows): the innermost message.
    assert_eq!(e.to_string(), "Connection refused");
    let api = serde_json::to_value(failed).unwrap();
    assert_eq!(api["last_error"], "Connection refused");
    assert_eq!(api["last_connection_disposition"], "last_connection_failed");

    let rejected = &records[2];
    assert_eq!(
        rejected.last_connection_disposition,
        Disposition::LastConnectionRejected
    );
    let e = rejected.last_error.as_ref().unwrap();
    assert_eq!(e.stack[0].context.level, LogLevel::Info);
    assert!(e.stack[0].data.is_empty());
    assert_eq!(e.to_string(), "You are on a different chain from me");

    let eof = &records[3];
    assert_eq!(
        eof.last_connection_disposition,
        Disposition::LastConnectionHandshakingFailed
    );
    assert_eq!(eof.number_of_failed_connection_attempts, 5);
    let e = eof.last_error.as_ref().unwrap();
    assert_eq!(
        (e.code, e.name.as_str(), e.message.as_str()),
        (11, "eof_exception", "End Of File")
    );
    assert_eq!(e.stack[1].data["e"]["name"], "eof_exception");
    assert_eq!(e.to_string(), "End Of File: End of file");

    let never = &records[4];
    assert_eq!(
        never.last_connection_disposition,
        Disposition::NeverAttemptedToConnect
    );
    assert_eq!(never.last_seen_time, TimePoint(0));
    assert_eq!(never.last_connection_attempt_time, TimePoint(0));
}

#[test]
fn a_round_trip_writes_the_reference_shape() {
    let records = peer_db::parse(FIXTURE.as_bytes()).unwrap();
    let written = peer_db::to_file_bytes(&records).unwrap();
    let back: Value = serde_json::from_slice(&written).unwrap();
    let original: Value = serde_json::from_str(FIXTURE).unwrap();
    assert_eq!(back, original, "the same records, keys and values");
    // Keys in the reference's order, record by record.
    for (b, o) in back
        .as_array()
        .unwrap()
        .iter()
        .zip(original.as_array().unwrap())
    {
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(b), keys(o));
    }
    assert_eq!(peer_db::parse(&written).unwrap(), records);
}

/// What fc's from_variant demands of a `vector<potential_peer_record>`, checked on the JSON
/// alone (independently of grapevine's reader): an array of objects; the reflected keys with
/// the types fc converts them from; the enum by name; time_point_sec strings boost can read;
/// `last_error` absent or an exception whose stack entries carry every key fc's log_context
/// and log_message constructors read. Keys fc does not know are ignored by it and returned.
fn fc_check(doc: &Value) -> Result<BTreeSet<String>, String> {
    fn time(v: &Value, what: &str) -> Result<(), String> {
        let s = v.as_str().ok_or(format!("{what}: not a string"))?;
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let shape = b.len() == 19
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b'T'
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19);
        let year: u32 = s.get(..4).and_then(|y| y.parse().ok()).unwrap_or(0);
        if !shape || !(1970..=2106).contains(&year) {
            return Err(format!("{what}: {s:?} is not a time_point_sec"));
        }
        Ok(())
    }
    fn string(o: &serde_json::Map<String, Value>, key: &str, what: &str) -> Result<(), String> {
        match o.get(key) {
            Some(Value::String(_)) => Ok(()),
            other => Err(format!("{what}.{key}: {other:?} is not a string")),
        }
    }
    fn uint(v: Option<&Value>, max: u64, what: &str) -> Result<(), String> {
        match v.and_then(Value::as_u64) {
            Some(n) if n <= max => Ok(()),
            _ => Err(format!("{what}: {v:?} is not an integer up to {max}")),
        }
    }
    let mut unknown = BTreeSet::new();
    let records = doc.as_array().ok_or("not an array")?;
    for (i, r) in records.iter().enumerate() {
        let what = format!("record {i}");
        let o = r.as_object().ok_or(format!("{what}: not an object"))?;
        let endpoint = o
            .get("endpoint")
            .and_then(Value::as_str)
            .ok_or(format!("{what}: no endpoint string"))?;
        let (ip, port) = endpoint
            .split_once(':')
            .ok_or(format!("{what}: {endpoint} has no port"))?;
        let octets: Vec<&str> = ip.split('.').collect();
        if octets.len() != 4 || octets.iter().any(|o| o.parse::<u8>().is_err()) {
            return Err(format!("{what}: {ip} is not a dotted IPv4 address"));
        }
        port.parse::<u16>()
            .map_err(|_| format!("{what}: {port} is not a port"))?;
        time(&o["last_seen_time"], &format!("{what}.last_seen_time"))?;
        time(
            &o["last_connection_attempt_time"],
            &format!("{what}.last_connection_attempt_time"),
        )?;
        let names = [
            "never_attempted_to_connect",
            "last_connection_failed",
            "last_connection_rejected",
            "last_connection_handshaking_failed",
            "last_connection_succeeded",
        ];
        let d = o.get("last_connection_disposition").and_then(Value::as_str);
        if !d.is_some_and(|d| names.contains(&d)) {
            return Err(format!("{what}: disposition {d:?}"));
        }
        for key in [
            "number_of_successful_connection_attempts",
            "number_of_failed_connection_attempts",
        ] {
            uint(o.get(key), u64::from(u32::MAX), &format!("{what}.{key}"))?;
        }
        if let Some(e) = o.get("last_error") {
            let what = format!("{what}.last_error");
            let e = e.as_object().ok_or(format!("{what}: not an object"))?;
            match e.get("code").and_then(Value::as_i64) {
                Some(c) if i32::try_from(c).is_ok() => {}
                other => return Err(format!("{what}.code: {other:?}")),
            }
            string(e, "name", &what)?;
            string(e, "message", &what)?;
            let stack = e
                .get("stack")
                .and_then(Value::as_array)
                .ok_or(format!("{what}: no stack array"))?;
            for (j, m) in stack.iter().enumerate() {
                let what = format!("{what}.stack[{j}]");
                let m = m.as_object().ok_or(format!("{what}: not an object"))?;
                string(m, "format", &what)?;
                if !m.get("data").is_some_and(Value::is_object) {
                    return Err(format!("{what}: data is not an object"));
                }
                let c = m
                    .get("context")
                    .and_then(Value::as_object)
                    .ok_or(format!("{what}: no context object"))?;
                let level = c.get("level").and_then(Value::as_str);
                if !level
                    .is_some_and(|l| ["all", "debug", "info", "warn", "error", "off"].contains(&l))
                {
                    return Err(format!("{what}: level {level:?}"));
                }
                for key in ["file", "method", "hostname", "thread_name"] {
                    string(c, key, &what)?;
                }
                uint(c.get("line"), u64::from(u32::MAX), &format!("{what}.line"))?;
                time(&c["timestamp"], &format!("{what}.timestamp"))?;
                for key in ["context", "task_name"] {
                    if c.contains_key(key) {
                        string(c, key, &what)?;
                    }
                }
            }
        }
        let known = [
            "endpoint",
            "last_seen_time",
            "last_connection_disposition",
            "last_connection_attempt_time",
            "number_of_successful_connection_attempts",
            "number_of_failed_connection_attempts",
            "last_error",
        ];
        unknown.extend(o.keys().filter(|k| !known.contains(&k.as_str())).cloned());
    }
    Ok(unknown)
}

#[test]
fn the_check_accepts_the_reference_and_refuses_what_fc_refuses() {
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    assert_eq!(fc_check(&fixture), Ok(BTreeSet::new()));
    let broken = |f: &dyn Fn(&mut Value)| {
        let mut v = fixture.clone();
        f(&mut v);
        fc_check(&v).is_err()
    };
    assert!(broken(&|v| {
        let context = &mut v[1]["last_error"]["stack"][0]["context"];
        context.as_object_mut().unwrap().remove("hostname");
    }));
    assert!(broken(&|v| v[1]["last_error"] = json!("Connection refused")));
    assert!(broken(&|v| v[0]["last_seen_time"] = json!(1_700_000_000)));
    assert!(broken(
        &|v| v[0]["last_connection_disposition"] = json!("failed")
    ));
    assert!(broken(&|v| v[0]["endpoint"] = json!("[::1]:1776")));
}

#[test]
fn what_grapevine_writes_passes_the_fc_check() {
    let now = TimePoint(1_700_000_000_654_321);
    let mut db = PeerDatabase::new();
    let dispositions = [
        Disposition::NeverAttemptedToConnect,
        Disposition::LastConnectionFailed,
        Disposition::LastConnectionRejected,
        Disposition::LastConnectionHandshakingFailed,
        Disposition::LastConnectionSucceeded,
    ];
    for (i, d) in dispositions.into_iter().enumerate() {
        let r = db.entry(Endpoint::new(
            std::net::Ipv4Addr::new(127, 0, 0, 1),
            2000 + i as u16,
        ));
        r.last_connection_disposition = d;
        r.last_seen_time = now;
        r.last_connection_attempt_time = TimePoint(now.0 - 1);
        r.number_of_failed_connection_attempts = i as u32;
        r.number_of_successful_connection_attempts = u32::MAX;
    }
    // Errors with everything a text can hold: quotes, backslashes, placeholders, controls,
    // non-ASCII; and times outside a time_point_sec's range.
    let odd = ep("127.0.0.1:2001");
    db.update(&odd, |r| {
        r.set_error("said \"no\" \\ ${who} \u{1}\u{8}\u{c} \u{7f} é\n", now);
        r.last_seen_time = TimePoint(i64::MAX);
        r.last_connection_attempt_time = TimePoint(-1);
    });
    db.update(&ep("127.0.0.1:2002"), |r| {
        r.set_error("Closed for a newer socket: key exchange unfinished", now)
    });
    db.entry(ep("127.0.0.1:2005")).seed = true;
    let dir = support::temp_dir("peer-file-write");
    let path = dir.join(peer_db::PEER_DB_FILE);
    peer_db::save(&path, &db.snapshot()).unwrap();

    let bytes = std::fs::read(&path).unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        fc_check(&doc),
        Ok(BTreeSet::from(["seed".to_string()])),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    // Only escapes fc's parser decodes (it reads \u, \b and \f back as letters).
    let text = String::from_utf8(bytes.clone()).unwrap();
    for bad in ["\\u", "\\b", "\\f"] {
        assert!(!text.contains(bad), "{bad} in {text}");
    }
    let records = doc.as_array().unwrap();
    assert_eq!(records.len(), 6);
    assert!(
        records
            .iter()
            .all(|r| r.get("seed").is_none() || r["seed"] == true)
    );
    assert_eq!(records[1]["last_seen_time"], "2106-02-07T06:28:15");
    assert_eq!(
        records[1]["last_connection_attempt_time"],
        "1970-01-01T00:00:00"
    );
    assert_eq!(records[0]["last_seen_time"], "2023-11-14T22:13:20");
    assert_eq!(
        records[2]["last_error"],
        json!({
            "code": 0,
            "name": "exception",
            "message": "Closed for a newer socket: key exchange unfinished",
            "stack": [{
                "context": {
                    "level": "warn", "file": "grapevine", "line": 0, "method": "",
                    "hostname": "", "thread_name": "grapevine",
                    "timestamp": "2023-11-14T22:13:20"
                },
                "format": "Closed for a newer socket: key exchange unfinished",
                "data": {}
            }]
        })
    );
    assert!(records[0].get("last_error").is_none(), "left out when none");
    // And grapevine reads it back as it wrote it, to the second.
    let back = peer_db::load(&path).unwrap();
    assert_eq!(back.len(), 6);
    assert_eq!(back[0].last_seen_time, TimePoint(1_700_000_000_000_000));
    assert_eq!(back[1].last_error, db.get(&odd).unwrap().last_error);
    assert!(back[5].seed);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn earlier_grapevine_files_still_load() {
    let old = br#"[{"endpoint": "127.0.0.1:7", "last_seen_time": "1970-01-01T00:00:05",
        "last_connection_disposition": "last_connection_failed",
        "last_connection_attempt_time": "1970-01-01T00:00:05",
        "number_of_successful_connection_attempts": 0,
        "number_of_failed_connection_attempts": 1, "last_error": "refused", "seed": true}]"#;
    let records = peer_db::parse(old).unwrap();
    let e: &FcException = records[0].last_error.as_ref().unwrap();
    assert_eq!(e.to_string(), "refused");
    assert_eq!(e.stack[0].context.timestamp, TimePoint(5_000_000));
    assert!(records[0].seed);
}

#[test]
fn fc_leniencies_are_mirrored() {
    // Numbers as strings, an enum by number, the compact time form, null last_error, unknown
    // keys, missing counters, and a duplicate endpoint (the first record wins).
    let text = br#"[
        {"endpoint": "127.0.0.1:9", "last_connection_disposition": 4,
         "last_seen_time": "20240301T095958", "number_of_failed_connection_attempts": "3",
         "last_error": null, "comment": "hand-edited"},
        {"endpoint": "127.0.0.1:9", "last_connection_disposition": "last_connection_failed"},
    ]"#;
    let records = peer_db::parse(text).unwrap();
    assert_eq!(
        records[0].last_connection_disposition,
        Disposition::LastConnectionSucceeded
    );
    assert_eq!(records[0].last_seen_time, secs("2024-03-01T09:59:58"));
    assert_eq!(records[0].number_of_failed_connection_attempts, 3);
    assert_eq!(records[0].number_of_successful_connection_attempts, 0);
    let db = PeerDatabase::from_records(records);
    assert_eq!(db.len(), 1);
    assert_eq!(
        db.get(&ep("127.0.0.1:9"))
            .unwrap()
            .last_connection_disposition,
        Disposition::LastConnectionSucceeded
    );
    // What fc refuses is refused: a disposition out of range, a record without an endpoint.
    assert!(
        peer_db::parse(br#"[{"endpoint": "127.0.0.1:9", "last_connection_disposition": 5}]"#)
            .is_err()
    );
    assert!(peer_db::parse(br#"[{"last_seen_time": "2024-03-01T09:59:58"}]"#).is_err());
    assert!(peer_db::parse(br#"{"endpoint": "127.0.0.1:9"}"#).is_err());
}

#[test]
fn stray_commas_load_and_comments_are_moved_aside_never_overwritten() {
    let dir = support::temp_dir("peer-file-commas");
    let path = dir.join(peer_db::PEER_DB_FILE);
    let now = TimePoint(1_700_000_000_000_000);
    // A hand edit that left trailing commas, in an object and in the array.
    let edited = FIXTURE.replace(
        "\"number_of_failed_connection_attempts\": 0\n  },{",
        "\"number_of_failed_connection_attempts\": 0,\n  },{",
    );
    let edited = format!("{},\n]", edited.trim_end().trim_end_matches(']'));
    assert!(
        serde_json::from_str::<Value>(&edited).is_err(),
        "not strict JSON"
    );
    std::fs::write(&path, &edited).unwrap();
    let records = peer_db::load_or_move_aside(&path, now).unwrap();
    assert_eq!(records, peer_db::parse(FIXTURE.as_bytes()).unwrap());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        edited,
        "read in place"
    );

    // A comment is not JSON, and fc refuses it too: the file is moved aside, never lost.
    let commented = format!("// my peers\n{FIXTURE}");
    std::fs::write(&path, &commented).unwrap();
    assert!(peer_db::load_or_move_aside(&path, now).unwrap().is_empty());
    assert!(!path.exists());
    let aside = dir.join(format!("peers.json{UNREADABLE_SUFFIX}1700000000"));
    assert_eq!(std::fs::read_to_string(aside).unwrap(), commented);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The issue's case end to end: a node started on a data directory holding bitshares-core's
/// `p2p/peers.json` reads every record and, when it stops, writes them back in the same shape,
/// exceptions included, instead of replacing the file with `[]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_keeps_a_bitshares_core_peer_database() {
    let dir = support::temp_dir("peer-file-node");
    let p2p = grapevine::runtime::p2p_dir(&dir);
    std::fs::create_dir_all(&p2p).unwrap();
    // The fixture with loopback endpoints (nothing is dialled: no connections are desired),
    // its times left as they are: records last seen in 2024 are kept, as the reference keeps
    // them (it only trims a file to its maximum size).
    let mut doc: Value = serde_json::from_str(FIXTURE).unwrap();
    for (i, r) in doc.as_array_mut().unwrap().iter_mut().enumerate() {
        r["endpoint"] = json!(format!("127.0.0.{}:{}", i + 2, 1776 + i));
    }
    let text = serde_json::to_string_pretty(&doc).unwrap();
    std::fs::write(p2p.join("peers.json"), &text).unwrap();

    let mut config = support::config(dir.clone(), vec![]);
    config.node.connect_to_new_peers = false;
    config.node.desired_connections = 0;
    let node = support::start(config).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    assert!(
        node.control(grapevine::runtime::Control::PotentialPeers(tx))
            .await
    );
    let loaded: Vec<PeerRecord> = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.len(), 5, "every record loaded");
    node.shutdown().await;

    let saved: Value =
        serde_json::from_slice(&std::fs::read(p2p.join("peers.json")).unwrap()).unwrap();
    let by_endpoint = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| (r["endpoint"].as_str().unwrap().to_string(), r.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (before, after) = (by_endpoint(&doc), by_endpoint(&saved));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (endpoint, r) in &before {
        // Nothing connected, so nothing moved: times, history and errors are kept.
        for key in [
            "last_seen_time",
            "last_connection_attempt_time",
            "last_connection_disposition",
            "number_of_successful_connection_attempts",
            "number_of_failed_connection_attempts",
            "last_error",
        ] {
            assert_eq!(after[endpoint].get(key), r.get(key), "{endpoint} {key}");
        }
    }
    assert_eq!(fc_check(&saved), Ok(BTreeSet::new()));
    let names: Vec<String> = std::fs::read_dir(&p2p)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains(UNREADABLE_SUFFIX)),
        "nothing moved aside: {names:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

proptest::proptest! {
    /// Whatever a file holds, reading it answers records or an error, never a panic.
    #[test]
    fn any_bytes_are_read_without_panicking(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = peer_db::parse(&bytes);
    }

    /// The reference's file with one byte changed (a torn or mistyped edit).
    #[test]
    fn a_damaged_reference_file_is_read_without_panicking(
        pos in 0..FIXTURE.len(),
        byte in proptest::prelude::any::<u8>(),
    ) {
        let mut bytes = FIXTURE.as_bytes().to_vec();
        bytes[pos] = byte;
        let _ = peer_db::parse(&bytes);
    }
}
