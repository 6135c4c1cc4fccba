//! `connections`: N handshaked peers held open against the target; the target's resident
//! memory per peer (VmRSS of `/proc/PID/status` before and after, when its process is known),
//! and the round trip of a time request on one more connection, before the load (the
//! baseline) and under it.
//!
//! Each held connection is one small task owning its socket and channel: no read buffer while
//! idle, so the client's own memory per connection (also reported) stays a few KiB. Held
//! connections answer the target's time, sync and address requests, so a node keeps them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::client::{Conn, error_kind, open_active, source_for};
use super::target::Target;
use super::{BenchResult, Figure, Report, p50_p99, raise_file_limit, resident_kib};
use crate::crypto::NodeKey;

/// File descriptors kept free beyond the held connections (the probe, the runtime, files).
pub const SPARE_FILES: u64 = 200;
/// How long the target's memory may take to settle after the last connection.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// What to run.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// Peers to hold open.
    #[arg(long, default_value_t = 10_000)]
    pub count: usize,
    /// The target's process id, to read its resident memory from /proc (a self-started node's
    /// is known).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Source addresses 127.0.0.1..=127.0.0.N to dial from (loopback targets only).
    #[arg(long, default_value_t = 16)]
    pub source_ips: usize,
    /// Time requests per round-trip measurement.
    #[arg(long, default_value_t = 100)]
    pub rtt_samples: usize,
}

impl Options {
    /// The defaults of `grapevine-bench all`.
    pub fn modest() -> Self {
        Self {
            count: 2000,
            pid: None,
            clients: 32,
            source_ips: 16,
            rtt_samples: 100,
        }
    }
}

/// What a self-started node needs for this run.
pub fn max_connections(opts: &Options) -> usize {
    opts.count + 100
}

/// Files this run needs: the held connections, and the target's too if it shares the process.
pub fn files_needed(count: usize, in_process: bool) -> u64 {
    let per = if in_process { 2 } else { 1 };
    count as u64 * per + SPARE_FILES
}

/// Round trips of `n` time requests in a row, in ms.
async fn round_trips(conn: &mut Conn, n: usize) -> BenchResult<Vec<f64>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(conn.time_round_trip().await?.as_secs_f64() * 1000.0);
    }
    Ok(out)
}

/// Samples `pid`'s resident memory until two samples 250 ms apart differ by less than 1 %.
async fn settled_rss(pid: u32) -> Option<u64> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    let mut last = resident_kib(pid)?;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = resident_kib(pid)?;
        if now.abs_diff(last) * 100 <= last || Instant::now() >= deadline {
            return Some(now);
        }
        last = now;
    }
}

