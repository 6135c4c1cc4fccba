//! `handshakes`: full connections per second from many concurrent clients. Each connection is
//! a TCP connect, the key exchange, hello both ways, connection_accepted both ways, the address
//! exchange both ways and the target's first message to an active peer; then the client drops
//! it and dials again.
//!
//! Baseline: the crypto of one connection alone, both sides (an ephemeral key and one ECDH
//! each, one hello signature and one signature recovery each, and the SHA-512 / SHA-256 /
//! CityHash key derivation), on as many threads as the machine has cores, in the same run: the
//! rate the machine would reach if a connection cost nothing but its crypto.
//!
//! The bench's clients and a target on the same machine share its cores with each other and
//! with whatever else runs, so the rate moves with the machine's load. The run therefore also
//! counts CPU time (`/proc`): the client's and the target's per connection, and the
//! baseline's per connection; crypto's share of the whole is the ratio a machine with nothing
//! else to do would show. And it measures a floor for what is not crypto: the same lock-step
//! exchange of bytes over loopback TCP (same steps, same frame sizes, same close), with no
//! crypto and no protocol ([`tcp_floor`]), on the same threads; crypto's share of crypto plus
//! that floor is the best ratio any implementation could reach on this kernel.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::client::{connect, error_kind, open_active, random_node_id, source_for, user_agent};
use super::target::Target;
use super::{BenchResult, Figure, Report, cpu_seconds, p50_p99, thread_cpu_seconds};
use crate::crypto::identity::recover_compact;
use crate::crypto::keys::PUBLIC_KEY_SIZE;
use crate::crypto::{ExchangeProgress, KeyExchange, NodeKey};
use crate::wire::Message;
use crate::wire::frame::padded_frame_len;
use crate::wire::message::*;
use crate::wire::types::{CompactSignatureBytes, IpAddress, NodeId, Sha256, TimePoint};
use crate::wire::variant::{Variant, VariantObject};

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

/// What the crypto baseline measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct CryptoBaseline {
    /// Connections' worth of crypto per second, all threads together.
    pub rate: f64,
    /// CPU time per connection's crypto (both sides), in µs, if the threads' CPU time could be
    /// read.
    pub cpu_us: Option<f64>,
}

/// Connections' worth of crypto per second on `threads` threads for about `seconds`, and the
/// CPU time each took.
pub fn crypto_baseline(threads: usize, seconds: f64) -> CryptoBaseline {
    let started = Instant::now();
    let until = started + Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO);
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            std::thread::spawn(move || {
                let (a, b) = (NodeKey::generate(), NodeKey::generate());
                let cpu_start = thread_cpu_seconds();
                let mut done = 0u64;
                while Instant::now() < until {
                    if connection_crypto(&a, &b) {
                        done += 1;
                    }
                }
                let cpu = cpu_start.zip(thread_cpu_seconds()).map(|(s, e)| e - s);
                (done, started.elapsed(), cpu)
            })
        })
        .collect();
    let (mut rate, mut done_all, mut cpu_all) = (0.0, 0u64, Some(0.0));
    for h in handles {
        if let Ok((done, took, cpu)) = h.join() {
            rate += done as f64 / took.as_secs_f64();
            done_all += done;
            cpu_all = cpu_all.zip(cpu).map(|(a, b)| a + b);
        }
    }
    CryptoBaseline {
        rate,
        cpu_us: cpu_all
            .filter(|_| done_all > 0)
            .map(|c| c * 1e6 / done_all as f64),
    }
}

/// The ciphertext sizes (bytes) of one connection's messages as the TCP floor replays them,
/// in the order they cross. The hellos are the bench client's (a node's carries some 300
/// bytes more user data; either fits one segment).
#[derive(Clone, Copy, Debug)]
pub struct FloorSizes {
    /// Each side's ephemeral key, hello, connection_accepted, address_request and (empty)
    /// address list, each sent on receipt of the other side's previous one.
    pub both_ways: [usize; 5],
    /// The target's first messages to an active peer: a time request and a sync request.
    pub activation: usize,
    /// The client's time reply, after which it closes.
    pub reply: usize,
}

