//! `grapevine inspect` and `grapevine encode`: a pasted capture in, the reference's JSON out,
//! and back.

use std::io::Read;

use bytes::BytesMut;
use serde_json::Value;

use crate::wire::Message;
use crate::wire::frame::{FrameDecoder, HEADER_SIZE, encode_message, parse_header};
use crate::wire::json::{message_document, message_from_document};

/// A command-line failure: printed as one line, exit status 2.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}

/// The argument, or all of standard input when it is absent or "-".
pub fn arg_or_stdin(arg: Option<String>) -> Result<String, CliError> {
    match arg {
        Some(a) if a != "-" => Ok(a),
        _ => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            Ok(text)
        }
    }
}

/// Hex with white space, an optional 0x prefix and either case.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, CliError> {
    let clean: String = text.split_whitespace().collect();
    let clean = clean
        .strip_prefix("0x")
        .or_else(|| clean.strip_prefix("0X"))
        .unwrap_or(&clean);
    hex::decode(clean).map_err(|e| CliError(format!("input is not hex: {e}")))
}

/// Decodes framed bytes (one or more frames) or, with `msg_type`, one message's raw data, and
/// returns the JSON documents to print.
pub fn inspect(bytes: &[u8], msg_type: Option<u32>) -> Result<Value, CliError> {
    if let Some(t) = msg_type {
        let message = Message::decode(t, bytes)?;
        let used = message.to_data().len();
        if used < bytes.len() && !matches!(message, Message::Trx(_) | Message::Block(_)) {
            eprintln!(
                "note: {} bytes after the last field were ignored, as fc ignores them",
                bytes.len() - used
            );
        }
        let mut doc = message_document(&message)?;
        doc["framed"] = Value::Bool(false);
        return Ok(doc);
    }
    let mut buf = BytesMut::from(bytes);
    let mut decoder = FrameDecoder::new();
    let mut docs = Vec::new();
    while !buf.is_empty() {
        let Some(frame) = decoder.decode_frame(&mut buf)? else {
            let need = match parse_header(&buf)? {
                Some((size, _)) => crate::wire::frame::padded_frame_len(size),
                None => HEADER_SIZE,
            };
            return Err(CliError(format!(
                "incomplete frame: {} bytes present, {need} needed (use --type N for raw message data)",
                buf.len()
            )));
        };
        docs.push(message_document(&frame.message()?)?);
    }
    match docs.len() {
        0 => Err(CliError("no input".into())),
        1 => Ok(docs.remove(0)),
        _ => Ok(Value::Array(docs)),
    }
}

/// Encodes one document or an array of documents. Framed output unless the document says
/// `"framed": false` or `data_only` is set.
pub fn encode(doc: &Value, data_only: bool) -> Result<Vec<u8>, CliError> {
    let docs: Vec<&Value> = match doc {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    let mut out = BytesMut::new();
    for d in docs {
        let message = message_from_document(d).map_err(CliError)?;
        let framed = d.get("framed").and_then(Value::as_bool).unwrap_or(true);
        if data_only || !framed {
            out.extend_from_slice(&message.to_data());
        } else {
            encode_message(&message, &mut out)?;
        }
    }
    Ok(out.to_vec())
}
