//! The status API: HTTP + JSON on `--rpc-endpoint`, plus Prometheus metrics and a live page.
//!
//! Field names here are a contract with scripts outside the repository: `/info`, `/peers`,
//! `/potential-peers`, `POST /connect`, `POST /broadcast`, `GET /items/{hash}`, `GET /bans`,
//! `DELETE /bans/{ip}`, `/metrics` and `/history`. `GET /` is the status page ([`page`]). The
//! server relays requests to the node task and formats its answers; its one task of its own
//! samples the node once a second for the page's charts ([`history`]). Requests that change
//! the node answer loopback clients only unless allowed ([`guard`]).

pub mod guard;
pub mod history;
pub mod page;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRef, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::app::DelegateError;
use crate::node::BroadcastOutcome;
use crate::runtime::Control;
use crate::wire::types::Endpoint;
use history::{HISTORY_INTERVAL, HISTORY_SAMPLES, SharedHistory};

type Ctl = mpsc::Sender<Control>;

/// How the API is served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApiOptions {
    /// Let clients on other hosts POST and DELETE (`--rpc-allow-remote`); by default only
    /// loopback clients may change the node.
    pub allow_remote: bool,
}

/// What the handlers share.
#[derive(Clone)]
struct ApiState {
    ctl: Ctl,
    history: SharedHistory,
}

impl FromRef<ApiState> for Ctl {
    fn from_ref(state: &ApiState) -> Ctl {
        state.ctl.clone()
    }
}

async fn ask<T>(
    ctl: &Ctl,
    make: impl FnOnce(oneshot::Sender<T>) -> Control,
) -> Result<T, Response> {
    let (tx, rx) = oneshot::channel();
    let unavailable = || (StatusCode::SERVICE_UNAVAILABLE, "node is stopping").into_response();
    ctl.send(make(tx)).await.map_err(|_| unavailable())?;
    rx.await.map_err(|_| unavailable())
}

async fn info(State(ctl): State<Ctl>) -> Result<Response, Response> {
    let info = ask(&ctl, Control::Info).await?;
    Ok(Json(info).into_response())
}

async fn peers(State(ctl): State<Ctl>) -> Result<Response, Response> {
    let peers = ask(&ctl, Control::Peers).await?;
    Ok(Json(peers).into_response())
}

async fn potential_peers(State(ctl): State<Ctl>) -> Result<Response, Response> {
    let records = ask(&ctl, Control::PotentialPeers).await?;
    Ok(Json(records).into_response())
}

#[derive(serde::Deserialize)]
struct ConnectRequest {
    endpoint: String,
}

async fn connect(State(ctl): State<Ctl>, body: axum::body::Bytes) -> Response {
    let request: ConnectRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.to_string()})),
            )
                .into_response();
        }
    };
    let endpoint: Endpoint = match request.endpoint.parse() {
        Ok(e) => e,
        Err(e) => return (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
    };
    if ctl.send(Control::Connect(endpoint)).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "node is stopping").into_response();
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({"endpoint": endpoint.to_string(), "status": "connecting"})),
    )
        .into_response()
}

async fn bans(State(ctl): State<Ctl>) -> Result<Response, Response> {
    let report = ask(&ctl, Control::Bans).await?;
    Ok(Json(report.bans).into_response())
}

async fn unban(
    State(ctl): State<Ctl>,
    axum::extract::Path(ip): axum::extract::Path<String>,
) -> Response {
    let Ok(ip) = ip.parse::<std::net::Ipv4Addr>() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "expected an IPv4 address" })),
        )
            .into_response();
    };
    match ask(&ctl, |reply| Control::Unban { ip, reply }).await {
        Ok(true) => Json(json!({ "ip": ip.to_string(), "status": "unbanned" })).into_response(),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("{ip} is not banned") })),
        )
            .into_response(),
        Err(r) => r,
    }
}

