//! fc's JSON file conventions, as bitshares-core reads and writes `p2p/peers.json`: how
//! `fc::variant` converts scalars, what its default ("legacy") parser tolerates, and the variant
//! form of `fc::exception`.
//!
//! The reference reads a file with `fc::json::from_file` (legacy parser), turns it into typed
//! values with `from_variant`, and writes it with `fc::json::save_to_file` (pretty-printed).
//! What that means, and what this module mirrors:
//! - **Scalars convert loosely**: a number may be written as a string and a string field may
//!   hold a number ([`as_i64`], [`as_u64`], [`as_string`]).
//! - **Commas are optional separators**: the legacy parser skips a comma wherever it expects
//!   a key, a value or a closing bracket, so a trailing, leading or doubled comma is fine
//!   ([`drop_stray_commas`]). A missing comma, a comment, or anything else that is not JSON is
//!   refused, as the reference refuses comments.
//! - **Times** are `time_point_sec` strings "YYYY-MM-DDTHH:MM:SS" in UTC; fc also reads the
//!   compact "YYYYMMDDTHHMMSS" form and drops fractions of a second ([`parse_time_sec`]).
//! - **Large integers** are written as strings: fc's writer quotes an int64 outside the i32
//!   range and a uint64 above u32::MAX ([`int_variant`], [`uint_variant`]).
//! - **An exception** is `{"code", "name", "message", "stack"}`, every key optional when read,
//!   `stack` a list of log messages whose context has required keys ([`FcException`]).

use std::fmt;

use serde_json::{Map, Value};

use crate::wire::time;
use crate::wire::types::TimePoint;

/// Longest error text grapevine itself puts in an exception, in bytes: error texts may echo
/// what a peer sent, and each of up to 1000 peer records keeps one, so this bounds what the
/// peer database holds for them (and what is written to disk) whatever a peer does.
pub const MAX_ERROR_TEXT_BYTES: usize = 512;

/// fc's `variant::as_string` for a scalar: strings as they are, numbers and booleans printed,
/// null empty. Objects and arrays do not convert.
pub fn as_string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        other => Err(format!("expected a string, found {}", kind(other))),
    }
}

/// fc's `variant::as_int64`: numbers (fractions dropped), numeric strings, booleans as 0 or 1,
/// null as 0.
pub fn as_i64(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| u as i64))
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .ok_or_else(|| format!("{n} is not an integer")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an integer")),
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Null => Ok(0),
        other => Err(format!("expected an integer, found {}", kind(other))),
    }
}

/// fc's `variant::as_uint64`: as [`as_i64`], for unsigned values.
pub fn as_u64(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .ok_or_else(|| format!("{n} is not an unsigned integer")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an unsigned integer")),
        Value::Bool(b) => Ok(u64::from(*b)),
        Value::Null => Ok(0),
        other => Err(format!(
            "expected an unsigned integer, found {}",
            kind(other)
        )),
    }
}

