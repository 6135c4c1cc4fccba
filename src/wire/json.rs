//! The reference's JSON form of messages, made lossless for round trips.
//!
//! fc's JSON drops information in two places: a `time_point` prints whole seconds only, and an
//! int64 inside an `fc::variant` prints like a uint64. `grapevine inspect` prints exactly the
//! reference's form under `"fields"` and, only when something was lost, the exact values under
//! `"exact"` keyed by JSON pointer into `"fields"`. [`message_from_document`] puts them back, so
//! `encode(inspect(bytes)) == bytes`. Someone editing a field by hand should drop its hint.

use std::cell::Cell;

use serde_json::{Map, Value, json};

use super::message::{Message, type_name};

thread_local! {
    static LOSSLESS: Cell<bool> = const { Cell::new(false) };
}

/// Whether human-readable serializers should print values exactly rather than as fc does.
pub fn lossless() -> bool {
    LOSSLESS.with(Cell::get)
}

/// Runs `f` with [`lossless`] on.
pub fn with_lossless<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            LOSSLESS.with(|m| m.set(self.0));
        }
    }
    let _reset = Reset(LOSSLESS.with(|m| m.replace(true)));
    f()
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Records, for every place where `exact` differs from `plain`, the pointer and exact value.
fn diff(plain: &Value, exact: &Value, path: &str, out: &mut Map<String, Value>) {
    match (plain, exact) {
        (Value::Object(a), Value::Object(b)) if a.len() == b.len() && a.keys().eq(b.keys()) => {
            for (k, va) in a {
                diff(va, &b[k], &format!("{path}/{}", escape(k)), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                diff(va, vb, &format!("{path}/{i}"), out);
            }
        }
        _ if plain != exact => {
            out.insert(path.to_string(), exact.clone());
        }
        _ => {}
    }
}

/// The JSON document `grapevine inspect` prints for a message.
pub fn message_document(message: &Message) -> Result<Value, serde_json::Error> {
    let fields = message.fields_json()?;
    let exact = with_lossless(|| message.fields_json())?;
    let mut hints = Map::new();
    diff(&fields, &exact, "", &mut hints);
    let mut doc = json!({
        "type": message.msg_type(),
        "name": type_name(message.msg_type()),
        "fields": fields,
    });
    if !hints.is_empty() {
        doc["exact"] = Value::Object(hints);
    }
    Ok(doc)
}

/// Reads a document made by [`message_document`] (or written by hand: only `type` and `fields`
/// are required) back into a message.
pub fn message_from_document(doc: &Value) -> Result<Message, String> {
    let msg_type = doc
        .get("type")
        .and_then(Value::as_u64)
        .and_then(|t| u32::try_from(t).ok())
        .ok_or("the document needs a numeric \"type\"")?;
    let mut fields = doc
        .get("fields")
        .cloned()
        .ok_or("the document needs \"fields\"")?;
    if let Some(hints) = doc.get("exact") {
        let hints = hints.as_object().ok_or("\"exact\" must be an object")?;
        for (pointer, value) in hints {
            let slot = fields
                .pointer_mut(pointer)
                .ok_or_else(|| format!("\"exact\" names {pointer:?}, which is not in fields"))?;
            *slot = value.clone();
        }
    }
    Message::from_fields_json(msg_type, fields)
}