/// Runs the measurement against `target`.
pub fn run(target: &Target, opts: &Options) -> BenchResult<Report> {
    let mut report = Report::new("connections", &target.description);
    let pid = opts.pid.or(target.pid);
    let limit = raise_file_limit(files_needed(opts.count, target.in_process));
    let per = if target.in_process { 2 } else { 1 };
    let fit = (limit.saturating_sub(SPARE_FILES) / per) as usize;
    let count = if fit < opts.count {
        report.note(format!(
            "the open-file limit is {limit} and cannot be raised: holding {fit} peers, not {}",
            opts.count
        ));
        fit
    } else {
        opts.count
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let identity = Arc::new(NodeKey::generate());
    let alive = Arc::new(AtomicUsize::new(0));
    let outcome = rt.block_on(async {
        // The probe connection and the round trip before any load.
        let mut probe = open_active(target.addr, None, target.chain_id, &identity).await?;
        let mut idle = round_trips(&mut probe, opts.rtt_samples).await?;
        let target_before = match pid {
            Some(p) => settled_rss(p).await,
            None => None,
        };
        let own_before = resident_kib(std::process::id());

        // Open the peers, `clients` at a time; each one held by its own task.
        let started = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let mut openers = JoinSet::new();
        let holders = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        for _ in 0..opts.clients.max(1) {
            let (identity, next, alive, holders) = (
                identity.clone(),
                next.clone(),
                alive.clone(),
                holders.clone(),
            );
            let (addr, chain, spread) = (target.addr, target.chain_id, opts.source_ips);
            openers.spawn(async move {
                let mut failures: Vec<String> = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return failures;
                    }
                    match open_active(addr, source_for(i, addr, spread), chain, &identity).await {
                        Ok(conn) => {
                            alive.fetch_add(1, Ordering::Relaxed);
                            let alive = alive.clone();
                            holders.lock().await.spawn(async move {
                                let why = conn.hold().await;
                                alive.fetch_sub(1, Ordering::Relaxed);
                                error_kind(&why)
                            });
                        }
                        Err(e) => failures.push(error_kind(&e)),
                    }
                }
            });
        }
        let mut failures: BTreeMap<String, u64> = BTreeMap::new();
        while let Some(r) = openers.join_next().await {
            for kind in r.unwrap_or_default() {
                *failures.entry(kind).or_default() += 1;
            }
        }
        let open_seconds = started.elapsed().as_secs_f64();
        let opened = alive.load(Ordering::Relaxed);

        let target_after = match pid {
            Some(p) => settled_rss(p).await,
            None => None,
        };
        let own_after = resident_kib(std::process::id());
        let mut loaded = round_trips(&mut probe, opts.rtt_samples).await?;
        let held = alive.load(Ordering::Relaxed);
        // What ended the connections the target dropped while held.
        let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
        {
            let mut set = holders.lock().await;
            while let Some(r) = set.try_join_next() {
                if let Ok(kind) = r {
                    *dropped.entry(kind).or_default() += 1;
                }
            }
            set.abort_all();
        }
        drop(probe);
        let (idle_p50, idle_p99) = p50_p99(&mut idle);
        let (load_p50, load_p99) = p50_p99(&mut loaded);
        Ok::<_, super::BenchError>(Outcome {
            held,
            opened,
            failures,
            dropped,
            open_seconds,
            target_before,
            target_after,
            own_before,
            own_after,
            rtt: [idle_p50, idle_p99, load_p50, load_p99],
        })
    })?;
    rt.shutdown_timeout(Duration::from_secs(5));

    let [idle_p50, idle_p99, load_p50, load_p99] = outcome.rtt;
    if let (Some(load), Some(idle)) = (load_p50, idle_p50) {
        report.figures.push(Figure::new(
            "time-request round trip under load, median",
            load,
            "ms",
            "the same connection before the load",
            idle,
        ));
    }
    if let (Some(load), Some(idle)) = (load_p99, idle_p99) {
        report.figures.push(Figure::new(
            "time-request round trip under load, p99",
            load,
            "ms",
            "the same connection before the load",
            idle,
        ));
    }
    let own_per_peer = match (outcome.own_before, outcome.own_after) {
        (Some(b), Some(a)) if outcome.opened > 0 => {
            Some(a.saturating_sub(b) as f64 / outcome.opened as f64)
        }
        _ => None,
    };
    match (outcome.target_before, outcome.target_after) {
        (Some(before), Some(after)) if outcome.opened > 0 => {
            let per_peer = after.saturating_sub(before) as f64 / outcome.opened as f64;
            match own_per_peer {
                Some(own) if !target.in_process && own > 0.0 => report.figures.push(Figure::new(
                    "target resident memory per held peer",
                    per_peer,
                    "KiB",
                    "the bench client's own resident memory per held connection",
                    own,
                )),
                _ => report.figures.push(Figure::alone(
                    "target resident memory per held peer",
                    per_peer,
                    "KiB",
                )),
            }
            report.detail("target_rss_before_kib", before);
            report.detail("target_rss_after_kib", after);
        }
        _ => report
            .note("no target memory figure: give the target's process id with --pid (Linux /proc)"),
    }
    if target.in_process {
        report.note(
            "the node runs inside the bench process: its memory figure includes the bench's \
             client side of every connection",
        );
    }
    report.detail("requested", count as u64);
    report.detail("opened", outcome.opened as u64);
    report.detail("held", outcome.held as u64);
    report.detail("failed", outcome.failures.values().sum::<u64>());
    report.detail(
        "failures",
        serde_json::to_value(&outcome.failures).unwrap_or_default(),
    );
    report.detail(
        "dropped_by_target",
        serde_json::to_value(&outcome.dropped).unwrap_or_default(),
    );
    report.detail("open_seconds", outcome.open_seconds);
    report.detail(
        "open_rate_per_s",
        outcome.opened as f64 / outcome.open_seconds.max(1e-9),
    );
    if let Some(own) = own_per_peer {
        report.detail("client_kib_per_connection", own);
    }
    report.detail("file_limit", limit);
    for (key, v) in [
        ("rtt_idle_p50_ms", idle_p50),
        ("rtt_idle_p99_ms", idle_p99),
        ("rtt_under_load_p50_ms", load_p50),
        ("rtt_under_load_p99_ms", load_p99),
    ] {
        if let Some(v) = v {
            report.detail(key, v);
        }
    }
    report.detail("rtt_samples", opts.rtt_samples as u64);
    if outcome.held < count {
        report.note(format!(
            "{} of {count} peers were not held at the end (see failures and dropped_by_target)",
            count - outcome.held
        ));
    }
    Ok(report)
}

struct Outcome {
    held: usize,
    opened: usize,
    failures: BTreeMap<String, u64>,
    dropped: BTreeMap<String, u64>,
    open_seconds: f64,
    target_before: Option<u64>,
    target_after: Option<u64>,
    own_before: Option<u64>,
    own_after: Option<u64>,
    rtt: [Option<f64>; 4],
}