/// A u32 field (fc reads it as uint64 and narrows it; we saturate instead of wrapping).
pub fn as_u32(v: &Value) -> Result<u32, String> {
    as_u64(v).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// An int64 as fc's writer prints it: a number within the i32 range, a string outside it.
pub fn int_variant(n: i64) -> Value {
    if i32::try_from(n).is_ok() {
        Value::from(n)
    } else {
        Value::from(n.to_string())
    }
}

/// A uint64 as fc's writer prints it: a number up to u32::MAX, a string above.
pub fn uint_variant(n: u64) -> Value {
    if u32::try_from(n).is_ok() {
        Value::from(n)
    } else {
        Value::from(n.to_string())
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads a `time_point_sec` (or a `time_point`, which fc also prints to the second): the ISO
/// form "YYYY-MM-DDTHH:MM:SS" or the compact "YYYYMMDDTHHMMSS", an optional fraction dropped
/// as fc drops it. The result is whole seconds, clamped to what a `time_point_sec` holds.
pub fn parse_time_sec(v: &Value) -> Result<TimePoint, String> {
    let text = as_string(v)?;
    let delimited = if text.len() >= 5 && text.as_bytes()[4] != b'-' && text.is_ascii() {
        // boost's from_iso_string: YYYYMMDDTHHMMSS[.fff]
        let (main, frac) = text.split_at(text.find('.').unwrap_or(text.len()));
        if main.len() != 15 || main.as_bytes()[8] != b'T' {
            return Err(format!("{text:?} is not a time"));
        }
        format!(
            "{}-{}-{}T{}:{}:{}{frac}",
            &main[0..4],
            &main[4..6],
            &main[6..8],
            &main[9..11],
            &main[11..13],
            &main[13..15]
        )
    } else {
        text.clone()
    };
    let micros = time::parse_micros(&delimited).ok_or_else(|| format!("{text:?} is not a time"))?;
    let secs = micros.div_euclid(1_000_000).clamp(0, i64::from(u32::MAX));
    Ok(TimePoint(secs * 1_000_000))
}

/// Writes a time as fc writes a `time_point_sec`: whole seconds, within its u32 range.
pub fn time_sec_variant(t: TimePoint) -> Value {
    let secs = t.0.div_euclid(1_000_000).clamp(0, i64::from(u32::MAX));
    Value::from(time::format_seconds(secs))
}

/// The legacy parser's comma rule on a JSON text: a comma right after `[`, `{` or another
/// comma, or right before `]`, `}` or another comma, separates nothing and is dropped. Strings
/// are left alone. Returns `None` when there is no such comma (the text is unchanged).
pub fn drop_stray_commas(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut dropped = false;
    for (i, &b) in text.iter().enumerate() {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                out.push(b);
            }
            b',' => {
                let before = out.iter().rev().find(|c| !c.is_ascii_whitespace());
                let after = text[i + 1..].iter().find(|c| !c.is_ascii_whitespace());
                let separates_nothing = matches!(before, None | Some(b'[' | b'{' | b','))
                    || matches!(after, None | Some(b']' | b'}' | b','));
                if separates_nothing {
                    dropped = true;
                } else {
                    out.push(b);
                }
            }
            _ => out.push(b),
        }
    }
    dropped.then_some(out)
}

/// Parses a JSON document as fc's legacy parser would accept it: strict JSON, or else the same
/// text with stray commas dropped. The error is the strict parser's.
pub fn parse_lenient(bytes: &[u8]) -> Result<(Value, bool), String> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok((v, false)),
        Err(strict) => match drop_stray_commas(bytes).map(|b| serde_json::from_slice(&b)) {
            Some(Ok(v)) => Ok((v, true)),
            _ => Err(strict.to_string()),
        },
    }
}

/// An fc log level (`fc::log_level`), as its variant names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    All,
    Debug,
    Info,
    Warn,
    Error,
    Off,
}

impl LogLevel {
    const NAMES: [(LogLevel, &'static str); 6] = [
        (LogLevel::All, "all"),
        (LogLevel::Debug, "debug"),
        (LogLevel::Info, "info"),
        (LogLevel::Warn, "warn"),
        (LogLevel::Error, "error"),
        (LogLevel::Off, "off"),
    ];

    /// The name fc writes.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(l, _)| *l == self)
            .map_or("off", |(_, n)| n)
    }

    fn from_variant(v: &Value) -> Result<Self, String> {
        let text = as_string(v)?;
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == text)
            .map(|(l, _)| *l)
            .ok_or_else(|| format!("log level {text:?} is not all|debug|info|warn|error|off"))
    }
}

/// Where and when a log message was made (`fc::log_context`).
#[derive(Clone, Debug, PartialEq)]
pub struct LogContext {
    pub level: LogLevel,
    pub file: String,
    pub line: u64,
    pub method: String,
    pub hostname: String,
    pub thread_name: String,
    /// Read when present; fc never writes it, we write it back only if we read it.
    pub task_name: Option<String>,
    /// Whole seconds, as fc prints a `time_point`.
    pub timestamp: TimePoint,
    /// fc writes it only when not empty.
    pub context: Option<String>,
}

fn required<'a>(obj: &'a Map<String, Value>, key: &str, what: &str) -> Result<&'a Value, String> {
    obj.get(key).ok_or_else(|| format!("{what} has no {key:?}"))
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{what} must be an object, found {}", kind(v)))
}

