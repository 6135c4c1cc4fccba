//! What `grapevine run --log-level info` tells the operator, read from a real process's stderr:
//! one startup summary line, and one INFO line each when a peer arrives and leaves.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::process::{Proc, Run, free_port, get, spawn};
use support::{CHAIN, temp_dir};

/// A node of this test: INFO lines to `log`.
fn start(dir: &Path, p2p: u16, rpc: u16, seed: Option<u16>, log: &Path) -> Proc {
    let run = Run {
        seed,
        log_level: "info",
        stderr: Some(log),
        ..Run::default()
    };
    spawn(dir, p2p, rpc, run)
}

/// Polls `f` every 50 ms for up to 30 s.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The log's lines without colour codes.
fn lines(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|l| {
            // Strip ANSI escapes in case the subscriber colours its output anyway.
            let mut out = String::new();
            let mut chars = l.chars();
            while let Some(c) = chars.next() {
                if c == '\u{1b}' {
                    for d in chars.by_ref() {
                        if d.is_ascii_alphabetic() {
                            break;
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            out
        })
        .collect()
}

fn info_lines(log: &Path, text: &str) -> Vec<String> {
    lines(log)
        .into_iter()
        .filter(|l| l.contains(" INFO ") && l.contains(text))
        .collect()
}

#[test]
fn startup_summary_then_one_line_per_peer_arrival_and_departure() {
    let base = temp_dir("logs-peer");
    let (a_p2p, a_rpc, b_p2p, b_rpc) = (free_port(), free_port(), free_port(), free_port());
    let a_log = base.join("a.log");
    let b_log = base.join("b.log");
    let a = start(&base.join("a"), a_p2p, a_rpc, None, &a_log);
    let info = eventually("a answers", || get(a_rpc, "/info"));
    let node_id = info["node_id"].as_str().unwrap().to_string();

    // The startup summary: one INFO line with what an operator checks first.
    let summary = eventually("a's startup summary", || {
        info_lines(&a_log, "grapevine started").into_iter().next()
    });
    assert!(summary.contains(&format!("chain_id={CHAIN}")), "{summary}");
    assert!(summary.contains(&format!("node_id={node_id}")), "{summary}");
    assert!(
        summary.contains(&format!("p2p_endpoint=\"127.0.0.1:{a_p2p}\"")),
        "{summary}"
    );
    assert!(summary.contains("version="), "{summary}");
    assert!(summary.contains("data_dir="), "{summary}");
    assert!(summary.contains("head=0"), "{summary}");
    assert!(summary.contains("head_id="), "{summary}");
    assert_eq!(info_lines(&a_log, "grapevine started").len(), 1);

    // b arrives (it dials a as its seed)...
    let mut b = start(&base.join("b"), b_p2p, b_rpc, Some(a_p2p), &b_log);
    let arrived = eventually("a logs b's arrival", || {
        info_lines(&a_log, "peer active").into_iter().next()
    });
    assert!(arrived.contains("direction=inbound"), "{arrived}");
    assert!(arrived.contains("endpoint=127.0.0.1:"), "{arrived}");
    // ...and leaves without a goodbye.
    let _ = b.0.kill();
    let _ = b.0.wait();
    let left = eventually("a logs b's departure", || {
        info_lines(&a_log, "peer left").into_iter().next()
    });
    assert!(left.contains("direction=inbound"), "{left}");
    assert!(left.contains("endpoint=127.0.0.1:"), "{left}");
    assert!(left.contains("reason="), "{left}");
    eventually("a reports it is alone", || {
        info_lines(&a_log, "no active peers left")
            .into_iter()
            .next()
    });
    drop(a);
    let log = lines(&a_log).join("\n");
    assert_eq!(info_lines(&a_log, "peer active").len(), 1, "{log}");
    assert_eq!(info_lines(&a_log, "peer left").len(), 1, "{log}");
    // The arrival and departure name the same connection.
    let endpoint_of = |l: &str| {
        l.split_whitespace()
            .find(|w| w.starts_with("endpoint="))
            .map(str::to_string)
    };
    assert_eq!(endpoint_of(&arrived), endpoint_of(&left), "{log}");
    let _ = std::fs::remove_dir_all(&base);
}
