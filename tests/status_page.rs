//! The status page in a real browser, and who may change the node through the API.
//!
//! Three grapevine nodes run in-process on 127.0.0.1; the API of one is served on 127.0.0.1:0
//! and headless Chromium (Debian's `chromium`; `.ci/run` installs it) loads `GET /`, runs its
//! script and dumps the DOM, which must show the other nodes in the peers table and charts
//! that drew. A missing browser fails the test: it is not skipped.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use grapevine::app::relay_store::make_test_chain;
use grapevine::runtime::NodeHandle;
use grapevine::wire::Message;
use grapevine::wire::message::{
    AddressMessage, ConnectionAcceptedMessage, CurrentTimeReplyMessage, msg_type,
};
use grapevine::wire::types::Ripemd160;
use support::*;

const T: Duration = Duration::from_secs(20);
/// Longest a browser run may take before the test fails.
const BROWSER_LIMIT: Duration = Duration::from_secs(60);
/// The user agent of a hostile peer: HTML that must show as text, never become markup.
const HOSTILE_USER_AGENT: &str =
    "<img id=\"injected\" src=\"x\" onerror=\"document.title='owned'\">";

/// A valid transaction, distinct per `i`, expiring far in the future.
fn trx(i: u32) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_str(include_str!("vectors/messages.json")).unwrap();
    let mut data = hex::decode(v["messages"][0]["data_hex"].as_str().unwrap()).unwrap();
    data[2..6].copy_from_slice(&i.to_le_bytes());
    data[6..10].copy_from_slice(&4_000_000_000u32.to_le_bytes());
    data
}

fn quiet(dir: &str, seeds: Vec<String>) -> grapevine::runtime::RuntimeConfig {
    let mut c = config(temp_dir(dir), seeds);
    c.node.connect_to_new_peers = false;
    c
}

