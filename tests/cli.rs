//! The `grapevine` binary: inspect every framed vector, encode it back, and refuse bad input.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

fn grapevine(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_grapevine"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn messages() -> Vec<Value> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/messages.json"),
    )
    .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["messages"].as_array().unwrap().clone()
}

#[test]
fn inspect_then_encode_every_framed_vector() {
    let all = messages();
    assert!(all.len() >= 19);
    for m in all {
        let name = m["name"].as_str().unwrap();
        let framed = m["framed_hex"].as_str().unwrap();
        let (code, out, err) = grapevine(&["inspect", framed], None);
        assert_eq!(code, 0, "{name}: {err}");
        let doc: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(doc["fields"], m["fields"], "{name}");
        assert_eq!(doc["type"], m["type_id"], "{name}");
        // Back through stdin.
        let (code, hex_out, err) = grapevine(&["encode"], Some(&out));
        assert_eq!(code, 0, "{name}: {err}");
        assert_eq!(hex_out.trim(), framed, "{name}");
        // Raw data with --type, and back.
        let data = m["data_hex"].as_str().unwrap();
        let t = m["type_id"].to_string();
        let (code, out, err) = grapevine(&["inspect", "--type", &t, data], None);
        assert_eq!(code, 0, "{name}: {err}");
        let (code, hex_out, err) = grapevine(&["encode", &out], None);
        assert_eq!(code, 0, "{name}: {err}");
        assert_eq!(hex_out.trim(), data, "{name}");
    }
}

#[test]
fn several_frames_from_stdin() {
    let all = messages();
    let joined: String = all
        .iter()
        .take(5)
        .map(|m| m["framed_hex"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let (code, out, err) = grapevine(&["inspect"], Some(&joined));
    assert_eq!(code, 0, "{err}");
    let docs: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(docs.as_array().unwrap().len(), 5);
    let (code, hex_out, _) = grapevine(&["encode", "-"], Some(&out));
    assert_eq!(code, 0);
    assert_eq!(hex_out.trim(), joined.replace('\n', ""));
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    for args in [
        vec!["inspect", "zz"],
        vec!["inspect", "0100"],
        // A header declaring 2 MiB + 1.
        vec!["inspect", "0100200089130000"],
        vec!["encode", "{\"type\": 5006}"],
        vec!["encode", "not json"],
        vec!["--no-such-flag"],
    ] {
        let (code, out, err) = grapevine(&args, None);
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        assert!(out.is_empty(), "{args:?}");
        assert!(!err.trim().is_empty(), "{args:?}");
    }
    let (_, _, err) = grapevine(&["inspect", "0100200089130000"], None);
    assert!(err.contains("above the 2097152-byte limit"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
