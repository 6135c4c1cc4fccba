//! `GET /`: the live status page, one HTML file with its style and script inline and no
//! external assets, so it works offline. Its script polls `/info`, `/peers` and `/history`
//! once a second and draws the charts on `<canvas>`.
//!
//! The page is served with a Content-Security-Policy that lets it load nothing from anywhere
//! and run only its own script (named by hash), so a hostile user agent string shown in the
//! peers table could not run even if it reached the HTML.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The page.
pub const STATUS_PAGE: &str = include_str!("status.html");

/// The page's inline script, between its only `<script>` and `</script>`.
fn script(page: &str) -> &str {
    let Some((_, after)) = page.split_once("<script>") else {
        return "";
    };
    after.split_once("</script>").map_or("", |(s, _)| s)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The policy: nothing from outside, fetches to this endpoint only, the page's own script.
static CONTENT_SECURITY_POLICY: LazyLock<String> = LazyLock::new(|| {
    let hash = base64(&Sha256::digest(script(STATUS_PAGE).as_bytes()));
    format!(
        "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
         connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
});

/// `GET /`.
pub async fn status_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                CONTENT_SECURITY_POLICY.as_str(),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        STATUS_PAGE,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn the_page_is_self_contained() {
        assert!(script(STATUS_PAGE).contains("function drawChart"));
        assert_eq!(
            STATUS_PAGE.matches("<script").count(),
            1,
            "one inline script"
        );
        for external in ["http://", "https://", "src=", "@import", "url("] {
            assert!(
                !STATUS_PAGE.contains(external),
                "the page refers to {external}"
            );
        }
        assert!(
            !script(STATUS_PAGE).contains("innerHTML"),
            "peer data stays text"
        );
        assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'none'; script-src 'sha256-"));
    }
}
