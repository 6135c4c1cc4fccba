//! Who may change the node through the API.
//!
//! Reading (`GET`, `HEAD`) is open to whoever can reach the endpoint. Anything else (`POST
//! /connect`, `POST /broadcast`, `DELETE /bans/{ip}`) is refused with 403 unless:
//!
//! - the client is on a loopback address, or the operator passed `--rpc-allow-remote`;
//! - it does not come from a web page of another site: a request carrying an `Origin` header
//!   must name the endpoint it is sent to (browsers add `Origin` to cross-site POSTs; curl and
//!   `grapevine` do not send one);
//! - without `--rpc-allow-remote`, its `Host` is an IP address or `localhost`, so a page that
//!   rebinds its own DNS name to 127.0.0.1 cannot reach the endpoint under that name.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Whether a client at `client` may change the node: loopback clients always, others only
/// with `allow_remote`. An unknown address (the router served without connection info) is
/// refused.
pub fn client_may_change(client: Option<IpAddr>, allow_remote: bool) -> bool {
    allow_remote || client.is_some_and(is_loopback)
}

/// 127.0.0.0/8, ::1, and 127.0.0.0/8 mapped into IPv6.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Whether `host` (a `Host` header: name or address, optional port) is an IP address or
/// `localhost`, names no DNS rebinding can hijack.
fn host_is_literal(host: &str) -> bool {
    let host = host.trim();
    if host.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.parse::<u16>().is_ok() => name,
        _ => host,
    };
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok()
}

/// The reason a request that changes the node is refused, or `None` when it may proceed.
pub fn refusal(
    client: Option<IpAddr>,
    allow_remote: bool,
    host: Option<&str>,
    origin: Option<&str>,
) -> Option<&'static str> {
    if !client_may_change(client, allow_remote) {
        return Some(
            "only loopback clients may POST or DELETE (start the node with --rpc-allow-remote to allow others)",
        );
    }
    if let Some(origin) = origin {
        let same = host.is_some_and(|h| {
            origin.eq_ignore_ascii_case(&format!("http://{h}"))
                || origin.eq_ignore_ascii_case(&format!("https://{h}"))
        });
        if !same {
            return Some("requests from web pages of other origins may not change the node");
        }
    }
    if !allow_remote && !host.is_some_and(host_is_literal) {
        return Some("the Host header must be an IP address or localhost");
    }
    None
}

/// Middleware: lets reads through, and checks everything else with [`refusal`].
pub async fn guard(State(allow_remote): State<bool>, request: Request, next: Next) -> Response {
    if request.method().is_safe() {
        return next.run(request).await;
    }
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let reason = {
        let headers = request.headers();
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        // HTTP/1.1 requests carry Host; the URI's authority stands in for it otherwise.
        let host = text(header::HOST).or_else(|| request.uri().authority().map(|a| a.as_str()));
        refusal(client, allow_remote, host, text(header::ORIGIN))
    };
    let Some(reason) = reason else {
        return next.run(request).await;
    };
    tracing::warn!(
        client = ?client,
        method = %request.method(),
        path = %request.uri().path(),
        reason,
        "status API request refused"
    );
    (
        StatusCode::FORBIDDEN,
        axum::Json(json!({ "error": reason })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn only_loopback_clients_change_the_node_unless_allowed() {
        for loopback in ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"] {
            assert!(client_may_change(ip(loopback), false), "{loopback}");
        }
        for remote in [
            "10.0.0.1",
            "192.168.1.20",
            "8.8.8.8",
            "0.0.0.0",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!client_may_change(ip(remote), false), "{remote}");
            assert!(client_may_change(ip(remote), true), "{remote}");
        }
        assert!(
            !client_may_change(None, false),
            "unknown clients are refused"
        );
    }

    #[test]
    fn refusals_name_their_reason() {
        let ok = |c: &str, allow, host, origin| refusal(ip(c), allow, host, origin);
        assert_eq!(ok("127.0.0.1", false, Some("127.0.0.1:8090"), None), None);
        assert_eq!(ok("127.0.0.1", false, Some("localhost:8090"), None), None);
        assert_eq!(ok("::1", false, Some("[::1]:8090"), None), None);
        assert!(
            ok("10.1.2.3", false, Some("10.0.0.5:8090"), None)
                .unwrap()
                .contains("--rpc-allow-remote")
        );
        assert_eq!(ok("10.1.2.3", true, Some("node.lan:8090"), None), None);
        // A page of another site, even on a loopback client.
        let page = Some("http://evil.example");
        assert!(
            ok("127.0.0.1", false, Some("127.0.0.1:8090"), page)
                .unwrap()
                .contains("origin")
        );
        assert!(ok("10.1.2.3", true, Some("node.lan:8090"), page).is_some());
        assert!(ok("127.0.0.1", false, Some("127.0.0.1:8090"), Some("null")).is_some());
        // The page served by the endpoint itself may.
        let own = Some("http://127.0.0.1:8090");
        assert_eq!(ok("127.0.0.1", false, Some("127.0.0.1:8090"), own), None);
        // A rebound DNS name is refused on a loopback-only endpoint.
        let rebound = Some("evil.example:8090");
        assert!(
            ok(
                "127.0.0.1",
                false,
                rebound,
                Some("http://evil.example:8090")
            )
            .unwrap()
            .contains("Host")
        );
        assert!(ok("127.0.0.1", false, None, None).is_some());
    }
}