async fn metrics(State(ctl): State<Ctl>) -> Result<Response, Response> {
    let info = ask(&ctl, Control::Info).await?;
    let peers = ask(&ctl, Control::Peers).await?;
    let records = ask(&ctl, Control::PotentialPeers).await?;
    let report = ask(&ctl, Control::Bans).await?;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, lines: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in lines {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let c = info.connections;
    gauge(
        "grapevine_connections",
        "Connections per list.",
        "gauge",
        &[
            ("{state=\"handshaking\"}".into(), c.handshaking.to_string()),
            ("{state=\"active\"}".into(), c.active.to_string()),
            ("{state=\"closing\"}".into(), c.closing.to_string()),
        ],
    );
    let sent: u64 = peers.iter().map(|p| p.bytes_sent).sum();
    let received: u64 = peers.iter().map(|p| p.bytes_received).sum();
    gauge(
        "grapevine_peer_bytes_sent",
        "Bytes sent to currently connected peers.",
        "gauge",
        &[(String::new(), sent.to_string())],
    );
    gauge(
        "grapevine_peer_bytes_received",
        "Bytes received from currently connected peers.",
        "gauge",
        &[(String::new(), received.to_string())],
    );
    let b = info.bandwidth;
    gauge(
        "grapevine_bytes_sent_total",
        "Bytes written to peers since start.",
        "counter",
        &[(String::new(), b.total_bytes_sent.to_string())],
    );
    gauge(
        "grapevine_bytes_received_total",
        "Bytes read from peers since start.",
        "counter",
        &[(String::new(), b.total_bytes_received.to_string())],
    );
    gauge(
        "grapevine_bandwidth_bytes_per_second",
        "Average transfer rates.",
        "gauge",
        &[
            (
                "{direction=\"upload\",window=\"1m\"}".into(),
                b.upload_one_minute.to_string(),
            ),
            (
                "{direction=\"download\",window=\"1m\"}".into(),
                b.download_one_minute.to_string(),
            ),
            (
                "{direction=\"upload\",window=\"15m\"}".into(),
                b.upload_fifteen_minutes.to_string(),
            ),
            (
                "{direction=\"download\",window=\"15m\"}".into(),
                b.download_fifteen_minutes.to_string(),
            ),
            (
                "{direction=\"upload\",window=\"1h\"}".into(),
                b.upload_one_hour.to_string(),
            ),
            (
                "{direction=\"download\",window=\"1h\"}".into(),
                b.download_one_hour.to_string(),
            ),
        ],
    );
    gauge(
        "grapevine_potential_peers",
        "Records in the peer database.",
        "gauge",
        &[(String::new(), records.len().to_string())],
    );
    gauge(
        "grapevine_head_block_number",
        "Number of the head block.",
        "gauge",
        &[(String::new(), info.head_block_number.to_string())],
    );
    gauge(
        "grapevine_items_received_total",
        "Trx and block bodies received from peers.",
        "counter",
        &[(String::new(), info.items_received.to_string())],
    );
    gauge(
        "grapevine_duplicate_items_received_total",
        "Bodies received for items already held.",
        "counter",
        &[(String::new(), info.duplicate_items_received.to_string())],
    );
    gauge(
        "grapevine_sync_target_block",
        "The highest block number peers have offered.",
        "gauge",
        &[(String::new(), info.sync_target_block.to_string())],
    );
    // Every figure of the node's memory accounting, by its /info name.
    let memory: Vec<(String, String)> = match serde_json::to_value(&info.memory) {
        Ok(serde_json::Value::Object(fields)) => fields
            .into_iter()
            .filter_map(|(k, v)| {
                v.as_u64()
                    .map(|n| (format!("{{figure=\"{k}\"}}"), n.to_string()))
            })
            .collect(),
        _ => Vec::new(),
    };
    gauge(
        "grapevine_memory",
        "The node's own tables: bytes queued to peers, inventories, items to fetch, serve queues, sync buffers (see /info's memory).",
        "gauge",
        &memory,
    );
    gauge(
        "grapevine_banned_addresses",
        "IP addresses banned for misbehaviour.",
        "gauge",
        &[(String::new(), report.bans.len().to_string())],
    );
    let violations: Vec<(String, String)> = report
        .violations
        .iter()
        .map(|(class, n)| (format!("{{class=\"{class}\"}}"), n.to_string()))
        .collect();
    gauge(
        "grapevine_violations_total",
        "Protocol violations by peers, per class.",
        "counter",
        &violations,
    );
    gauge(
        "grapevine_banned_connections_refused_total",
        "Sockets closed at accept because their address is banned.",
        "counter",
        &[(String::new(), report.refused_connections.to_string())],
    );
    gauge(
        "grapevine_uptime_seconds",
        "Seconds since the node started.",
        "counter",
        &[(String::new(), info.uptime_seconds.to_string())],
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

#[derive(serde::Deserialize)]
struct BroadcastRequest {
    #[serde(rename = "type")]
    msg_type: u32,
    data: String,
}

/// The HTTP status of a broadcast's outcome: 200 accepted, 202 held (its parent is unknown),
/// 409 duplicate, 422 rejected by the application, 400 not an item, 500 a local failure.
pub fn broadcast_status(outcome: &BroadcastOutcome) -> StatusCode {
    match outcome {
        BroadcastOutcome::Accepted => StatusCode::OK,
        BroadcastOutcome::Held { .. } => StatusCode::ACCEPTED,
        BroadcastOutcome::Duplicate => StatusCode::CONFLICT,
        BroadcastOutcome::Rejected(DelegateError::Local(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        BroadcastOutcome::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
        BroadcastOutcome::NotAnItem(_) => StatusCode::BAD_REQUEST,
    }
}

async fn broadcast(State(ctl): State<Ctl>, body: axum::body::Bytes) -> Response {
    let bad = |e: String| (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response();
    let request: BroadcastRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(e.to_string()),
    };
    if request.msg_type != 1000 && request.msg_type != 1001 {
        return bad(format!(
            "type must be 1000 or 1001, not {}",
            request.msg_type
        ));
    }
    let data = match hex::decode(request.data.trim()) {
        Ok(d) if d.len() <= crate::wire::frame::MAX_MESSAGE_SIZE => d,
        Ok(_) => return bad("data is larger than a message may be".into()),
        Err(e) => return bad(format!("data is not hex: {e}")),
    };
    let msg_type = request.msg_type;
    match ask(&ctl, |reply| Control::Broadcast {
        msg_type,
        data,
        reply,
    })
    .await
    {
        Ok(answer) => (broadcast_status(&answer.outcome), Json(answer)).into_response(),
        Err(r) => r,
    }
}

async fn item(
    State(ctl): State<Ctl>,
    axum::extract::Path(hash): axum::extract::Path<String>,
) -> Response {
    let Ok(hash) = hash.parse::<crate::wire::types::ItemHash>() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "expected 40 hex digits" })),
        )
            .into_response();
    };
    match ask(&ctl, |reply| Control::GetItem { hash, reply }).await {
        Ok(Some((msg_type, data))) => {
            Json(json!({ "type": msg_type, "data": hex::encode(data) })).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such item" })),
        )
            .into_response(),
        Err(r) => r,
    }
}

