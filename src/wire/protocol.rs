//! The graphene protocol objects carried by trx (1000) and block (1001) messages, printed in the
//! reference's own JSON form (`fc::variant` as `fc::json::to_string` writes it) and packed back
//! byte for byte.
//!
//! # What is decoded
//!
//! A trx message is `{"trx": signed_transaction}`; a block message is
//! `{"block": signed_block, "block_id": hex}` (the signed block, then its 20-byte id). Inside
//! them every field follows graphene's `FC_REFLECT` order:
//!
//! - transaction: `ref_block_num` (u16), `ref_block_prefix` (u32), `expiration`
//!   (time_point_sec, ISO text), `operations` (`[tag, {...}]` pairs), `extensions` (a flat_set
//!   of `static_variant<void_t>`, normally `[]`), `signatures` (65-byte compact signatures as
//!   hex); a processed transaction inside a block adds `operation_results`.
//! - block: `previous`, `timestamp`, `witness` (`"1.6.N"`), `transaction_merkle_root`,
//!   `extensions`, `witness_signature`, `transactions`.
//! - operations (tag: name): 0 transfer, 1 limit_order_create, 2 limit_order_cancel,
//!   3 call_order_update, 7 account_whitelist, 8 account_upgrade, 9 account_transfer,
//!   13 asset_update_feed_producers, 14 asset_issue, 15 asset_reserve,
//!   16 asset_fund_fee_pool, 17 asset_settle, 27 withdraw_permission_claim,
//!   33 vesting_balance_withdraw, 35 custom, 37 balance_claim, 38 override_transfer,
//!   43 asset_claim_fees, 47 asset_claim_pool, 48 asset_update_issuer. These are the ones whose
//!   members are all plain values (assets, ids, keys, memos, graphene `extension<T>` objects).
//! - operation results: every alternative (0 void_result `{}`, 1 object_id_type, 2 asset,
//!   3 generic_operation_result, 4 generic_exchange_operation_result,
//!   5 extendable_operation_result).
//!
//! Values print as fc prints them: typed object ids (packed as a varint instance) and
//! `object_id_type` (packed as a u64) as `"space.type.instance"`; public keys as graphene's
//! `"BTS"` + base58(key ‖ first 4 bytes of its RIPEMD-160); `vector<char>` as hex; unset
//! optionals are left out; graphene `extension<T>` is an object of the members present. Like
//! `fc::json::to_string`'s default formatting, an int64 outside the int32 range and a uint64
//! above 0xffffffff are written as decimal strings (both forms are accepted back).
//!
//! # What falls back, and why
//!
//! The other operations (accounts, authorities, assets' options, proposals, HTLCs, blind
//! transfers, …) have nested types whose JSON form we cannot check against the reference, so
//! a message holding one is printed as `{"data": "<hex of the whole message data>"}`. The same
//! happens for anything not exactly what fc would produce: an unknown tag, a bool byte other
//! than 0/1, truncated input, trailing bytes, or a non-canonical encoding (a padded varint, an
//! out-of-order extension member). The rule is enforced, not assumed: a decode is only used
//! if packing its JSON gives back the identical bytes. `trx_from_json` / `block_from_json`
//! accept both forms, so `from_json(json(data)) == data` for every input.

use ripemd::{Digest, Ripemd160 as Ripemd};
use serde_json::{Map, Value, json};
use sha2::Sha224;

use super::raw::varint;
use super::time::{format_seconds, parse_micros};
use super::types::Ripemd160;

/// The shape of one fc::raw value, and with it its JSON form.
enum Ty {
    /// uint8_t: 1 byte.
    U8,
    /// uint16_t: 2 bytes LE.
    U16,
    /// uint32_t: 4 bytes LE.
    U32,
    /// uint64_t: 8 bytes LE; a string above 0xffffffff.
    U64,
    /// int64_t / share_type: 8 bytes LE; a string outside the int32 range.
    I64,
    /// bool: one byte, 0 or 1.
    Bool,
    /// time_point_sec: u32 LE seconds, ISO text.
    Time,
    /// `object_id<space, type>`: varint instance, `"space.type.instance"`.
    Id(u8, u8),
    /// `object_id_type`: u64 LE of space << 56 | type << 48 | instance.
    AnyId,
    /// Fixed-size raw bytes (hashes, signatures), hex.
    Fixed(usize),
    /// `vector<char>`: varint length and bytes, hex.
    Bytes,
    /// public_key_type: 33 bytes, `"BTS..."`.
    PublicKey,
    /// optional<T>: presence byte; a struct member that is unset is left out of the JSON.
    Opt(&'static Ty),
    /// vector<T> or flat_set<T>: varint count, then the elements.
    Vec(&'static Ty),
    /// A reflected struct: its members in order.
    Struct(&'static [(&'static str, Ty)]),
    /// graphene `extension<T>`; the members listed are T's optional members (inner types).
    Ext(&'static [(&'static str, Ty)]),
    /// static_variant: varint tag, then the alternative; JSON `[tag, value]`. Only the listed
    /// tags are known.
    Variant(&'static [(u64, Ty)]),
}

