//! The `grapevine` binary: inspect every framed vector, encode it back, and refuse bad input.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::temp_path;

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

// ----- usage, exit codes, config files, the data directory --------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn bare_grapevine_prints_help_and_help_exits_0() {
    let (code, out, err) = grapevine(&[], None);
    assert_eq!(code, 2, "{out} {err}");
    for part in ["Usage: grapevine <COMMAND>", "run", "inspect", "--help"] {
        assert!(err.contains(part), "{part} missing: {err}");
    }
    let (code, out, _) = grapevine(&["--help"], None);
    assert_eq!(code, 0);
    assert!(out.contains("Usage: grapevine <COMMAND>"), "{out}");
    let (code, out, _) = grapevine(&["run", "--help"], None);
    assert_eq!(code, 0);
    assert!(out.contains("--p2p-accept-incoming-connections"), "{out}");
    assert!(!out.contains("--accept-incoming-connections"), "{out}");
}

#[test]
fn clap_errors_keep_usage_suggestions_and_possible_values() {
    let (code, _, err) = grapevine(&["run", "--p2p-endpiont", "127.0.0.1:1"], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("a similar argument exists: '--p2p-endpoint'"),
        "{err}"
    );
    assert!(err.contains("Usage: grapevine run"), "{err}");
    let (code, _, err) = grapevine(&["run", "--p2p-advertise-peer-algorithm", "most"], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("[possible values: all, nothing, list, exclude_list]"),
        "{err}"
    );
    let (code, _, err) = grapevine(&["run", "--p2p-accept-incoming-connections=perhaps"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("true or false"), "{err}");
}

#[test]
fn a_busy_port_exits_1_and_creates_nothing() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let dir = temp_path("busy");
    let dir_arg = dir.to_str().unwrap();
    let (code, _, err) = grapevine(&["run", "--p2p-endpoint", &busy_addr, "-d", dir_arg], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot listen on"), "{err}");
    assert!(!dir.exists(), "{} was created", dir.display());
    // The status API's port too.
    let p2p = format!("127.0.0.1:{}", free_port());
    let (code, _, err) = grapevine(
        &[
            "run",
            "--p2p-endpoint",
            &p2p,
            "--rpc-endpoint",
            &busy_addr,
            "-d",
            dir_arg,
        ],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("status API"), "{err}");
    assert!(!dir.exists(), "{} was created", dir.display());
    // An existing empty directory stays empty.
    std::fs::create_dir_all(&dir).unwrap();
    let (code, _, err) = grapevine(&["run", "--p2p-endpoint", &busy_addr, "-d", dir_arg], None);
    assert_eq!(code, 1, "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(&dir);
    drop(busy);
}

#[test]
fn configuration_errors_exit_2_naming_file_line_and_key() {
    let dir = temp_path("badini");
    std::fs::create_dir_all(&dir).unwrap();
    let ini = dir.join("config.ini");
    std::fs::write(
        &ini,
        "# comment\nmax-connections = 50\np2p-endpoint = nowhere\n",
    )
    .unwrap();
    let (code, _, err) = grapevine(&["run", "-d", dir.to_str().unwrap()], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&ini.display().to_string()), "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("p2p-endpoint"), "{err}");
    // Nothing but the config file is there.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    let (code, _, err) = grapevine(&["run", "--config", "/nonexistent/grapevine.toml"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/grapevine.toml"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreachable_node_is_a_runtime_failure() {
    let rpc = format!("127.0.0.1:{}", free_port());
    let (code, _, err) = grapevine(&["info", "--rpc-endpoint", &rpc], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
}

/// A `grapevine run` child killed (and reaped) when dropped.
struct Node(Option<std::process::Child>);

impl Node {
    fn spawn(args: &[&str]) -> Node {
        let child = Command::new(env!("CARGO_BIN_EXE_grapevine"))
            .arg("run")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("grapevine runs");
        Node(Some(child))
    }

    /// Kills the node and answers what it wrote to stderr.
    fn stop(mut self) -> String {
        let mut child = self.0.take().unwrap();
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn get(rpc: &str, path: &str) -> Option<Value> {
    grapevine::cli::status::get_json(rpc.parse().unwrap(), path).ok()
}

/// Polls `f` every 50 ms for up to 30 s.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn witness_node_config_ini_starts_grapevine_with_its_p2p_settings() {
    let base = temp_path("witness");
    // b: a fresh node on the command line; it writes a default config.ini once listening.
    let (b_p2p, b_rpc) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let b_dir = base.join("b");
    let b = Node::spawn(&[
        "-d",
        b_dir.to_str().unwrap(),
        "--p2p-endpoint",
        &b_p2p,
        "--rpc-endpoint",
        &b_rpc,
        "--p2p-connect-to-new-peers",
        "false",
    ]);
    eventually("b answers", || get(&b_rpc, "/info"));
    // a: configured only by a config.ini in witness_node's shape.
    let (a_p2p, a_rpc, inbound_port) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
        free_port(),
    );
    let a_dir = base.join("a");
    std::fs::create_dir_all(&a_dir).unwrap();
    let ini = include_str!("config/witness_node_config.ini")
        .replace("@P2P_ENDPOINT@", &a_p2p)
        .replace("@INBOUND_PORT@", &inbound_port.to_string())
        .replace("@SEED_NODE@", &b_p2p)
        .replace("@RPC_ENDPOINT@", &a_rpc);
    std::fs::write(a_dir.join("config.ini"), &ini).unwrap();
    let a = Node::spawn(&["-d", a_dir.to_str().unwrap()]);
    let info = eventually("a answers on the config's rpc-endpoint", || {
        get(&a_rpc, "/info")
    });
    assert_eq!(info["p2p_endpoint"], a_p2p.as_str());
    // a dialled its seed and told it, in hello, the configured inbound port with the
    // connection's own address (the configured address was 0.0.0.0).
    let told = format!("127.0.0.1:{inbound_port}");
    eventually("b sees a's inbound endpoint", || {
        get(&b_rpc, "/peers")?
            .as_array()?
            .iter()
            .any(|p| p["direction"] == "inbound" && p["inbound_endpoint"] == told.as_str())
            .then_some(())
    });
    // b's first start wrote a commented config.ini; a's own file is left as it was.
    let written = eventually("b's config.ini", || {
        std::fs::read_to_string(b_dir.join("config.ini")).ok()
    });
    assert!(
        written.contains("\n# p2p-endpoint = 0.0.0.0:1776\n"),
        "{written}"
    );
    assert!(written.contains("\n# seed-node = \n"), "{written}");
    assert_eq!(
        std::fs::read_to_string(a_dir.join("config.ini")).unwrap(),
        ini
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&a_dir.join("p2p/node_key")), 0o600);
        assert_eq!(mode(&b_dir.join("p2p/node_key")), 0o600);
    }
    let a_log = a.stop();
    drop(b);
    // One warning lists what grapevine ignores; the logging sections are one note.
    let warnings: Vec<&str> = a_log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("ignoring settings"))
        .collect();
    assert_eq!(warnings.len(), 1, "{a_log}");
    for key in ["plugins (line", "private-key", "required-participation"] {
        assert!(warnings[0].contains(key), "{key}: {}", warnings[0]);
    }
    assert!(!warnings[0].contains("p2p-"), "{}", warnings[0]);
    assert_eq!(
        a_log
            .lines()
            .filter(|l| l.contains("[log.console_appender.stderr]"))
            .count(),
        1,
        "{a_log}"
    );
    let _ = std::fs::remove_dir_all(&base);
}