impl LogContext {
    /// fc's log_context(variant): every key but `task_name` and `context` is required.
    pub fn from_variant(v: &Value) -> Result<Self, String> {
        const WHAT: &str = "a log context";
        let o = object(v, WHAT)?;
        let text = |key: &str| required(o, key, WHAT).and_then(as_string);
        Ok(Self {
            level: LogLevel::from_variant(required(o, "level", WHAT)?)?,
            file: text("file")?,
            line: as_u64(required(o, "line", WHAT)?)?,
            method: text("method")?,
            hostname: text("hostname")?,
            thread_name: text("thread_name")?,
            task_name: o.get("task_name").map(as_string).transpose()?,
            timestamp: parse_time_sec(required(o, "timestamp", WHAT)?)?,
            context: o.get("context").map(as_string).transpose()?,
        })
    }

    /// The variant fc writes: its keys in fc's order; `context` only when not empty.
    pub fn to_variant(&self) -> Value {
        let mut o = Map::new();
        o.insert("level".into(), self.level.name().into());
        o.insert("file".into(), self.file.clone().into());
        o.insert("line".into(), uint_variant(self.line));
        o.insert("method".into(), self.method.clone().into());
        o.insert("hostname".into(), self.hostname.clone().into());
        o.insert("thread_name".into(), self.thread_name.clone().into());
        if let Some(t) = &self.task_name {
            o.insert("task_name".into(), t.clone().into());
        }
        o.insert("timestamp".into(), time_sec_variant(self.timestamp));
        if let Some(c) = self.context.as_ref().filter(|c| !c.is_empty()) {
            o.insert("context".into(), c.clone().into());
        }
        Value::Object(o)
    }
}

/// One entry of an exception's stack (`fc::log_message`): a format string with `${key}`
/// placeholders and the data that fills them.
#[derive(Clone, Debug, PartialEq)]
pub struct LogMessage {
    pub context: LogContext,
    pub format: String,
    pub data: Map<String, Value>,
}

impl LogMessage {
    /// fc's log_message(variant): `context`, `format` and `data` (an object) are required.
    pub fn from_variant(v: &Value) -> Result<Self, String> {
        const WHAT: &str = "a log message";
        let o = object(v, WHAT)?;
        Ok(Self {
            context: LogContext::from_variant(required(o, "context", WHAT)?)?,
            format: as_string(required(o, "format", WHAT)?)?,
            data: object(required(o, "data", WHAT)?, "a log message's data")?.clone(),
        })
    }

    /// The variant fc writes.
    pub fn to_variant(&self) -> Value {
        let mut o = Map::new();
        o.insert("context".into(), self.context.to_variant());
        o.insert("format".into(), self.format.clone().into());
        o.insert("data".into(), Value::Object(self.data.clone()));
        Value::Object(o)
    }