const ACCOUNT: Ty = Ty::Id(1, 2);
const ASSET_ID: Ty = Ty::Id(1, 3);
const ASSET: Ty = Ty::Struct(&[("amount", Ty::I64), ("asset_id", ASSET_ID)]);
const VOID: Ty = Ty::Struct(&[]);
/// `extensions_type`: flat_set of `static_variant<void_t>`.
const FUTURE_EXTENSIONS: Ty = Ty::Vec(&Ty::Variant(&[(0, VOID)]));
const SIGNATURE: Ty = Ty::Fixed(65);
const MEMO: Ty = Ty::Struct(&[
    ("from", Ty::PublicKey),
    ("to", Ty::PublicKey),
    ("nonce", Ty::U64),
    ("message", Ty::Bytes),
]);
const TAKE_PROFIT_ACTION: Ty = Ty::Struct(&[
    ("fee_asset_id", ASSET_ID),
    ("spread_percent", Ty::U16),
    ("size_percent", Ty::U16),
    ("expiration_seconds", Ty::U32),
    ("repeat", Ty::Bool),
    ("extensions", FUTURE_EXTENSIONS),
]);

/// The operations we decode, by static_variant tag.
const OPERATION: Ty = Ty::Variant(&[
    (
        0, // transfer_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("from", ACCOUNT),
            ("to", ACCOUNT),
            ("amount", ASSET),
            ("memo", Ty::Opt(&MEMO)),
            ("extensions", FUTURE_EXTENSIONS),
        ]),
    ),
    (
        1, // limit_order_create_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("seller", ACCOUNT),
            ("amount_to_sell", ASSET),
            ("min_to_receive", ASSET),
            ("expiration", Ty::Time),
            ("fill_or_kill", Ty::Bool),
            (
                "extensions",
                Ty::Ext(&[("on_fill", Ty::Vec(&Ty::Variant(&[(0, TAKE_PROFIT_ACTION)])))]),
            ),
        ]),
    ),
    (
        2, // limit_order_cancel_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("fee_paying_account", ACCOUNT),
            ("order", Ty::Id(1, 7)),
            ("extensions", FUTURE_EXTENSIONS),
        ]),
    ),
    (
        3, // call_order_update_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("funding_account", ACCOUNT),
            ("delta_collateral", ASSET),
            ("delta_debt", ASSET),
            (
                "extensions",
                Ty::Ext(&[("target_collateral_ratio", Ty::U16)]),
            ),
        ]),
    ),
    (
        7, // account_whitelist_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("authorizing_account", ACCOUNT),
            ("account_to_list", ACCOUNT),
            ("new_listing", Ty::U8),
            ("extensions", FUTURE_EXTENSIONS),
        ]),
    ),
    (
        8, // account_upgrade_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("account_to_upgrade", ACCOUNT),
            ("upgrade_to_lifetime_member", Ty::Bool),
            ("extensions", FUTURE_EXTENSIONS),
        ]),
    ),
    (
        9, // account_transfer_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("account_id", ACCOUNT),
            ("new_owner", ACCOUNT),
            ("extensions", FUTURE_EXTENSIONS),
        ]),
    ),
    (
        13, // asset_update_feed_producers_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("issuer", ACCOUNT),
            ("asset_to_update", ASSET_ID),
            ("new_feed_producers", Ty::Vec(&ACCOUNT)),
            ("extensions", FUTURE_EXTENSIONS),
        ]),
    ),
    (
        14, // asset_issue_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("issuer", ACCOUNT),
            ("asset_to_issue", ASSET),
            ("issue_to_account", ACCOUNT),
            ("memo", Ty::Opt(&MEMO)),
            ("extensions", FUTURE_EXTENSIONS),
        ]),
    ),
    (
        15, // asset_reserve_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("payer", ACCOUNT),
            ("amount_to_reserve", ASSET),
            ("extensions", FUTURE_EXTENSIONS),
        ]),
    ),
    (
        16, // asset_fund_fee_pool_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("from_account", ACCOUNT),
            ("asset_id", ASSET_ID),
            ("amount", Ty::I64),
            ("extensions", FUTURE_EXTENSIONS),
        ]),
    ),
    (
        17, // asset_settle_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("account", ACCOUNT),
            ("amount", ASSET),
            ("extensions", FUTURE_EXTENSIONS),
        ]),
    ),
    (
        27, // withdraw_permission_claim_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("withdraw_permission", Ty::Id(1, 12)),
            ("withdraw_from_account", ACCOUNT),
            ("withdraw_to_account", ACCOUNT),
            ("amount_to_withdraw", ASSET),
            ("memo", Ty::Opt(&MEMO)),
        ]),
    ),
    (
        33, // vesting_balance_withdraw_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("vesting_balance", Ty::Id(1, 13)),
            ("owner", ACCOUNT),
            ("amount", ASSET),
        ]),
    ),
    (
        35, // custom_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("payer", ACCOUNT),
            ("required_auths", Ty::Vec(&ACCOUNT)),
            ("id", Ty::U16),
            ("data", Ty::Bytes),
        ]),
    ),
    (
        37, // balance_claim_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("deposit_to_account", ACCOUNT),
            ("balance_to_claim", Ty::Id(1, 15)),
            ("balance_owner_key", Ty::PublicKey),
            ("total_claimed", ASSET),
        ]),
    ),
    (
        38, // override_transfer_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("issuer", ACCOUNT),
            ("from", ACCOUNT),
            ("to", ACCOUNT),
            ("amount", ASSET),
            ("memo", Ty::Opt(&MEMO)),
            ("extensions", FUTURE_EXTENSIONS),
        ]),
    ),
    (
        43, // asset_claim_fees_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("issuer", ACCOUNT),
            ("amount_to_claim", ASSET),
            ("extensions", Ty::Ext(&[("claim_from_asset_id", ASSET_ID)])),
        ]),
    ),
    (
        47, // asset_claim_pool_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("issuer", ACCOUNT),
            ("asset_id", ASSET_ID),
            ("amount_to_claim", ASSET),
            ("extensions", FUTURE_EXTENSIONS),
        ]),
    ),
    (
        48, // asset_update_issuer_operation
        Ty::Struct(&[
            ("fee", ASSET),
            ("issuer", ACCOUNT),
            ("asset_to_update", ASSET_ID),
            ("new_issuer", ACCOUNT),
            ("extensions", FUTURE_EXTENSIONS),
        ]),
    ),
]);