impl FloorSizes {
    /// The frame sizes of the messages a handshake with the bench client exchanges.
    pub fn of_a_handshake() -> Self {
        let frame = |m: Message| padded_frame_len(m.to_data().len());
        let mut user_data = VariantObject::new();
        user_data.set("node_id", Variant::String(random_node_id().to_string()));
        let hello = Message::Hello(HelloMessage {
            user_agent: user_agent(),
            core_protocol_version: CORE_PROTOCOL_VERSION,
            inbound_address: IpAddress(0),
            inbound_port: 0,
            outbound_port: 0,
            node_public_key: NodeId::default(),
            signed_shared_secret: CompactSignatureBytes::default(),
            chain_id: Sha256::default(),
            user_data,
        });
        let time = TimePoint(0);
        Self {
            both_ways: [
                PUBLIC_KEY_SIZE,
                frame(hello),
                frame(Message::ConnectionAccepted(ConnectionAcceptedMessage {})),
                frame(Message::AddressRequest(AddressRequestMessage {})),
                frame(Message::Address(AddressMessage {
                    addresses: Vec::new(),
                })),
            ],
            activation: frame(Message::CurrentTimeRequest(CurrentTimeRequestMessage {
                request_sent_time: time,
            })) + frame(Message::FetchBlockchainItemIds(
                FetchBlockchainItemIdsMessage {
                    item_type: 1001,
                    blockchain_synopsis: Vec::new(),
                },
            )),
            reply: frame(Message::CurrentTimeReply(CurrentTimeReplyMessage {
                request_sent_time: time,
                request_received_time: time,
                reply_transmitted_time: time,
            })),
        }
    }

    fn largest(&self) -> usize {
        self.both_ways
            .iter()
            .chain([&self.activation, &self.reply])
            .copied()
            .max()
            .unwrap_or(0)
    }
}

/// The most bytes one floor step moves; sizes the steps' stack buffer.
const FLOOR_STEP_MAX: usize = 4096;

/// One side's part of the floor's lock-step exchange: each of `both_ways` written, then the
/// peer's read in full.
async fn floor_steps(s: &mut TcpStream, sizes: &FloorSizes) -> std::io::Result<()> {
    let buf = [0u8; FLOOR_STEP_MAX];
    let mut got = [0u8; FLOOR_STEP_MAX];
    for &n in &sizes.both_ways {
        let n = n.min(FLOOR_STEP_MAX);
        s.write_all(&buf[..n]).await?;
        s.read_exact(&mut got[..n]).await?;
    }
    Ok(())
}

/// The serving side of one floor connection: the steps, the activation, the client's reply,
/// then the end of its stream, and a shutdown (as the node closes).
async fn floor_serve(mut s: TcpStream, sizes: FloorSizes) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    floor_steps(&mut s, &sizes).await?;
    let buf = [0u8; FLOOR_STEP_MAX];
    s.write_all(&buf[..sizes.activation.min(FLOOR_STEP_MAX)])
        .await?;
    let mut got = [0u8; FLOOR_STEP_MAX];
    s.read_exact(&mut got[..sizes.reply.min(FLOOR_STEP_MAX)])
        .await?;
    while s.read(&mut got).await? > 0 {}
    s.shutdown().await
}

/// The dialling side: connect (from `source`), the steps, the activation read, the reply
/// written; then the socket is dropped.
async fn floor_dial(
    target: std::net::SocketAddr,
    source: Option<std::net::Ipv4Addr>,
    sizes: FloorSizes,
) -> BenchResult<()> {
    let mut s = connect(target, source).await?;
    floor_steps(&mut s, &sizes).await?;
    let mut got = [0u8; FLOOR_STEP_MAX];
    s.read_exact(&mut got[..sizes.activation.min(FLOOR_STEP_MAX)])
        .await?;
    let buf = [0u8; FLOOR_STEP_MAX];
    s.write_all(&buf[..sizes.reply.min(FLOOR_STEP_MAX)]).await?;
    Ok(())
}

/// What the TCP floor measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpFloor {
    /// Connections per second.
    pub rate: f64,
    /// This process's CPU time per connection (both ends), in µs, if readable.
    pub cpu_us: Option<f64>,
}