/// One HTTP/1.1 request with extra header lines; the status code and body.
fn http(api: SocketAddr, request_head: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(
        s,
        "{request_head}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

async fn http_async(api: SocketAddr, head: String, body: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || http(api, &head, body))
        .await
        .unwrap()
}

/// The samples in `GET /history`.
async fn history_len(api: SocketAddr) -> usize {
    let (status, body) = http_async(api, format!("GET /history HTTP/1.1\r\nHost: {api}"), "").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["samples"].as_array().map_or(0, Vec::len)
}

/// A raw peer that completes the handshake under `user_agent` and then answers time requests
/// in the background, so it stays active.
async fn raw_peer_with_user_agent(
    node: SocketAddr,
    user_agent: &str,
) -> tokio::task::JoinHandle<()> {
    let mut raw = RawPeer::connect(node).await;
    let mut hello = raw.hello(CHAIN, random_node_id());
    hello.user_agent = user_agent.to_string();
    raw.send(Message::Hello(hello)).await;
    assert!(
        raw.recv_type(msg_type::CONNECTION_ACCEPTED, T)
            .await
            .is_some()
    );
    raw.send(Message::ConnectionAccepted(ConnectionAcceptedMessage {}))
        .await;
    assert!(raw.recv_type(msg_type::ADDRESS_REQUEST, T).await.is_some());
    raw.send(Message::Address(AddressMessage { addresses: vec![] }))
        .await;
    tokio::spawn(async move {
        while let Some(m) = raw.recv(Duration::from_secs(3600)).await {
            if let Message::CurrentTimeRequest(r) = m {
                let now = r.request_sent_time;
                raw.send(Message::CurrentTimeReply(CurrentTimeReplyMessage {
                    request_sent_time: r.request_sent_time,
                    request_received_time: now,
                    reply_transmitted_time: now,
                }))
                .await;
            }
        }
    })
}

/// Debian's Chromium, or a failure that says how to get it.
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "the status page test needs a headless browser and found no `chromium` on PATH: \
         install it with `apt-get update && apt-get install -y chromium` (.ci/run does)"
    );
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom` or `--screenshot=FILE`) and
/// answers its standard output. `budget_ms` of the page's virtual time run first (its
/// one-second polls happen in that time; fetches are real).
async fn run_chromium(url: &str, mode: &str, budget_ms: u32) -> String {
    let profile = temp_dir("chromium-profile");
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        "--window-size=1280,900",
        "--force-device-scale-factor=1",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--virtual-time-budget={budget_ms}"))
    .arg(mode)
    .arg(url)
    .kill_on_drop(true)
    .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(BROWSER_LIMIT, cmd.output())
        .await
        .expect("chromium finishes within the limit")
        .expect("chromium starts");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of `attr` in the first tag that contains `marker` (e.g. `id="chart-items"`).
fn attribute<'a>(dom: &'a str, marker: &str, attr: &str) -> Option<&'a str> {
    let at = dom.find(marker)?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    let tag = &dom[start..end];
    let key = format!("{attr}=\"");
    let v = &tag[tag.find(&key)? + key.len()..];
    Some(&v[..v.find('"')?])
}

struct Network {
    a: NodeHandle,
    b: NodeHandle,
    c: NodeHandle,
    api: SocketAddr,
}

/// b and c, and a dialling both; a's API on 127.0.0.1:0.
async fn three_nodes(name: &str) -> Network {
    let b = start(quiet(&format!("{name}-b"), vec![])).await;
    let c = start(quiet(&format!("{name}-c"), vec![])).await;
    let seeds = vec![addr(&b).to_string(), addr(&c).to_string()];
    let a = start(quiet(&format!("{name}-a"), seeds)).await;
    let api = grapevine::api::serve("127.0.0.1:0".parse().unwrap(), a.controller())
        .await
        .unwrap();
    assert!(
        wait_for(&a, T, |p| active(p) == 2).await,
        "a reaches b and c"
    );
    Network { a, b, c, api }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_peers_and_draws_charts_in_chromium() {
    chromium(); // fails first, with instructions, when there is no browser
    let net = three_nodes("page").await;
    let api = net.api;
    let hostile = raw_peer_with_user_agent(addr(&net.a), HOSTILE_USER_AGENT).await;
    assert!(wait_for(&net.a, T, |p| active(p) == 3).await);
    // Traffic for the charts: blocks and transactions from b reach a.
    for blk in make_test_chain(Ripemd160::default(), 20, 1_600_000_000) {
        net.b.broadcast(msg_type::BLOCK, blk).await.unwrap();
    }
    for i in 0..10 {
        net.c.broadcast(msg_type::TRX, trx(i)).await.unwrap();
    }
    // A page opened now finds history already kept by the server, and the blocks applied.
    let deadline = tokio::time::Instant::now() + T;
    while history_len(api).await < 3 || net.a.info().await.unwrap().head_block_number < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no history samples or blocks"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let url = format!("http://{api}/");
    let dom = run_chromium(&url, "--dump-dom", 5_000).await;

    // The page ran and polled more than once.
    let updates: u32 = attribute(&dom, "<body", "data-updates")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(updates >= 2, "the page polled {updates} times:\n{dom}");
    // Identity and head.
    let info = net.a.info().await.unwrap();
    assert!(dom.contains(&info.user_agent), "user agent shown");
    assert!(
        dom.contains(&info.p2p_endpoint.clone().unwrap()),
        "p2p endpoint shown"
    );
    assert!(dom.contains("#20"), "head block 20 shown");
    // The peers table: b and c as active rows, by the endpoints a dialled.
    for other in [&net.b, &net.c] {
        let endpoint = addr(other).to_string();
        let marker = format!("data-endpoint=\"{endpoint}\"");
        assert_eq!(
            attribute(&dom, &marker, "data-state"),
            Some("active"),
            "{endpoint} is an active row:\n{dom}"
        );
    }
    // The hostile user agent is text, not markup.
    assert!(
        dom.contains("&lt;img id=\"injected\""),
        "shown as text:\n{dom}"
    );
    assert!(
        !dom.contains("<img id=\"injected\""),
        "never parsed as HTML"
    );
    assert!(
        dom.contains("<title>grapevine status</title>"),
        "its script never ran"
    );
    // Every chart drew the server's history (at least the samples that existed at load).
    for chart in ["chart-bandwidth", "chart-items", "chart-connections"] {
        let drawn: usize = attribute(&dom, &format!("id=\"{chart}\""), "data-drawn")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(drawn >= 3, "{chart} drew {drawn} points");
    }
    assert!(dom.contains("3 connections, 3 active"), "peer count");

    hostile.abort();
    for h in [net.a, net.b, net.c] {
        h.shutdown().await;
    }
}

/// POST and DELETE from a loopback client work; requests a browser would send for a page of
/// another site, or under a DNS name, are refused with 403 and a JSON error; reads are open.
/// (A non-loopback client cannot be made here, tests using only 127.0.0.0/8: that rule is the
/// pure function `api::guard::client_may_change`, unit-tested in `src/api/guard.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_clients_change_the_node_and_web_pages_of_other_sites_do_not() {
    let net = three_nodes("guard").await;
    let api = net.api;
    let body = "{\"endpoint\": \"127.0.0.1:9\"}";
    let post = |extra: &str| format!("POST /connect HTTP/1.1\r\nHost: {api}{extra}");

    let (status, answer) = http_async(api, post("\r\nContent-Type: application/json"), body).await;
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains("connecting"));

    let (status, answer) = http_async(api, post("\r\nOrigin: http://evil.example"), body).await;
    assert_eq!(status, 403, "{answer}");
    let error: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("origin"),
        "{answer}"
    );

    let (status, _) = http_async(api, post(&format!("\r\nOrigin: http://{api}")), body).await;
    assert_eq!(status, 202, "the page's own origin may");

    let rebound = "POST /connect HTTP/1.1\r\nHost: evil.example".to_string();
    let (status, answer) = http_async(api, rebound, body).await;
    assert_eq!(status, 403, "{answer}");

    let delete = format!("DELETE /bans/127.0.0.9 HTTP/1.1\r\nHost: {api}\r\nOrigin: null");
    let (status, _) = http_async(api, delete, "").await;
    assert_eq!(status, 403);
    let delete = format!("DELETE /bans/127.0.0.9 HTTP/1.1\r\nHost: {api}");
    let (status, answer) = http_async(api, delete, "").await;
    assert_eq!(status, 404, "reaches the handler: no such ban ({answer})");

    // Reads are not restricted.
    let get = "GET /info HTTP/1.1\r\nHost: evil.example\r\nOrigin: http://evil.example".to_string();
    let (status, _) = http_async(api, get, "").await;
    assert_eq!(status, 200);
    // The page itself, with its policy.
    let (status, page) = http_async(api, format!("GET / HTTP/1.1\r\nHost: {api}"), "").await;
    assert_eq!(status, 200);
    assert!(page.contains("<canvas id=\"chart-bandwidth\""));
    for h in [net.a, net.b, net.c] {
        h.shutdown().await;
    }
}