/// operation_result, all alternatives.
const OPERATION_RESULT: Ty = Ty::Variant(&[
    (0, VOID),
    (1, Ty::AnyId),
    (2, ASSET),
    (
        3, // generic_operation_result
        Ty::Struct(&[
            ("new_objects", Ty::Vec(&Ty::AnyId)),
            ("updated_objects", Ty::Vec(&Ty::AnyId)),
            ("removed_objects", Ty::Vec(&Ty::AnyId)),
        ]),
    ),
    (
        4, // generic_exchange_operation_result
        Ty::Struct(&[
            ("paid", Ty::Vec(&ASSET)),
            ("received", Ty::Vec(&ASSET)),
            ("fees", Ty::Vec(&ASSET)),
        ]),
    ),
    (
        5, // extendable_operation_result
        Ty::Ext(&[
            ("impacted_accounts", Ty::Vec(&ACCOUNT)),
            ("new_objects", Ty::Vec(&Ty::AnyId)),
            ("updated_objects", Ty::Vec(&Ty::AnyId)),
            ("removed_objects", Ty::Vec(&Ty::AnyId)),
            ("paid", Ty::Vec(&ASSET)),
            ("received", Ty::Vec(&ASSET)),
            ("fees", Ty::Vec(&ASSET)),
        ]),
    ),
]);

/// signed_transaction (= precomputable_transaction on the wire).
const SIGNED_TRANSACTION: Ty = Ty::Struct(&[
    ("ref_block_num", Ty::U16),
    ("ref_block_prefix", Ty::U32),
    ("expiration", Ty::Time),
    ("operations", Ty::Vec(&OPERATION)),
    ("extensions", FUTURE_EXTENSIONS),
    ("signatures", Ty::Vec(&SIGNATURE)),
]);

/// processed_transaction: a signed transaction and its operation results.
const PROCESSED_TRANSACTION: Ty = Ty::Struct(&[
    ("ref_block_num", Ty::U16),
    ("ref_block_prefix", Ty::U32),
    ("expiration", Ty::Time),
    ("operations", Ty::Vec(&OPERATION)),
    ("extensions", FUTURE_EXTENSIONS),
    ("signatures", Ty::Vec(&SIGNATURE)),
    ("operation_results", Ty::Vec(&OPERATION_RESULT)),
]);

/// signed_block_header: what the block id hashes.
const SIGNED_BLOCK_HEADER: Ty = Ty::Struct(&[
    ("previous", Ty::Fixed(20)),
    ("timestamp", Ty::Time),
    ("witness", Ty::Id(1, 6)),
    ("transaction_merkle_root", Ty::Fixed(20)),
    ("extensions", FUTURE_EXTENSIONS),
    ("witness_signature", SIGNATURE),
]);

const SIGNED_BLOCK: Ty = Ty::Struct(&[
    ("previous", Ty::Fixed(20)),
    ("timestamp", Ty::Time),
    ("witness", Ty::Id(1, 6)),
    ("transaction_merkle_root", Ty::Fixed(20)),
    ("extensions", FUTURE_EXTENSIONS),
    ("witness_signature", SIGNATURE),
    ("transactions", Ty::Vec(&PROCESSED_TRANSACTION)),
]);

/// trx_message.
const TRX_MESSAGE: Ty = Ty::Struct(&[("trx", SIGNED_TRANSACTION)]);

/// block_message: the signed block, then its id.
const BLOCK_MESSAGE: Ty = Ty::Struct(&[("block", SIGNED_BLOCK), ("block_id", Ty::Fixed(20))]);

/// graphene's public key prefix (GRAPHENE_ADDRESS_PREFIX).
const KEY_PREFIX: &str = "BTS";

// ---------------------------------------------------------------------------------------------
// Decoding (fc::raw → JSON). `None` means "not exactly decodable"; callers fall back to hex.

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn varint(&mut self) -> Option<u64> {
        let (value, used) = varint::read(self.buf.get(self.pos..)?).ok()?;
        self.pos = self.pos.checked_add(used)?;
        Some(value)
    }

    fn presence(&mut self) -> Option<bool> {
        match self.take(1)? {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }
}

fn u64_json(v: u64) -> Value {
    if v > 0xffff_ffff {
        Value::String(v.to_string())
    } else {
        Value::from(v)
    }
}

fn i64_json(v: i64) -> Value {
    if v > i64::from(i32::MAX) || v < i64::from(i32::MIN) {
        Value::String(v.to_string())
    } else {
        Value::from(v)
    }
}

fn any_id_text(number: u64) -> String {
    format!(
        "{}.{}.{}",
        number >> 56,
        (number >> 48) & 0xff,
        number & 0xffff_ffff_ffff
    )
}

