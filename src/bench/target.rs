//! What the bench measures: a node given by `--target`, or a grapevine node it starts itself
//! with a temporary data directory on 127.0.0.1. A self-started node is a child process (the
//! `grapevine` binary next to the bench's own executable) when that binary is there, so the
//! node's memory and CPU are its own; otherwise, or with `--in-process`, it runs inside the
//! bench on a runtime of its own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{BenchError, BenchResult};
use crate::node::NodeConfig;
use crate::runtime::{self, NodeHandle, RuntimeConfig};
use crate::wire::types::Sha256;

/// The chain a self-started node serves unless `--chain-id` says otherwise.
pub const BENCH_CHAIN_ID: Sha256 = Sha256([0xbe; 32]);
/// How long a self-started node may take to listen.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped child gets to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The node under measurement.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub chain_id: Sha256,
    /// Its process, when known (`--pid`, or the child the bench started).
    pub pid: Option<u32>,
    /// Whether it runs inside the bench process (its memory is the bench's).
    pub in_process: bool,
    /// For the report.
    pub description: String,
}

/// A directory in the system temp dir, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh `grapevine-bench-{name}-{random}` directory.
    pub fn new(name: &str) -> BenchResult<Self> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| BenchError::Setup(e.to_string()))?;
        let path = std::env::temp_dir().join(format!("grapevine-bench-{name}-{}", hex::encode(id)));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How to start a node of our own.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub chain_id: Sha256,
    /// `--max-connections` of the node: above what the bench will hold.
    pub max_connections: usize,
    /// Run it inside the bench even when the `grapevine` binary is there.
    pub in_process: bool,
}

/// The `grapevine` binary next to the running executable, if there is one.
pub fn grapevine_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let candidate = dir.join(format!("grapevine{}", std::env::consts::EXE_SUFFIX));
    candidate.is_file().then_some(candidate)
}

/// A node the bench started; stopped when dropped.
pub struct SelfNode {
    inner: Inner,
    dir: TempDir,
}

enum Inner {
    Child(Child),
    InProcess {
        rt: tokio::runtime::Runtime,
        handle: Option<NodeHandle>,
    },
    Stopped,
}

impl SelfNode {
    /// Starts a node and says how to reach it.
    pub fn start(opts: &NodeOptions) -> BenchResult<(SelfNode, Target)> {
        let dir = TempDir::new("node")?;
        match (opts.in_process, grapevine_binary()) {
            (false, Some(bin)) => Self::start_child(opts, dir, &bin),
            _ => Self::start_in_process(opts, dir),
        }
    }

    fn start_child(opts: &NodeOptions, dir: TempDir, bin: &Path) -> BenchResult<(Self, Target)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(dir.path().join("node.log"))?;
        let child = Command::new(bin)
            .arg("run")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--p2p-endpoint", &addr.to_string()])
            .args(["--chain-id", &opts.chain_id.to_string()])
            .args(["--max-connections", &opts.max_connections.to_string()])
            .args(["--p2p-connect-to-new-peers", "false"])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| BenchError::Setup(format!("cannot run {}: {e}", bin.display())))?;
        let pid = child.id();
        let mut node = SelfNode {
            inner: Inner::Child(child),
            dir,
        };
        node.wait_listening(addr)?;
        let target = Target {
            addr,
            chain_id: opts.chain_id,
            pid: Some(pid),
            in_process: false,
            description: format!("{addr}, a grapevine child process (pid {pid}) the bench started"),
        };
        Ok((node, target))
    }

    /// Waits until the child accepts TCP connections, or fails with its log's end.
    fn wait_listening(&mut self, addr: SocketAddr) -> BenchResult<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Inner::Child(c) = &mut self.inner
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(BenchError::Setup(format!(
                    "the grapevine node exited at start ({status}): {}",
                    self.log_tail()
                )));
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Setup(format!(
                    "the grapevine node did not listen on {addr} within {START_TIMEOUT:?}: {}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines the child logged.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    fn start_in_process(opts: &NodeOptions, dir: TempDir) -> BenchResult<(Self, Target)> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("grapevine-node")
            .build()?;
        let config = RuntimeConfig {
            node: NodeConfig {
                chain_id: opts.chain_id,
                max_connections: opts.max_connections,
                connect_to_new_peers: false,
                ..NodeConfig::default()
            },
            data_dir: dir.path().join("data"),
            p2p_endpoint: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed_nodes: Vec::new(),
        };
        let handle = rt
            .block_on(runtime::start(config))
            .map_err(|e| BenchError::Setup(format!("the node did not start: {e}")))?;
        let addr = handle
            .p2p_endpoint
            .ok_or_else(|| BenchError::Setup("the node does not listen".into()))?;
        let target = Target {
            addr,
            chain_id: opts.chain_id,
            pid: Some(std::process::id()),
            in_process: true,
            description: format!("{addr}, a grapevine node inside the bench process"),
        };
        let node = SelfNode {
            inner: Inner::InProcess {
                rt,
                handle: Some(handle),
            },
            dir,
        };
        Ok((node, target))
    }

    /// Stops the node: SIGTERM (then a kill after [`STOP_TIMEOUT`]) for a child, a shutdown
    /// for an in-process node.
    pub fn stop(&mut self) {
        match std::mem::replace(&mut self.inner, Inner::Stopped) {
            Inner::Child(mut child) => {
                let pid = i32::try_from(child.id())
                    .ok()
                    .and_then(rustix::process::Pid::from_raw);
                let termed = pid.is_some_and(|p| {
                    rustix::process::kill_process(p, rustix::process::Signal::TERM).is_ok()
                });
                let deadline = Instant::now() + STOP_TIMEOUT;
                while termed && Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            Inner::InProcess { rt, mut handle } => {
                if let Some(h) = handle.take() {
                    rt.block_on(h.shutdown());
                }
                rt.shutdown_timeout(STOP_TIMEOUT);
            }
            Inner::Stopped => {}
        }
    }
}

impl Drop for SelfNode {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::client::open_active;
    use crate::crypto::NodeKey;

    #[test]
    fn an_in_process_node_takes_a_bench_peer() {
        let opts = NodeOptions {
            chain_id: BENCH_CHAIN_ID,
            max_connections: 10,
            in_process: true,
        };
        let (mut node, target) = SelfNode::start(&opts).unwrap();
        assert!(target.in_process);
        assert_eq!(target.pid, Some(std::process::id()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let identity = NodeKey::generate();
            let mut conn = open_active(target.addr, None, target.chain_id, &identity)
                .await
                .unwrap();
            let rtt = conn.time_round_trip().await.unwrap();
            assert!(rtt < REPLY_LIMIT, "{rtt:?}");
            // Another chain: the bench sees the target's chain in its hello and gives up.
            let other = Sha256([1; 32]);
            let refused = open_active(target.addr, None, other, &identity).await;
            assert!(matches!(refused, Err(BenchError::Protocol(_))));
        });
        node.stop();
        // Stopped: nothing listens any more.
        assert!(std::net::TcpStream::connect(target.addr).is_err());
    }

    const REPLY_LIMIT: Duration = Duration::from_secs(5);
}
