//! `handshakes`: full connections per second from many concurrent clients. Each connection is
//! a TCP connect, the key exchange, hello both ways, connection_accepted both ways, the address
//! exchange both ways and the target's first message to an active peer; then the client drops
//! it and dials again. Baseline: the crypto of one connection alone, both sides (an ephemeral
//! key and one ECDH each, one hello signature and one signature recovery each), on as many
//! threads as the machine has cores, in the same run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::client::{error_kind, open_active, source_for};
use super::target::Target;
use super::{BenchResult, Figure, Report, p50_p99};
use crate::crypto::identity::recover_compact;
use crate::crypto::{ExchangeProgress, KeyExchange, NodeKey};

/// What to run.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// Concurrent clients, each dialling one connection after another.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Connections in all.
    #[arg(long, default_value_t = 5000)]
    pub count: usize,
    /// Source addresses 127.0.0.1..=127.0.0.N to dial from (loopback targets only), so no one
    /// address runs out of ports to closed connections waiting in TIME_WAIT.
    #[arg(long, default_value_t = 16)]
    pub source_ips: usize,
    /// Seconds the crypto-only baseline runs.
    #[arg(long, default_value_t = 2.0)]
    pub baseline_seconds: f64,
}

impl Options {
    /// The defaults of `grapevine-bench all`.
    pub fn modest() -> Self {
        Self {
            clients: 64,
            count: 2000,
            source_ips: 16,
            baseline_seconds: 1.0,
        }
    }
}

/// What a self-started node needs for this run.
pub fn max_connections(opts: &Options) -> usize {
    // Dropped connections linger a moment on the node before it sees them closed.
    (opts.clients * 4).max(200)
}

/// The crypto of one connection, both sides: two ephemeral keys, two ECDHs, two hello
/// signatures, two recoveries.
fn connection_crypto(a_id: &NodeKey, b_id: &NodeKey) -> bool {
    let mut a = KeyExchange::new();
    let mut b = KeyExchange::new();
    let (a_pub, b_pub) = (*a.our_public_key(), *b.our_public_key());
    let (Ok(ExchangeProgress::Done { keys: ka, .. }), Ok(ExchangeProgress::Done { keys: kb, .. })) =
        (a.feed(&b_pub), b.feed(&a_pub))
    else {
        return false;
    };
    let sig_a = a_id.sign_compact(&ka.hello_digest());
    let sig_b = b_id.sign_compact(&kb.hello_digest());
    let ok_a = recover_compact(&sig_a, &kb.hello_digest()).is_ok_and(|k| &k == a_id.public_key());
    let ok_b = recover_compact(&sig_b, &ka.hello_digest()).is_ok_and(|k| &k == b_id.public_key());
    ok_a && ok_b
}

/// Connections' worth of crypto per second on `threads` threads for about `seconds`.
pub fn crypto_baseline(threads: usize, seconds: f64) -> f64 {
    let started = Instant::now();
    let until = started + Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO);
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            std::thread::spawn(move || {
                let (a, b) = (NodeKey::generate(), NodeKey::generate());
                let mut done = 0u64;
                while Instant::now() < until {
                    if connection_crypto(&a, &b) {
                        done += 1;
                    }
                }
                (done, started.elapsed())
            })
        })
        .collect();
    let mut total = 0.0;
    for h in handles {
        if let Ok((done, took)) = h.join() {
            total += done as f64 / took.as_secs_f64();
        }
    }
    total
}

/// Runs the measurement against `target`.
pub fn run(target: &Target, opts: &Options) -> BenchResult<Report> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(threads)
        .build()?;
    let identity = Arc::new(NodeKey::generate());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let outcomes: Vec<(Duration, Result<(), String>)> = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..opts.clients.max(1) {
            let (identity, next) = (identity.clone(), next.clone());
            let (addr, chain, count, spread) =
                (target.addr, target.chain_id, opts.count, opts.source_ips);
            tasks.spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return out;
                    }
                    let t = Instant::now();
                    let source = source_for(i, addr, spread);
                    let r = open_active(addr, source, chain, &identity).await;
                    // Dropping the connection closes the socket.
                    out.push((t.elapsed(), r.map(drop).map_err(|e| error_kind(&e))));
                }
            });
        }
        let mut all = Vec::new();
        while let Some(r) = tasks.join_next().await {
            if let Ok(v) = r {
                all.extend(v);
            }
        }
        all
    });
    let elapsed = started.elapsed().as_secs_f64();
    drop(rt);

    let completed = outcomes.iter().filter(|(_, r)| r.is_ok()).count();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    for (_, r) in &outcomes {
        if let Err(kind) = r {
            *failures.entry(kind.clone()).or_default() += 1;
        }
    }
    let mut latencies: Vec<f64> = outcomes
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(d, _)| d.as_secs_f64() * 1000.0)
        .collect();
    let (p50, p99) = p50_p99(&mut latencies);
    let rate = completed as f64 / elapsed;
    let crypto = crypto_baseline(threads, opts.baseline_seconds);

    let mut report = Report::new("handshakes", &target.description);
    report.figures.push(Figure::new(
        "full connections per second",
        rate,
        "connections/s",
        &format!("crypto alone for both sides of a connection, {threads} threads"),
        crypto,
    ));
    report.detail("requested", opts.count as u64);
    report.detail("completed", completed as u64);
    report.detail("failed", (outcomes.len() - completed) as u64);
    report.detail(
        "failures",
        serde_json::to_value(&failures).unwrap_or_default(),
    );
    report.detail("clients", opts.clients as u64);
    report.detail("seconds", elapsed);
    if let Some(v) = p50 {
        report.detail("latency_p50_ms", v);
    }
    if let Some(v) = p99 {
        report.detail("latency_p99_ms", v);
    }
    report.detail("threads", threads as u64);
    report.note(
        "the bench's clients do their half of the crypto on the same cores as the target, so \
         the baseline covers both sides",
    );
    if completed < opts.count {
        report.note(format!(
            "{} of {} connections failed",
            opts.count - completed,
            opts.count
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_crypto_verifies() {
        let (a, b) = (NodeKey::generate(), NodeKey::generate());
        assert!(connection_crypto(&a, &b));
    }
}