fn decode(ty: &Ty, r: &mut Reader) -> Option<Value> {
    Some(match ty {
        Ty::U8 => Value::from(r.array::<1>()?[0]),
        Ty::U16 => Value::from(u16::from_le_bytes(r.array()?)),
        Ty::U32 => Value::from(u32::from_le_bytes(r.array()?)),
        Ty::U64 => u64_json(u64::from_le_bytes(r.array()?)),
        Ty::I64 => i64_json(i64::from_le_bytes(r.array()?)),
        Ty::Bool => Value::Bool(r.presence()?),
        Ty::Time => Value::String(format_seconds(i64::from(u32::from_le_bytes(r.array()?)))),
        Ty::Id(space, kind) => Value::String(format!("{space}.{kind}.{}", r.varint()?)),
        Ty::AnyId => Value::String(any_id_text(u64::from_le_bytes(r.array()?))),
        Ty::Fixed(n) => Value::String(hex::encode(r.take(*n)?)),
        Ty::Bytes => {
            let len = usize::try_from(r.varint()?).ok()?;
            Value::String(hex::encode(r.take(len)?))
        }
        Ty::PublicKey => Value::String(public_key_text(&r.array::<33>()?)),
        Ty::Opt(inner) => {
            if r.presence()? {
                decode(inner, r)?
            } else {
                Value::Null
            }
        }
        Ty::Vec(inner) => {
            let count = usize::try_from(r.varint()?).ok()?;
            // Every element type we know takes at least one byte.
            if count > r.remaining() {
                return None;
            }
            let mut items = Vec::with_capacity(count.min(1024));
            for _ in 0..count {
                items.push(decode(inner, r)?);
            }
            Value::Array(items)
        }
        Ty::Struct(fields) => {
            let mut obj = Map::new();
            for (name, fty) in fields.iter() {
                let v = decode(fty, r)?;
                // An unset optional member is left out, as fc's reflection does.
                if matches!(fty, Ty::Opt(_)) && v.is_null() {
                    continue;
                }
                obj.insert((*name).to_string(), v);
            }
            Value::Object(obj)
        }
        Ty::Ext(fields) => {
            let mut left = r.varint()?;
            let mut obj = Map::new();
            let mut next = if left > 0 { Some(r.varint()?) } else { None };
            for (which, (name, fty)) in fields.iter().enumerate() {
                if next == Some(which as u64) {
                    obj.insert((*name).to_string(), decode(fty, r)?);
                    left -= 1;
                    next = if left > 0 { Some(r.varint()?) } else { None };
                }
            }
            if left != 0 {
                return None;
            }
            Value::Object(obj)
        }
        Ty::Variant(alts) => {
            let tag = r.varint()?;
            let (_, alt) = alts.iter().find(|(t, _)| *t == tag)?;
            Value::Array(vec![Value::from(tag), decode(alt, r)?])
        }
    })
}

/// Decodes `data` as `ty` and keeps the result only if it is the whole input and packs back to
/// exactly the same bytes.
fn decode_exact(ty: &Ty, data: &[u8]) -> Option<Value> {
    let mut r = Reader::new(data);
    let value = decode(ty, &mut r)?;
    if r.remaining() != 0 {
        return None;
    }
    let mut again = Vec::with_capacity(data.len());
    encode(ty, &value, &mut again).ok()?;
    (again == data).then_some(value)
}

fn fallback(data: &[u8]) -> Value {
    json!({ "data": hex::encode(data) })
}

// ---------------------------------------------------------------------------------------------
// Encoding (JSON → fc::raw).

fn json_u64(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
    .ok_or_else(|| format!("expected an unsigned integer, got {v}"))
}

fn json_i64(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
                s.parse().ok()
            } else {
                None
            }
        }
        _ => None,
    }
    .ok_or_else(|| format!("expected an integer, got {v}"))
}

