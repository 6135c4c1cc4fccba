//! `grapevine-bench`: load generators that speak the graphene protocol to any node, each figure
//! printed beside a baseline measured in the same run and the ratio of the two.
//!
//! | subcommand | figure | same-run baseline |
//! |---|---|---|
//! | [`stream`] | MB/s and messages/s over one established connection | AES-256-CBC of the same bytes on one core; plain TCP with the same writes |
//! | [`handshakes`] | full connections per second from many clients | the crypto of a connection alone (both sides), on as many threads |
//! | [`connections`] | resident memory per held peer; time-request round trip under that load | the round trip before the load; the client's own memory per connection |
//! | [`propagation`] | time for an item to reach every node of a simulated network | the gossip graph's diameter × link latency |
//! | [`sync`] | blocks per second catching up from two serving nodes | the same blocks applied to a store without network |
//!
//! The protocol side ([`client`]) is the node's own wire code ([`crate::wire::channel`]), so the
//! bench can measure another implementation (`--target IP:PORT --chain-id HEX`) as well as a
//! grapevine node it starts itself ([`target`]). Nothing here decides anything for the node;
//! the bench only drives it from outside.

pub mod client;
pub mod connections;
pub mod handshakes;
pub mod propagation;
pub mod report;
pub mod stream;
pub mod sync;
pub mod target;

pub use report::{Figure, Report};

use crate::wire::DecodeError;
use crate::wire::channel::ChannelError;

/// Why a measurement could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("channel: {0}")]
    Channel(#[from] ChannelError),
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// The target did not answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The target refused our hello.
    #[error("the target rejected the connection: {0}")]
    Rejected(String),
    /// The target said goodbye or closed the socket.
    #[error("the target closed the connection: {0}")]
    Closed(String),
    /// The target sent something a graphene node does not send.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The bench could not set itself up (a node that does not start, a store).
    #[error("{0}")]
    Setup(String),
}

/// Result of a bench step.
pub type BenchResult<T> = Result<T, BenchError>;

/// Median and tail of a sample, sorted in place (nearest-rank percentiles).
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

/// Sorts `v` and returns its (p50, p99).
pub fn p50_p99(v: &mut [f64]) -> (Option<f64>, Option<f64>) {
    v.sort_by(f64::total_cmp);
    (percentile(v, 50.0), percentile(v, 99.0))
}

/// Resident memory of process `pid` in KiB (`VmRSS` of `/proc/PID/status`), if readable.
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix("VmRSS:")?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Raises this process's open-file limit (soft, and the hard one if allowed) to at least
/// `wanted`; answers the soft limit in force afterwards. Children started later inherit it.
pub fn raise_file_limit(wanted: u64) -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let current = now.current.unwrap_or(u64::MAX);
    if current >= wanted {
        return current;
    }
    let hard = now.maximum.unwrap_or(u64::MAX);
    // First within the hard limit; above it only a privileged process may go.
    if hard < wanted {
        let raised = Rlimit {
            current: Some(wanted),
            maximum: Some(wanted),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return wanted;
        }
    }
    let within = Rlimit {
        current: Some(wanted.min(hard)),
        maximum: now.maximum,
    };
    let _ = setrlimit(Resource::Nofile, within);
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        v.reverse();
        assert_eq!(p50_p99(&mut v), (Some(50.0), Some(99.0)));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn own_resident_memory_is_readable() {
        let kib = resident_kib(std::process::id()).expect("VmRSS of this process");
        assert!(kib > 0);
    }

    #[test]
    fn file_limit_is_kept_when_high_enough() {
        let now = raise_file_limit(16);
        assert!(now >= 16);
    }
}