/// The TCP floor: `clients` concurrent dialers and one listener in one runtime of `threads`
/// workers on loopback, replaying a handshake's bytes ([`FloorSizes`]) with the same lock
/// step, source addresses and close as the real run, with no crypto and no protocol, for about
/// `seconds`. What any implementation of the protocol pays the kernel and an async runtime
/// per connection, at least.
pub fn tcp_floor(
    threads: usize,
    seconds: f64,
    clients: usize,
    spread: usize,
) -> BenchResult<TcpFloor> {
    let sizes = FloorSizes::of_a_handshake();
    if sizes.largest() > FLOOR_STEP_MAX {
        return Err(super::BenchError::Setup(
            "a floor step exceeds its buffer".into(),
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(threads.max(1))
        .build()?;
    let pid = std::process::id();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(floor_serve(s, sizes));
            }
        });
        let done = Arc::new(AtomicUsize::new(0));
        let next = Arc::new(AtomicUsize::new(0));
        let cpu_start = cpu_seconds(pid);
        let started = Instant::now();
        let until = started + Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients.max(1) {
            let (done, next) = (done.clone(), next.clone());
            tasks.spawn(async move {
                while Instant::now() < until {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if floor_dial(addr, source_for(i, addr, spread), sizes)
                        .await
                        .is_ok()
                    {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_start.zip(cpu_seconds(pid)).map(|(s, e)| e - s);
        server.abort();
        let n = done.load(Ordering::Relaxed);
        Ok(TcpFloor {
            rate: n as f64 / elapsed,
            cpu_us: cpu.filter(|_| n > 0).map(|c| c * 1e6 / n as f64),
        })
    })
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
    // CPU time from here to the last connection: the bench's, and a child target's.
    let own_pid = std::process::id();
    let child_pid = target.pid.filter(|p| !target.in_process && *p != own_pid);
    let cpu_start = (cpu_seconds(own_pid), child_pid.and_then(cpu_seconds));
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
    let cpu_end = (cpu_seconds(own_pid), child_pid.and_then(cpu_seconds));
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
    let floor = tcp_floor(
        threads,
        opts.baseline_seconds,
        opts.clients,
        opts.source_ips,
    )?;

    let mut report = Report::new("handshakes", &target.description);
    report.figures.push(Figure::new(
        "full connections per second",
        rate,
        "connections/s",
        &format!("crypto alone for both sides of a connection, {threads} threads"),
        crypto.rate,
    ));
    report.figures.push(Figure::new(
        "full connections per second, against plain TCP",
        rate,
        "connections/s",
        &format!("the same bytes in the same lock step over plain TCP, {threads} threads"),
        floor.rate,
    ));
    // CPU per connection: load on the machine changes how fast, not how much.
    let per_conn = |a: Option<f64>, b: Option<f64>| {
        a.zip(b)
            .filter(|_| completed > 0)
            .map(|(s, e)| (e - s) * 1e6 / completed as f64)
    };
    let client_us = per_conn(cpu_start.0, cpu_end.0);
    let target_us = per_conn(cpu_start.1, cpu_end.1);
    // In-process, the bench's own count covers the target too.
    let total_us = if target.in_process {
        client_us
    } else {
        client_us.zip(target_us).map(|(c, t)| c + t)
    };
    if let Some(v) = client_us {
        report.detail("cpu_us_per_connection_client", v);
    }
    if let Some(v) = target_us {
        report.detail("cpu_us_per_connection_target", v);
    }
    if let Some(v) = total_us {
        report.detail("cpu_us_per_connection", v);
        // What the run would reach with the machine's cores to itself.
        report.detail("rate_on_idle_cores", threads as f64 * 1e6 / v);
    }
    if let Some(c) = crypto.cpu_us {
        report.detail("crypto_cpu_us_per_connection", c);
        if let Some(v) = total_us {
            report.detail("crypto_share_of_cpu", c / v);
        }
        if let Some(f) = floor.cpu_us {
            report.detail("tcp_floor_cpu_us_per_connection", f);
            // The ratio an implementation adding nothing to crypto and the floor would reach.
            report.detail("ratio_ceiling", c / (c + f));
        }
    }
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
    report.note(
        "crypto_share_of_cpu is the crypto baseline's CPU per connection over the client's and \
         the target's together: the ratio with the cores to ourselves; ratio_ceiling is the \
         same share if the rest cost only the TCP floor",
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
    fn the_tcp_floor_completes_connections_and_counts_their_cpu() {
        let floor = tcp_floor(1, 0.2, 4, 1).expect("the floor runs");
        assert!(floor.rate > 0.0, "{floor:?}");
        // CPU time counts in 10 ms ticks: a starved run may show none, never less.
        assert!(floor.cpu_us.is_some_and(|us| us >= 0.0), "{floor:?}");
    }

    #[test]
    fn floor_sizes_are_whole_frames_after_the_key() {
        let sizes = FloorSizes::of_a_handshake();
        assert_eq!(sizes.both_ways[0], PUBLIC_KEY_SIZE);
        for n in sizes.both_ways[1..]
            .iter()
            .chain([&sizes.activation, &sizes.reply])
        {
            assert!(*n >= 16 && n % 16 == 0, "{sizes:?}");
        }
        assert!(
            sizes.both_ways[1] > 100,
            "a hello is the largest step: {sizes:?}"
        );
        assert!(sizes.largest() <= FLOOR_STEP_MAX);
    }

    #[test]
    fn connection_crypto_verifies() {
        let (a, b) = (NodeKey::generate(), NodeKey::generate());
        assert!(connection_crypto(&a, &b));
    }
}