fn json_str(v: &Value) -> Result<&str, String> {
    v.as_str()
        .ok_or_else(|| format!("expected a string, got {v}"))
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Splits `"a.b.c"` into its three numbers.
fn parse_id(s: &str) -> Option<(u64, u64, u64)> {
    let mut parts = s.split('.');
    let a = parse_decimal(parts.next()?)?;
    let b = parse_decimal(parts.next()?)?;
    let c = parse_decimal(parts.next()?)?;
    if parts.next().is_some() {
        return None;
    }
    Some((a, b, c))
}

fn encode(ty: &Ty, v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match ty {
        Ty::U8 => {
            let n = u8::try_from(json_u64(v)?).map_err(|e| e.to_string())?;
            out.push(n);
        }
        Ty::U16 => {
            let n = u16::try_from(json_u64(v)?).map_err(|e| e.to_string())?;
            out.extend_from_slice(&n.to_le_bytes());
        }
        Ty::U32 => {
            let n = u32::try_from(json_u64(v)?).map_err(|e| e.to_string())?;
            out.extend_from_slice(&n.to_le_bytes());
        }
        Ty::U64 => out.extend_from_slice(&json_u64(v)?.to_le_bytes()),
        Ty::I64 => out.extend_from_slice(&json_i64(v)?.to_le_bytes()),
        Ty::Bool => match v {
            Value::Bool(b) => out.push(u8::from(*b)),
            _ => return Err(format!("expected a bool, got {v}")),
        },
        Ty::Time => {
            let text = json_str(v)?;
            let micros = parse_micros(text).ok_or_else(|| format!("bad time {text:?}"))?;
            if micros % 1_000_000 != 0 {
                return Err(format!("time_point_sec has no fraction: {text:?}"));
            }
            let secs = u32::try_from(micros / 1_000_000)
                .map_err(|_| format!("time out of range: {text:?}"))?;
            out.extend_from_slice(&secs.to_le_bytes());
        }
        Ty::Id(space, kind) => {
            let text = json_str(v)?;
            match parse_id(text) {
                Some((s, t, i)) if s == u64::from(*space) && t == u64::from(*kind) => {
                    varint::write(out, i);
                }
                _ => return Err(format!("expected a {space}.{kind}.N id, got {text:?}")),
            }
        }
        Ty::AnyId => {
            let text = json_str(v)?;
            match parse_id(text) {
                Some((s, t, i)) if s <= 0xff && t <= 0xff && i <= 0xffff_ffff_ffff => {
                    out.extend_from_slice(&(s << 56 | t << 48 | i).to_le_bytes());
                }
                _ => return Err(format!("expected an object id, got {text:?}")),
            }
        }
        Ty::Fixed(n) => {
            let bytes = hex::decode(json_str(v)?).map_err(|e| e.to_string())?;
            if bytes.len() != *n {
                return Err(format!("expected {n} bytes of hex, got {}", bytes.len()));
            }
            out.extend_from_slice(&bytes);
        }
        Ty::Bytes => {
            let bytes = hex::decode(json_str(v)?).map_err(|e| e.to_string())?;
            varint::write(out, bytes.len() as u64);
            out.extend_from_slice(&bytes);
        }
        Ty::PublicKey => {
            let text = json_str(v)?;
            let key = parse_public_key(text).ok_or_else(|| format!("bad public key {text:?}"))?;
            out.extend_from_slice(&key);
        }
        Ty::Opt(inner) => {
            if v.is_null() {
                out.push(0);
            } else {
                out.push(1);
                encode(inner, v, out)?;
            }
        }
        Ty::Vec(inner) => {
            let items = v
                .as_array()
                .ok_or_else(|| format!("expected an array, got {v}"))?;
            varint::write(out, items.len() as u64);
            for item in items {
                encode(inner, item, out)?;
            }
        }
        Ty::Struct(fields) => {
            let obj = v
                .as_object()
                .ok_or_else(|| format!("expected an object, got {v}"))?;
            if let Some(key) = obj.keys().find(|k| !fields.iter().any(|(n, _)| n == k)) {
                return Err(format!("unknown field {key:?}"));
            }
            for (name, fty) in fields.iter() {
                match (obj.get(*name), fty) {
                    (None, Ty::Opt(_)) => out.push(0),
                    (None, _) => return Err(format!("missing field {name:?}")),
                    (Some(fv), _) => encode(fty, fv, out).map_err(|e| format!("{name}: {e}"))?,
                }
            }
        }
        Ty::Ext(fields) => {
            let empty = Map::new();
            let obj = match v {
                Value::Object(o) => o,
                Value::Array(a) if a.is_empty() => &empty,
                Value::Null => &empty,
                _ => return Err(format!("expected an extension object, got {v}")),
            };
            if let Some(key) = obj.keys().find(|k| !fields.iter().any(|(n, _)| n == k)) {
                return Err(format!("unknown extension {key:?}"));
            }
            let present: Vec<(usize, &Ty, &Value)> = fields
                .iter()
                .enumerate()
                .filter_map(|(i, (name, fty))| {
                    obj.get(*name)
                        .filter(|fv| !fv.is_null())
                        .map(|fv| (i, fty, fv))
                })
                .collect();
            varint::write(out, present.len() as u64);
            for (which, fty, fv) in present {
                varint::write(out, which as u64);
                encode(fty, fv, out)?;
            }
        }
        Ty::Variant(alts) => {
            let pair = v
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or_else(|| format!("expected [tag, value], got {v}"))?;
            let tag = json_u64(&pair[0])?;
            let (_, alt) = alts
                .iter()
                .find(|(t, _)| *t == tag)
                .ok_or_else(|| format!("unsupported tag {tag}"))?;
            varint::write(out, tag);
            encode(alt, &pair[1], out)?;
        }
    }
    Ok(())
}

fn data_of(fields: &Value) -> Result<Vec<u8>, String> {
    let d = fields
        .get("data")
        .and_then(|d| d.as_str())
        .ok_or("expected {\"data\": \"hex\"}")?;
    hex::decode(d).map_err(|e| e.to_string())
}

fn from_json(ty: &Ty, fields: &Value) -> Result<Vec<u8>, String> {
    if fields.get("data").is_some() {
        return data_of(fields);
    }
    let mut out = Vec::new();
    encode(ty, fields, &mut out)?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// graphene public keys: "BTS" + base58(33-byte key ‖ first 4 bytes of RIPEMD-160(key)).

const BASE58_ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

fn base58_encode(bytes: &[u8]) -> String {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    // Little-endian base-58 digits.
    let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() * 138 / 100 + 1);
    for &b in &bytes[zeros..] {
        let mut carry = u32::from(b);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut text = String::with_capacity(zeros + digits.len());
    text.extend(std::iter::repeat_n('1', zeros));
    text.extend(
        digits
            .iter()
            .rev()
            .map(|&d| char::from(BASE58_ALPHABET[usize::from(d)])),
    );
    text
}

fn base58_decode(text: &str) -> Option<Vec<u8>> {
    let zeros = text.bytes().take_while(|&c| c == b'1').count();
    // Little-endian base-256 bytes.
    let mut bytes: Vec<u8> = Vec::with_capacity(text.len());
    for c in text.bytes().skip(zeros) {
        let mut carry = BASE58_ALPHABET.iter().position(|&a| a == c)? as u32;
        for b in bytes.iter_mut() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let mut out = vec![0u8; zeros];
    out.extend(bytes.iter().rev());
    Some(out)
}

fn key_checksum(key: &[u8; 33]) -> [u8; 4] {
    let digest = Ripemd::digest(key);
    [digest[0], digest[1], digest[2], digest[3]]
}

fn public_key_text(key: &[u8; 33]) -> String {
    let mut bin = key.to_vec();
    bin.extend_from_slice(&key_checksum(key));
    format!("{KEY_PREFIX}{}", base58_encode(&bin))
}

fn parse_public_key(text: &str) -> Option<[u8; 33]> {
    let bin = base58_decode(text.strip_prefix(KEY_PREFIX)?)?;
    if bin.len() != 37 {
        return None;
    }
    let key: [u8; 33] = bin.get(..33)?.try_into().ok()?;
    if bin.get(33..)? != key_checksum(&key) {
        return None;
    }
    Some(key)
}

// ---------------------------------------------------------------------------------------------
// Public API.

/// JSON of a trx message's data (a signed transaction): `{"trx": {...}}`, or `{"data": hex}`
/// when it cannot be decoded exactly.
pub fn trx_json(data: &[u8]) -> Value {
    decode_exact(&TRX_MESSAGE, data).unwrap_or_else(|| fallback(data))
}

/// JSON of a block message's data (signed block then block id):
/// `{"block": {...}, "block_id": hex}`, or `{"data": hex}` when it cannot be decoded exactly.
pub fn block_json(data: &[u8]) -> Value {
    decode_exact(&BLOCK_MESSAGE, data).unwrap_or_else(|| fallback(data))
}

/// Inverse of [`trx_json`]: accepts the decoded form and `{"data": hex}`.
pub fn trx_from_json(fields: &Value) -> Result<Vec<u8>, String> {
    from_json(&TRX_MESSAGE, fields)
}

/// Inverse of [`block_json`]: accepts the decoded form and `{"data": hex}`.
pub fn block_from_json(fields: &Value) -> Result<Vec<u8>, String> {
    from_json(&BLOCK_MESSAGE, fields)
}

/// graphene block id from the block message data: first 20 bytes of SHA-224 of the packed
/// signed_block_header (previous, timestamp, witness, transaction_merkle_root, extensions,
/// witness_signature), with the first 4 bytes replaced by the big-endian block number =
/// previous id's number + 1. None if the header cannot be parsed.
pub fn compute_block_id(block_message_data: &[u8]) -> Option<Ripemd160> {
    let header = block_message_data.get(..signed_block_header_len(block_message_data)?)?;
    let previous: [u8; 4] = header.get(..4)?.try_into().ok()?;
    let number = u32::from_be_bytes(previous).wrapping_add(1);
    let digest = Sha224::digest(header);
    let mut id = [0u8; 20];
    id.copy_from_slice(digest.get(..20)?);
    id[..4].copy_from_slice(&number.to_be_bytes());
    Some(Ripemd160(id))
}

/// The length of the signed block header that starts block message data. A header without
/// extensions (every block so far) is measured field by field; one with extensions goes
/// through the generic decoder, which checks them. Same answer as decoding
/// [`SIGNED_BLOCK_HEADER`], without building its JSON form (this runs for every block
/// received).
fn signed_block_header_len(block_message_data: &[u8]) -> Option<usize> {
    let mut r = Reader::new(block_message_data);
    r.take(20)?; // previous
    r.take(4)?; // timestamp
    r.varint()?; // witness
    r.take(20)?; // transaction_merkle_root
    if r.varint()? != 0 {
        let mut r = Reader::new(block_message_data);
        decode(&SIGNED_BLOCK_HEADER, &mut r)?;
        return Some(r.pos);
    }
    r.take(65)?; // witness_signature
    Some(r.pos)
}

/// The expiration (time_point_sec seconds) from a transaction's header (ref_block_num u16,
/// ref_block_prefix u32, expiration u32). None if too short.
pub fn transaction_expiration(trx_data: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(trx_data.get(6..10)?.try_into().ok()?))
}

/// The block timestamp (seconds) from block message data (after the 20-byte previous id).
pub fn block_timestamp(block_message_data: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(
        block_message_data.get(20..24)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_length_is_the_generic_decoders() {
        let generic = |data: &[u8]| {
            let mut r = Reader::new(data);
            decode(&SIGNED_BLOCK_HEADER, &mut r).map(|_| r.pos)
        };
        let mut blocks = crate::app::relay_store::make_test_chain(Default::default(), 3, 7);
        let (_, live) = vector(1001);
        blocks.push(live);
        // A witness id of two varint bytes, and one with an extension (void variant 0).
        let mut wide = blocks[0].clone();
        wide[24] = 0x85;
        wide.insert(25, 0x01);
        blocks.push(wide);
        let mut ext = blocks[0].clone();
        ext[45] = 1;
        ext.insert(46, 0);
        blocks.push(ext);
        for b in &blocks {
            assert!(generic(b).is_some());
            assert_eq!(signed_block_header_len(b), generic(b));
            for cut in 0..b.len().min(140) {
                assert_eq!(
                    signed_block_header_len(&b[..cut]),
                    generic(&b[..cut]),
                    "{cut}"
                );
            }
        }
    }

    const MESSAGES: &str = include_str!("../../tests/vectors/messages.json");
    const LIVE: &str = include_str!("../../tests/vectors/live_sessions.json");

    fn vector(type_id: u64) -> (Value, Vec<u8>) {
        let all: Value = serde_json::from_str(MESSAGES).unwrap();
        let m = all["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["type_id"] == type_id)
            .unwrap();
        (
            m["fields"].clone(),
            hex::decode(m["data_hex"].as_str().unwrap()).unwrap(),
        )
    }

    /// Bodies of the session-0 frames of one message type.
    fn live_bodies(type_id: u64) -> Vec<Vec<u8>> {
        let all: Value = serde_json::from_str(LIVE).unwrap();
        all["sessions"][0]["frames"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["type"] == type_id)
            .map(|f| hex::decode(f["body_hex"].as_str().unwrap()).unwrap())
            .collect()
    }

    fn is_fallback(v: &Value) -> bool {
        v.get("data").is_some()
    }

    #[test]
    fn trx_vector_decodes_and_round_trips() {
        let (fields, data) = vector(1000);
        assert_eq!(trx_json(&data), fields);
        assert_eq!(trx_from_json(&fields).unwrap(), data);
        assert_eq!(transaction_expiration(&data), Some(1_700_000_030));
    }

    #[test]
    fn block_vector_decodes_and_round_trips() {
        let (fields, data) = vector(1001);
        assert_eq!(block_json(&data), fields);
        assert_eq!(block_from_json(&fields).unwrap(), data);
        let id = compute_block_id(&data).unwrap();
        assert_eq!(id.to_string(), "0000002a706ed410f1541fde5e7f372f400a8e91");
        assert_eq!(id.block_number(), 42);
        assert_eq!(&id.0[..], &data[data.len() - 20..]);
        assert_eq!(
            format_seconds(i64::from(block_timestamp(&data).unwrap())),
            "2023-11-14T22:13:24"
        );
    }

    #[test]
    fn live_blocks_decode_and_ids_match() {
        let all: Value = serde_json::from_str(LIVE).unwrap();
        let expected: Vec<&str> = all["sessions"][0]["results"]["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["recomputed_id"].as_str().unwrap())
            .collect();
        let bodies = live_bodies(1001);
        assert_eq!(bodies.len(), expected.len());
        for (body, want) in bodies.iter().zip(expected) {
            let v = block_json(body);
            assert!(!is_fallback(&v), "{v}");
            assert_eq!(v["block_id"], want);
            assert_eq!(block_from_json(&v).unwrap(), *body);
            assert_eq!(compute_block_id(body).unwrap().to_string(), want);
            let ts = block_timestamp(body).unwrap();
            assert_eq!(v["block"]["timestamp"], format_seconds(i64::from(ts)));
        }
    }

    #[test]
    fn live_trx_decodes_and_round_trips() {
        let bodies = live_bodies(1000);
        assert!(!bodies.is_empty());
        for body in bodies {
            let v = trx_json(&body);
            assert!(!is_fallback(&v), "{v}");
            assert_eq!(trx_from_json(&v).unwrap(), body);
            let exp = transaction_expiration(&body).unwrap();
            assert_eq!(v["trx"]["expiration"], format_seconds(i64::from(exp)));
        }
    }

    #[test]
    fn graphene_public_key_text() {
        // The well-known graphene development key pair (bitshares-core docker config).
        let wif = base58_decode("5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3").unwrap();
        assert_eq!(wif.len(), 37);
        assert_eq!(wif[0], 0x80);
        let secret: [u8; 32] = wif[1..33].try_into().unwrap();
        let key = crate::crypto::NodeKey::from_bytes(&secret).unwrap();
        let text = "BTS6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5GDW5CV";
        assert_eq!(public_key_text(key.public_key()), text);
        assert_eq!(parse_public_key(text), Some(*key.public_key()));
        // A wrong checksum or prefix is refused.
        assert_eq!(
            parse_public_key("BTS6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5GDW5CW"),
            None
        );
        assert_eq!(
            parse_public_key("GPH6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5GDW5CV"),
            None
        );
        assert_eq!(base58_encode(&[0, 0, 1]), "112");
        assert_eq!(base58_decode("112").unwrap(), vec![0, 0, 1]);
        assert_eq!(base58_decode("10"), None);
    }

    /// The trx vector with its transfer given a memo (and a large amount and nonce).
    fn trx_with_memo() -> Vec<u8> {
        let (_, data) = vector(1000);
        // Header (10) + op count (1) + tag (1) + fee (9) + from (1) + to (1) = 23; amount is 9.
        let mut out = data[..23].to_vec();
        out.extend_from_slice(&10_000_000_000i64.to_le_bytes());
        out.push(0);
        out.push(1); // memo present
        out.push(0x02);
        out.extend_from_slice(&[0x11; 32]);
        out.push(0x03);
        out.extend_from_slice(&[0x22; 32]);
        out.extend_from_slice(&0x1234_5678_9abc_def0u64.to_le_bytes());
        out.push(3);
        out.extend_from_slice(b"abc");
        out.extend_from_slice(&data[32 + 1..]); // skip old amount and memo-absent byte
        out
    }

    #[test]
    fn memo_transfer_decodes() {
        let data = trx_with_memo();
        let v = trx_json(&data);
        assert!(!is_fallback(&v), "{v}");
        let op = &v["trx"]["operations"][0][1];
        assert_eq!(op["amount"]["amount"], "10000000000");
        assert_eq!(op["memo"]["nonce"], "1311768467463790320");
        assert_eq!(op["memo"]["message"], "616263");
        let from = op["memo"]["from"].as_str().unwrap();
        assert!(from.starts_with("BTS"));
        assert_eq!(trx_from_json(&v).unwrap(), data);
        // Plain numbers are accepted too.
        let mut v2 = v.clone();
        v2["trx"]["operations"][0][1]["amount"]["amount"] = json!(10_000_000_000i64);
        assert_eq!(trx_from_json(&v2).unwrap(), data);
    }

    #[test]
    fn operation_results_decode() {
        let (_, block) = vector(1001);
        // Replace the empty operation_results (the byte before the 20-byte id) by results
        // using every alternative.
        let mut results = vec![6u8];
        results.push(0); // void_result
        results.push(1);
        results.extend_from_slice(&(1u64 << 56 | 7 << 48 | 99).to_le_bytes());
        results.extend_from_slice(&[2, 5, 0, 0, 0, 0, 0, 0, 0, 3]); // asset
        results.extend_from_slice(&[3, 1]);
        results.extend_from_slice(&(2u64 << 56 | 5 << 48 | 1).to_le_bytes());
        results.extend_from_slice(&[0, 0]);
        results.extend_from_slice(&[4, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        results.extend_from_slice(&[5, 2, 0, 1, 17, 4, 0]);
        let cut = block.len() - 21;
        assert_eq!(block[cut], 0);
        let mut data = block[..cut].to_vec();
        data.extend_from_slice(&results);
        data.extend_from_slice(&block[cut + 1..]);
        let v = block_json(&data);
        assert!(!is_fallback(&v), "{v}");
        assert_eq!(
            v["block"]["transactions"][0]["operation_results"],
            json!([
                [0, {}],
                [1, "1.7.99"],
                [2, {"amount": 5, "asset_id": "1.3.3"}],
                [3, {"new_objects": ["2.5.1"], "updated_objects": [], "removed_objects": []}],
                [4, {"paid": [], "received": [{"amount": 1, "asset_id": "1.3.0"}], "fees": []}],
                [5, {"impacted_accounts": ["1.2.17"], "paid": []}],
            ])
        );
        assert_eq!(block_from_json(&v).unwrap(), data);
    }

    #[test]
    fn undecodable_input_falls_back() {
        let (_, data) = vector(1000);
        // Unknown operation tag.
        let mut unknown = data.clone();
        unknown[11] = 5; // account_create
        // Trailing byte.
        let mut trailing = data.clone();
        trailing.push(0);
        // Padded varint for the "from" account (0x91 0x00 is 17 too): not canonical.
        let mut padded = data[..21].to_vec();
        padded.extend_from_slice(&[0x91, 0x00]);
        padded.extend_from_slice(&data[22..]);
        // Bool/presence byte other than 0/1 (the memo flag).
        let mut bad_flag = data.clone();
        bad_flag[32] = 2;
        for bad in [unknown, trailing, padded, bad_flag] {
            let v = trx_json(&bad);
            assert_eq!(v, json!({ "data": hex::encode(&bad) }));
            assert_eq!(trx_from_json(&v).unwrap(), bad);
        }
        assert_eq!(compute_block_id(&[0; 30]), None);
        assert_eq!(block_timestamp(&[0; 23]), None);
        assert_eq!(transaction_expiration(&[0; 9]), None);
    }

    #[test]
    fn bad_json_is_an_error() {
        let (fields, _) = vector(1000);
        let mut extra = fields.clone();
        extra["trx"]["bogus"] = json!(1);
        assert!(trx_from_json(&extra).is_err());
        let mut wrong_id = fields.clone();
        wrong_id["trx"]["operations"][0][1]["from"] = json!("1.3.17");
        assert!(trx_from_json(&wrong_id).is_err());
        let mut wrong_tag = fields.clone();
        wrong_tag["trx"]["operations"][0][0] = json!(5);
        assert!(trx_from_json(&wrong_tag).is_err());
        let mut big = fields.clone();
        big["trx"]["ref_block_num"] = json!(70_000);
        assert!(trx_from_json(&big).is_err());
        assert!(trx_from_json(&json!({"data": "zz"})).is_err());
        assert!(block_from_json(&json!([])).is_err());
    }

    /// Deterministic xorshift, so the test needs no extra crates.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn check_round_trip(data: &[u8]) {
        let t = trx_json(data);
        assert_eq!(trx_from_json(&t).unwrap(), data, "{t}");
        let b = block_json(data);
        assert_eq!(block_from_json(&b).unwrap(), data, "{b}");
        let _ = compute_block_id(data);
        let _ = block_timestamp(data);
        let _ = transaction_expiration(data);
    }

    #[test]
    fn prefixes_and_mutations_never_panic_and_round_trip() {
        let mut inputs = vec![vector(1000).1, vector(1001).1, trx_with_memo()];
        inputs.extend(live_bodies(1001));
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for base in &inputs {
            for len in 0..=base.len() {
                check_round_trip(&base[..len]);
            }
            for _ in 0..300 {
                let mut m = base.clone();
                for _ in 0..(1 + rng.next() % 4) {
                    let i = (rng.next() % m.len() as u64) as usize;
                    m[i] = rng.next() as u8;
                }
                check_round_trip(&m);
            }
        }
        for _ in 0..300 {
            let len = (rng.next() % 300) as usize;
            let random: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            check_round_trip(&random);
        }
    }
}
