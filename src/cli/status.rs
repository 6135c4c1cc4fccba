//! `grapevine info`, `peers`, `bans` and `unban`: the status API as tables for a person.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use super::CliError;

/// Where `info` and `peers` look for the API when not told.
pub const DEFAULT_RPC_ENDPOINT: &str = "127.0.0.1:8090";
/// How long to wait for the API.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read from the API.
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// GETs `path` from the API and parses the JSON body.
pub fn get_json(endpoint: SocketAddr, path: &str) -> Result<Value, CliError> {
    request(endpoint, "GET", path, None)
}

/// POSTs a JSON body to `path` and parses the JSON answer.
pub fn post_json(endpoint: SocketAddr, path: &str, body: &Value) -> Result<Value, CliError> {
    request(endpoint, "POST", path, Some(body))
}

/// Sends DELETE for `path` and parses the JSON answer.
pub fn delete_json(endpoint: SocketAddr, path: &str) -> Result<Value, CliError> {
    request(endpoint, "DELETE", path, None)
}

/// POSTs a JSON body to `path` and answers the HTTP status and the JSON answer, whatever the
/// status (for answers that carry their outcome in both, like `POST /broadcast`'s).
pub fn post_json_any_status(
    endpoint: SocketAddr,
    path: &str,
    body: &Value,
) -> Result<(u16, Value), CliError> {
    let (code, body) = exchange(endpoint, "POST", path, Some(body))?;
    let status = code;
    let answer = serde_json::from_str(&body).map_err(|e| {
        CliError(format!(
            "status API answered {status} for {path} without JSON ({e}): {}",
            body.trim()
        ))
    })?;
    Ok((code, answer))
}

fn request(
    endpoint: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, CliError> {
    let (status, body) = exchange(endpoint, method, path, body)?;
    if status != 200 && status != 202 {
        let detail = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_default();
        return Err(CliError(format!(
            "status API answered {status} for {path}: {detail}"
        )));
    }
    serde_json::from_str(&body).map_err(|e| CliError(format!("status API sent bad JSON: {e}")))
}

/// One HTTP exchange (ureq, plain HTTP, no proxy: the API is local or named directly): the
/// status code and the body, whatever the status.
fn exchange(
    endpoint: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, String), CliError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .build()
        .into();
    let url = format!("http://{endpoint}{path}");
    let json = body.map(|b| b.to_string()).unwrap_or_default();
    let sent = match method {
        "POST" => agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(json),
        "DELETE" => agent.delete(&url).call(),
        _ => agent.get(&url).call(),
    };
    let mut response = sent.map_err(|e| match e {
        ureq::Error::Io(e) => CliError(format!("cannot reach the status API at {endpoint}: {e}")),
        ureq::Error::ConnectionFailed | ureq::Error::Timeout(_) => {
            CliError(format!("cannot reach the status API at {endpoint}: {e}"))
        }
        e => CliError(format!("status API at {endpoint}: {e}")),
    })?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE)
        .lossy_utf8(true)
        .read_to_string()
        .map_err(|e| CliError(format!("status API answer unreadable: {e}")))?;
    Ok((status, text))
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Formats rows as aligned columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(headers.iter().map(|h| h.to_string()).collect(), &mut out);
    for r in rows {
        line(r.clone(), &mut out);
    }
    out
}

/// `grapevine info`.
pub fn info(endpoint: SocketAddr) -> Result<String, CliError> {
    let v = get_json(endpoint, "/info")?;
    let c = &v["connections"];
    let rows = vec![
        vec!["node_id".into(), cell(&v["node_id"])],
        vec!["chain_id".into(), cell(&v["chain_id"])],
        vec!["p2p_endpoint".into(), cell(&v["p2p_endpoint"])],
        vec!["user_agent".into(), cell(&v["user_agent"])],
        vec![
            "connections".into(),
            format!(
                "{} active, {} handshaking, {} closing",
                cell(&c["active"]),
                cell(&c["handshaking"]),
                cell(&c["closing"])
            ),
        ],
        vec!["head_block_number".into(), cell(&v["head_block_number"])],
        vec!["head_block_id".into(), cell(&v["head_block_id"])],
        vec!["uptime_seconds".into(), cell(&v["uptime_seconds"])],
        vec![
            "sync".into(),
            format!(
                "target {} at {} blocks/s{}",
                cell(&v["sync_target_block"]),
                cell(&v["blocks_per_second"]),
                if v["syncing"] == true {
                    " (syncing)"
                } else {
                    ""
                }
            ),
        ],
    ];
    Ok(table(&["field", "value"], &rows))
}

/// `grapevine peers`.
pub fn peers(endpoint: SocketAddr) -> Result<String, CliError> {
    let v = get_json(endpoint, "/peers")?;
    let peers = v.as_array().cloned().unwrap_or_default();
    let short = |s: String| {
        if s.len() > 16 {
            format!("{}…", &s[..16])
        } else {
            s
        }
    };
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            vec![
                cell(&p["endpoint"]),
                cell(&p["direction"]),
                cell(&p["state"]),
                short(cell(&p["node_id"])),
                cell(&p["user_agent"]),
                cell(&p["round_trip_delay_us"]),
                cell(&p["clock_offset_us"]),
                cell(&p["bytes_sent"]),
                cell(&p["bytes_received"]),
                cell(&p["firewalled"]),
                cell(&p["misbehaviour_score"]),
            ]
        })
        .collect();
    Ok(table(
        &[
            "endpoint",
            "direction",
            "state",
            "node_id",
            "user_agent",
            "rtt_us",
            "offset_us",
            "sent",
            "received",
            "firewalled",
            "score",
        ],
        &rows,
    ))
}

/// `grapevine bans`.
pub fn bans(endpoint: SocketAddr) -> Result<String, CliError> {
    let v = get_json(endpoint, "/bans")?;
    let rows: Vec<Vec<String>> = v
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|b| {
            ["ip", "since", "until", "reason", "score"]
                .iter()
                .map(|k| cell(&b[*k]))
                .collect()
        })
        .collect();
    Ok(table(&["ip", "since", "until", "reason", "score"], &rows))
}

/// `grapevine unban IP`.
pub fn unban(endpoint: SocketAddr, ip: std::net::Ipv4Addr) -> Result<String, CliError> {
    delete_json(endpoint, &format!("/bans/{ip}"))?;
    Ok(format!("{ip} unbanned\n"))
}
