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

/// Linux reports `/proc/PID/stat` CPU times in USER_HZ clock ticks, 100 a second on every
/// architecture it runs on (independent of the kernel's own tick rate).
pub const USER_HZ: f64 = 100.0;

/// CPU time (user + system, all threads, in seconds) process `pid` has used so far, from
/// `/proc/PID/stat`, if readable. Resolution 1 / [`USER_HZ`].
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis
    // start with field 3 (state), so utime and stime (fields 14 and 15) are the 12th and 13th.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// CPU time the calling thread has used so far, in seconds (`/proc/thread-self/schedstat`,
/// nanoseconds on the CPU), if readable.
pub fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
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
    fn cpu_times_grow_with_work() {
        use rustix::time::{ClockId, clock_gettime};
        // Spin until the kernel's own clock of this thread's CPU time has moved 60 ms (so a
        // busy machine only makes the test take longer), then both readers must show it.
        let cpu_now = || {
            let t = clock_gettime(ClockId::ThreadCPUTime);
            t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
        };
        let (p0, t0) = (cpu_seconds(std::process::id()), thread_cpu_seconds());
        let (p0, t0) = (p0.expect("own /proc stat"), t0.expect("own schedstat"));
        let start = cpu_now();
        let mut x = 0u64;
        while cpu_now() - start < 0.06 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let (p1, t1) = (cpu_seconds(std::process::id()), thread_cpu_seconds());
        assert!(t1.expect("own schedstat") - t0 >= 0.05);
        // /proc/PID/stat counts in ticks of 1/USER_HZ s.
        assert!(p1.expect("own /proc stat") - p0 >= 0.04);
    }

    #[test]
    fn file_limit_is_kept_when_high_enough() {
        let now = raise_file_limit(16);
        assert!(now >= 16);
    }
}
