//! `grapevine run` as a child process on loopback ports, for tests that need a real process
//! (signals, exit codes, stderr, kill -9).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::CHAIN;

/// A free loopback port (bound and released; the child binds it again).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `grapevine run` child; killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How a child is started beyond its ports.
pub struct Run<'a> {
    pub seed: Option<u16>,
    pub log_level: &'a str,
    /// Where stderr goes (`None`: discarded).
    pub stderr: Option<&'a Path>,
    pub extra: &'a [&'a str],
}

impl Default for Run<'_> {
    fn default() -> Self {
        Self {
            seed: None,
            log_level: "warn",
            stderr: None,
            extra: &[],
        }
    }
}

/// Starts `grapevine run` on the test chain with its data in `dir`, listening on `p2p` and
/// serving the status API on `rpc` (both 127.0.0.1).
pub fn spawn(dir: &Path, p2p: u16, rpc: u16, run: Run) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_grapevine"));
    cmd.arg("run")
        .arg("--data-dir")
        .arg(dir)
        .args(["--p2p-endpoint", &format!("127.0.0.1:{p2p}")])
        .args(["--rpc-endpoint", &format!("127.0.0.1:{rpc}")])
        .args(["--chain-id", CHAIN])
        .args(["--log-level", run.log_level])
        .args(run.extra)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(match run.stderr {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        });
    if let Some(s) = run.seed {
        cmd.args(["--seed-node", &format!("127.0.0.1:{s}")]);
    }
    Proc(cmd.spawn().expect("grapevine runs"))
}

/// GET `path` from the status API on `rpc`, if it answers.
pub fn get(rpc: u16, path: &str) -> Option<Value> {
    let endpoint = ([127, 0, 0, 1], rpc).into();
    grapevine::cli::status::get_json(endpoint, path).ok()
}
