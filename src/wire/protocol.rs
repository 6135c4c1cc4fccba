//! graphene protocol objects inside trx and block messages (placeholder: hex only).

use serde_json::{Value, json};

/// JSON of a trx message's data.
pub fn trx_json(data: &[u8]) -> Value {
    json!({ "data": hex::encode(data) })
}

/// JSON of a block message's data.
pub fn block_json(data: &[u8]) -> Value {
    json!({ "data": hex::encode(data) })
}

fn data_of(fields: &Value) -> Result<Vec<u8>, String> {
    let d = fields
        .get("data")
        .and_then(|d| d.as_str())
        .ok_or("expected {\"data\": \"hex\"}")?;
    hex::decode(d).map_err(|e| e.to_string())
}

/// Inverse of [`trx_json`].
pub fn trx_from_json(fields: &Value) -> Result<Vec<u8>, String> {
    data_of(fields)
}

/// Inverse of [`block_json`].
pub fn block_from_json(fields: &Value) -> Result<Vec<u8>, String> {
    data_of(fields)
}