/// `GET /history[?after=SEQ]`: the charts' samples, oldest first (those numbered above SEQ
/// when given).
async fn history_samples(State(history): State<SharedHistory>, uri: Uri) -> Response {
    let after = uri
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("after="))
        .map(str::parse::<u64>);
    let after = match after {
        None => None,
        Some(Ok(seq)) => Some(seq),
        Some(Err(_)) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": "after must be a sample number" })),
            )
                .into_response();
        }
    };
    let samples = match history.lock() {
        Ok(h) => h.after(after),
        Err(_) => Vec::new(),
    };
    Json(json!({
        "interval_ms": HISTORY_INTERVAL.as_millis() as u64,
        "capacity": HISTORY_SAMPLES,
        "samples": samples,
    }))
    .into_response()
}

impl FromRef<ApiState> for SharedHistory {
    fn from_ref(state: &ApiState) -> SharedHistory {
        state.history.clone()
    }
}

/// The API's routes over a node's control channel, with loopback-only changes
/// ([`ApiOptions::default`]) and a history nobody fills (see [`serve_with`]). Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`: without the client's address every
/// POST and DELETE is refused.
pub fn router(ctl: Ctl) -> Router {
    router_with(ctl, Arc::default(), ApiOptions::default())
}

fn router_with(ctl: Ctl, history: SharedHistory, options: ApiOptions) -> Router {
    Router::new()
        .route("/", get(page::status_page))
        .route("/info", get(info))
        .route("/peers", get(peers))
        .route("/potential-peers", get(potential_peers))
        .route("/history", get(history_samples))
        .route("/connect", post(connect))
        .route("/metrics", get(metrics))
        .route("/broadcast", post(broadcast))
        .route("/items/{hash}", get(item))
        .route("/bans", get(bans))
        .route("/bans/{ip}", delete(unban))
        .layer(axum::middleware::from_fn_with_state(
            options.allow_remote,
            guard::guard,
        ))
        .with_state(ApiState { ctl, history })
}

/// Binds the API and serves it until the node stops, changes answering loopback clients only.
/// Returns the bound address.
pub async fn serve(addr: SocketAddr, ctl: Ctl) -> std::io::Result<SocketAddr> {
    serve_with(addr, ctl, ApiOptions::default()).await
}

/// Binds the API, starts sampling the node for `/history`, and serves until the node stops.
/// Returns the bound address.
pub async fn serve_with(
    addr: SocketAddr,
    ctl: Ctl,
    options: ApiOptions,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    if !guard::is_loopback(bound.ip()) {
        warn!(
            rpc_endpoint = %bound,
            "the status API is reachable from other hosts: anyone who can connect reads it"
        );
    }
    if options.allow_remote {
        warn!("--rpc-allow-remote: any client that can connect may change the node");
    }
    let history: SharedHistory = Arc::new(Mutex::new(history::History::default()));
    tokio::spawn(history::run_sampler(ctl.clone(), history.clone()));
    let app = router_with(ctl.clone(), history, options);
    tokio::spawn(async move {
        let stopped = async move { ctl.closed().await };
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stopped)
        .await;
    });
    Ok(bound)
}
