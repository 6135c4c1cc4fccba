//! `grapevine-bench` as a user runs it: `connections` and `handshakes` against a second
//! grapevine process given by `--target` (so the same commands work against any node), and
//! `stream` and `sync` against nodes the bench starts itself, all with small sizes.

mod support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{CHAIN, temp_dir};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A grapevine node in its own process, listening on 127.0.0.1; its address and process.
fn target_node() -> (SocketAddr, Proc) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let child = Command::new(env!("CARGO_BIN_EXE_grapevine"))
        .arg("run")
        .arg("--data-dir")
        .arg(temp_dir("bench-target"))
        .args(["--p2p-endpoint", &addr.to_string()])
        .args(["--chain-id", CHAIN])
        .args(["--max-connections", "300"])
        .args(["--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("grapevine runs");
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "the target never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    (addr, proc)
}

/// Runs grapevine-bench with `args` and `--json`; its one report, parsed.
fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_grapevine-bench"))
        .arg("--json")
        .args(args)
        .output()
        .expect("grapevine-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "grapevine-bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object: {stdout}");
    serde_json::from_str(lines[0]).expect("JSON")
}

/// The figure named `name` (its value, baseline and ratio must be positive numbers).
fn figure<'a>(report: &'a Value, name: &str) -> &'a Value {
    let f = report["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no figure {name:?} in {report}"));
    for key in ["value", "baseline", "ratio"] {
        assert!(f[key].as_f64().unwrap() > 0.0, "{name}: {key} in {f}");
    }
    f
}

#[test]
fn connections_and_handshakes_against_another_process() {
    let (addr, node) = target_node();
    let target = addr.to_string();
    let pid = node.0.id().to_string();

    let r = bench(&[
        "--target",
        &target,
        "--chain-id",
        CHAIN,
        "connections",
        "--count",
        "50",
        "--pid",
        &pid,
        "--rtt-samples",
        "20",
    ]);
    assert_eq!(r["bench"], "connections");
    let d = &r["details"];
    assert_eq!(d["requested"], 50);
    assert_eq!(d["held"], 50, "{r}");
    assert_eq!(d["failed"], 0, "{r}");
    for key in [
        "rtt_idle_p50_ms",
        "rtt_under_load_p50_ms",
        "rtt_under_load_p99_ms",
    ] {
        assert!(d[key].as_f64().unwrap() > 0.0, "{key} in {r}");
    }
    figure(&r, "time-request round trip under load, median");
    let memory = figure(&r, "target resident memory per held peer");
    assert_eq!(memory["unit"], "KiB");
    assert!(d["target_rss_after_kib"].as_u64() > d["target_rss_before_kib"].as_u64());

    let r = bench(&[
        "--target",
        &target,
        "--chain-id",
        CHAIN,
        "handshakes",
        "--count",
        "200",
        "--clients",
        "16",
        "--baseline-seconds",
        "0.3",
    ]);
    assert_eq!(r["bench"], "handshakes");
    assert_eq!(r["details"]["completed"], 200, "{r}");
    assert_eq!(r["details"]["failed"], 0, "{r}");
    figure(&r, "full connections per second");

    // Against a target on another chain every connection fails, and the bench says why.
    let other_chain = "11".repeat(32);
    let out = Command::new(env!("CARGO_BIN_EXE_grapevine-bench"))
        .args(["--target", &target, "--chain-id", &other_chain])
        .args(["handshakes", "--count", "3", "--clients", "1"])
        .args(["--baseline-seconds", "0.1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("failed: 3"), "{text}");
    assert!(text.contains(&format!("serves chain {CHAIN}")), "{text}");
    drop(node);
}

#[test]
fn stream_and_sync_against_nodes_the_bench_starts() {
    let r = bench(&[
        "stream",
        "--seconds",
        "0.3",
        "--large",
        "65536",
        "--small",
        "100",
    ]);
    assert_eq!(r["bench"], "stream");
    assert!(
        r["target"].as_str().unwrap().contains("child process"),
        "{r}"
    );
    for name in [
        "64 KiB messages",
        "64 KiB messages, against plain TCP",
        "100 B messages",
        "100 B messages, against plain TCP",
    ] {
        figure(&r, name);
    }
    let d = &r["details"];
    assert!(d["64KiB_messages"].as_u64().unwrap() > 0);
    assert_eq!(
        d["64KiB_data_bytes"].as_u64().unwrap(),
        d["64KiB_messages"].as_u64().unwrap() * 65536
    );
    assert!(d["100B_messages"].as_u64().unwrap() > 0);

    let r = bench(&["sync", "--blocks", "2000"]);
    assert_eq!(r["bench"], "sync");
    assert_eq!(r["details"]["blocks"], 2000);
    figure(&r, "blocks per second from two serving peers");
    // Both servers served.
    let from = r["details"]["bytes_from_each_server"].as_array().unwrap();
    assert_eq!(from.len(), 2);
    assert!(from.iter().all(|b| b.as_u64().unwrap() > 0), "{r}");
}