    /// The message with its placeholders filled, as fc's format_string fills them (an unknown
    /// key is left as written).
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut rest = self.format.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let key = &after[..end];
            match self.data.get(key) {
                Some(Value::String(s)) => out.push_str(s),
                Some(v) => out.push_str(&v.to_string()),
                None => {
                    out.push_str("${");
                    out.push_str(key);
                    out.push('}');
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// An `fc::exception` as fc's to_variant writes it and from_variant reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct FcException {
    pub code: i64,
    pub name: String,
    pub message: String,
    pub stack: Vec<LogMessage>,
}

/// The name fc gives a plain `fc::exception`.
const PLAIN_NAME: &str = "exception";
/// The message of an `fc::exception` built without one.
const UNSPECIFIED: &str = "unspecified";

impl Default for FcException {
    /// A default-constructed `fc::exception`, what fc's from_variant starts from.
    fn default() -> Self {
        Self {
            code: 0,
            name: PLAIN_NAME.into(),
            message: UNSPECIFIED.into(),
            stack: Vec::new(),
        }
    }
}

impl FcException {
    /// The exception grapevine records for an error of its own: a plain fc::exception (code 0)
    /// whose message is `text`, with one log message saying the same, made at `now`. Control
    /// characters other than tab and line breaks (which fc's parser cannot read back) become
    /// U+FFFD; the text is cut to [`MAX_ERROR_TEXT_BYTES`].
    pub fn from_text(text: &str, now: TimePoint) -> Self {
        let mut clean = String::with_capacity(text.len().min(MAX_ERROR_TEXT_BYTES));
        for c in text.chars() {
            let c = if c.is_control() && !matches!(c, '\t' | '\n' | '\r') {
                '\u{fffd}'
            } else {
                c
            };
            if clean.len() + c.len_utf8() > MAX_ERROR_TEXT_BYTES {
                break;
            }
            clean.push(c);
        }
        let context = LogContext {
            level: LogLevel::Warn,
            file: "grapevine".into(),
            line: 0,
            method: String::new(),
            hostname: String::new(),
            thread_name: "grapevine".into(),
            task_name: None,
            timestamp: TimePoint(now.0.div_euclid(1_000_000) * 1_000_000),
            context: None,
        };
        Self {
            code: 0,
            name: PLAIN_NAME.into(),
            message: clean.clone(),
            stack: vec![LogMessage {
                context,
                format: clean,
                data: Map::new(),
            }],
        }
    }

    /// fc's from_variant: the value must be an object; each key is optional, and one that is
    /// missing keeps a default exception's value.
    pub fn from_variant(v: &Value) -> Result<Self, String> {
        let o = object(v, "an exception")?;
        let mut e = Self::default();
        if let Some(stack) = o.get("stack") {
            let entries = stack.as_array().ok_or_else(|| {
                format!(
                    "an exception's stack must be an array, found {}",
                    kind(stack)
                )
            })?;
            e.stack = entries
                .iter()
                .map(LogMessage::from_variant)
                .collect::<Result<_, _>>()?;
        }
        if let Some(code) = o.get("code") {
            e.code = as_i64(code)?;
        }
        if let Some(name) = o.get("name") {
            e.name = as_string(name)?;
        }
        if let Some(message) = o.get("message") {
            e.message = as_string(message)?;
        }
        Ok(e)
    }

    /// The variant fc writes: `code`, `name`, `message`, `stack`.
    pub fn to_variant(&self) -> Value {
        let mut o = Map::new();
        o.insert("code".into(), int_variant(self.code));
        o.insert("name".into(), self.name.clone().into());
        o.insert("message".into(), self.message.clone().into());
        o.insert(
            "stack".into(),
            Value::Array(self.stack.iter().map(LogMessage::to_variant).collect()),
        );
        Value::Object(o)
    }
}

impl fmt::Display for FcException {
    /// One line for a person: the message, then the innermost log message when it says more.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail = self.stack.first().map(|m| m.text().trim().to_string());
        let message = (!self.message.is_empty() && self.message != UNSPECIFIED)
            .then_some(self.message.as_str());
        match (message, detail) {
            (Some(m), Some(d)) if !d.is_empty() && d != m => write!(f, "{m}: {d}"),
            (Some(m), _) => f.write_str(m),
            (None, Some(d)) if !d.is_empty() => f.write_str(&d),
            (None, _) => write!(f, "{} ({})", self.name, self.code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stray_commas_are_dropped_and_only_they() {
        let cases: [(&str, Option<&str>); 7] = [
            ("[1,2]", None),
            ("[1,2,]", Some("[1,2]")),
            ("[,1,,2 , ]", Some("[1,2  ]")),
            ("{\"a\": 1,\n}", Some("{\"a\": 1\n}")),
            ("[\"a,]\", \",\"]", None),
            ("[\"\\\",]\",]", Some("[\"\\\",]\"]")),
            ("[1,]  ,", Some("[1]  ")),
        ];
        for (text, want) in cases {
            let got = drop_stray_commas(text.as_bytes()).map(|b| String::from_utf8(b).unwrap());
            assert_eq!(got.as_deref(), want, "{text}");
        }
        assert!(
            parse_lenient(b"[1 2]").is_err(),
            "a missing comma is not JSON"
        );
        assert!(parse_lenient(b"[1] // note").is_err(), "nor is a comment");
        assert_eq!(parse_lenient(b"[1,]").unwrap(), (json!([1]), true));
        assert_eq!(parse_lenient(b"[1]").unwrap(), (json!([1]), false));
    }

    #[test]
    fn scalars_convert_as_fc_converts_them() {
        assert_eq!(as_i64(&json!("-7")), Ok(-7));
        assert_eq!(as_i64(&json!(3.9)), Ok(3));
        assert_eq!(as_u64(&json!("5000000000")), Ok(5_000_000_000));
        assert_eq!(as_u32(&json!(5_000_000_000u64)), Ok(u32::MAX));
        assert!(as_u64(&json!("x")).is_err());
        assert!(as_u64(&json!([])).is_err());
        assert_eq!(as_string(&json!(12)), Ok("12".into()));
        assert!(as_string(&json!({})).is_err());
        assert_eq!(int_variant(3030001), json!(3030001));
        assert_eq!(int_variant(1 << 40), json!("1099511627776"));
        assert_eq!(uint_variant(u64::from(u32::MAX) + 1), json!("4294967296"));
    }

    #[test]
    fn times_read_in_both_iso_forms() {
        let t = TimePoint(1_700_000_000_000_000);
        assert_eq!(parse_time_sec(&json!("2023-11-14T22:13:20")), Ok(t));
        assert_eq!(parse_time_sec(&json!("2023-11-14T22:13:20.750")), Ok(t));
        assert_eq!(parse_time_sec(&json!("20231114T221320")), Ok(t));
        assert!(parse_time_sec(&json!("yesterday")).is_err());
        assert!(parse_time_sec(&json!("2023111T221320")).is_err());
        assert_eq!(
            time_sec_variant(TimePoint(1_700_000_000_999_999)),
            json!("2023-11-14T22:13:20")
        );
        assert_eq!(
            time_sec_variant(TimePoint(-5)),
            json!("1970-01-01T00:00:00")
        );
        assert_eq!(
            time_sec_variant(TimePoint(i64::MAX)),
            json!("2106-02-07T06:28:15")
        );
    }

    #[test]
    fn an_exception_round_trips_and_reads_like_fc() {
        let v = json!({
            "code": 0,
            "name": "exception",
            "message": "unspecified",
            "stack": [{
                "context": {
                    "level": "info", "file": "node.cpp", "line": 4712,
                    "method": "on_connection_closed", "hostname": "",
                    "thread_name": "p2p", "timestamp": "2024-03-01T10:00:00"
                },
                "format": "closed by ${who}", "data": {"who": "peer"}
            }]
        });
        let e = FcException::from_variant(&v).unwrap();
        assert_eq!(e.to_string(), "closed by peer");
        assert_eq!(e.to_variant(), v);
        // Missing keys keep a default exception's values; a stack entry needs its context.
        assert_eq!(
            FcException::from_variant(&json!({})),
            Ok(FcException::default())
        );
        assert!(FcException::from_variant(&json!("text")).is_err());
        let mut broken = v.clone();
        broken["stack"][0]["context"]
            .as_object_mut()
            .unwrap()
            .remove("hostname");
        assert!(FcException::from_variant(&broken).is_err());
        let mut bad_level = v.clone();
        bad_level["stack"][0]["context"]["level"] = json!("loud");
        assert!(FcException::from_variant(&bad_level).is_err());
    }

    #[test]
    fn grapevine_errors_are_bounded_and_printable() {
        let now = TimePoint(1_700_000_000_123_456);
        let e = FcException::from_text("refused\u{1}", now);
        assert_eq!(e.message, "refused\u{fffd}");
        assert_eq!(e.to_string(), "refused\u{fffd}");
        assert_eq!(
            e.stack[0].context.timestamp,
            TimePoint(1_700_000_000_000_000)
        );
        assert_eq!(FcException::from_variant(&e.to_variant()), Ok(e));
        let long = "é".repeat(MAX_ERROR_TEXT_BYTES);
        let e = FcException::from_text(&long, now);
        assert!(
            e.message.len() <= MAX_ERROR_TEXT_BYTES && e.message.len() > MAX_ERROR_TEXT_BYTES - 2
        );
    }
}