/// Writes `docs/status-page.png`: a 3-node network that two more nodes join (one leaves
/// again), a synced chain, blocks and waves of transactions for two minutes, and a screenshot
/// of the page taken while the traffic goes on.
/// Run by hand: `cargo test --test status_page -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/status-page.png; takes about two minutes"]
async fn screenshot_for_the_readme() {
    const SECONDS: u32 = 125;
    let net = three_nodes("shot").await;
    let chain = make_test_chain(Ripemd160::default(), 3_000, 1_600_000_000);
    for blk in &chain[..1_500] {
        net.b.broadcast(msg_type::BLOCK, blk.clone()).await.unwrap();
    }
    let (mut d, mut e) = (None, None);
    let mut trx_id = 0u32;
    let mut shot = None;
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status-page.png");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    for second in 0..SECONDS {
        // A wave of transactions from b and c, a block a second from b.
        let wave = (f64::from(second) / 10.0).sin().abs();
        let n = 3 + (wave * 40.0) as u32;
        for _ in 0..n {
            trx_id += 1;
            let from = if trx_id.is_multiple_of(3) {
                &net.c
            } else {
                &net.b
            };
            from.broadcast(msg_type::TRX, trx(trx_id)).await.unwrap();
        }
        let block = chain[1_500 + second as usize].clone();
        net.b.broadcast(msg_type::BLOCK, block).await.unwrap();
        let a = addr(&net.a).to_string();
        match second {
            30 => d = Some(start(quiet("shot-d", vec![a])).await),
            60 => e = Some(start(quiet("shot-e", vec![a])).await),
            95 => {
                if let Some(e) = e.take() {
                    e.shutdown().await;
                }
            }
            _ => {}
        }
        if second == SECONDS - 8 {
            let url = format!("http://{}/", net.api);
            let mode = format!("--screenshot={}", out.display());
            shot = Some(tokio::spawn(async move {
                run_chromium(&url, &mode, 3_000).await
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    shot.unwrap().await.unwrap();
    println!("wrote {}", out.display());
    for h in [d, e].into_iter().flatten() {
        h.shutdown().await;
    }
    for h in [net.a, net.b, net.c] {
        h.shutdown().await;
    }
}
