//! Every message of graphene's core_messages.hpp, with the field order of the reference, and the
//! [`Message`] enum that names any frame.
//!
//! Transactions (1000) and blocks (1001) travel as opaque bytes: the node only needs their ids,
//! which come from the bytes themselves (see [`Message::item_hash`] and [`block_id_of`]).

use ripemd::{Digest, Ripemd160 as Ripemd};
use serde::{Deserialize, Serialize};

use super::raw::{self, RawError};
use super::types::{
    BlockId, CompactSignatureBytes, Direction, Endpoint, FirewallCheckResult, FirewalledState,
    IpAddress, ItemHash, Microseconds, NodeId, RejectionReason, Ripemd160, Sha256, TimePoint,
    TimePointSec,
};
use super::variant::{Variant, VariantObject};

/// The protocol version this node speaks (GRAPHENE_NET_PROTOCOL_VERSION).
pub const CORE_PROTOCOL_VERSION: u32 = 106;

/// Message type numbers.
pub mod msg_type {
    pub const TRX: u32 = 1000;
    pub const BLOCK: u32 = 1001;
    pub const CORE_FIRST: u32 = 5000;
    pub const ITEM_IDS_INVENTORY: u32 = 5001;
    pub const BLOCKCHAIN_ITEM_IDS_INVENTORY: u32 = 5002;
    pub const FETCH_BLOCKCHAIN_ITEM_IDS: u32 = 5003;
    pub const FETCH_ITEMS: u32 = 5004;
    pub const ITEM_NOT_AVAILABLE: u32 = 5005;
    pub const HELLO: u32 = 5006;
    pub const CONNECTION_ACCEPTED: u32 = 5007;
    pub const CONNECTION_REJECTED: u32 = 5008;
    pub const ADDRESS_REQUEST: u32 = 5009;
    pub const ADDRESS: u32 = 5010;
    pub const CLOSING_CONNECTION: u32 = 5011;
    pub const CURRENT_TIME_REQUEST: u32 = 5012;
    pub const CURRENT_TIME_REPLY: u32 = 5013;
    pub const CHECK_FIREWALL: u32 = 5014;
    pub const CHECK_FIREWALL_REPLY: u32 = 5015;
    pub const GET_CURRENT_CONNECTIONS_REQUEST: u32 = 5016;
    pub const GET_CURRENT_CONNECTIONS_REPLY: u32 = 5017;
    pub const CORE_LAST: u32 = 5099;
}

/// `item_id`: an item's type and hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ItemId {
    pub item_type: u32,
    pub item_hash: ItemHash,
}

/// 5001: "I have these items".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemIdsInventoryMessage {
    pub item_type: u32,
    pub item_hashes_available: Vec<ItemHash>,
}

/// 5002: the answer to a sync request: block ids after the last common block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockchainItemIdsInventoryMessage {
    pub total_remaining_item_count: u32,
    pub item_type: u32,
    pub item_hashes_available: Vec<ItemHash>,
}

/// 5003: a sync request carrying our blockchain synopsis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchBlockchainItemIdsMessage {
    pub item_type: u32,
    pub blockchain_synopsis: Vec<ItemHash>,
}

/// 5004: "send me these items".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchItemsMessage {
    pub item_type: u32,
    pub items_to_fetch: Vec<ItemHash>,
}

/// 5005: "I do not have that item".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemNotAvailableMessage {
    pub requested_item: ItemId,
}

/// 5006: the first message each side sends after the key exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloMessage {
    pub user_agent: String,
    pub core_protocol_version: u32,
    pub inbound_address: IpAddress,
    pub inbound_port: u16,
    pub outbound_port: u16,
    pub node_public_key: NodeId,
    pub signed_shared_secret: CompactSignatureBytes,
    pub chain_id: Sha256,
    pub user_data: VariantObject,
}

/// 5007: the hello was accepted.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConnectionAcceptedMessage {}

/// 5008: the hello was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRejectedMessage {
    pub user_agent: String,
    pub core_protocol_version: u32,
    pub remote_endpoint: Endpoint,
    pub reason_code: RejectionReason,
    pub reason_string: String,
}

/// 5009: "tell me about peers you know".
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AddressRequestMessage {}

/// One peer in an address message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressInfo {
    pub remote_endpoint: Endpoint,
    pub last_seen_time: TimePointSec,
    pub latency: Microseconds,
    pub node_id: NodeId,
    pub direction: Direction,
    pub firewalled: FirewalledState,
}

/// 5010: peers we know.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AddressMessage {
    pub addresses: Vec<AddressInfo>,
}

/// One entry of an fc exception's log: fc packs each `log_message` as a variant.
pub type LogMessage = Variant;

/// fc::exception as fc::raw packs it: code, name, what, then the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FcException {
    pub code: i64,
    pub name: String,
    /// `what()`; fc's JSON calls it "message".
    #[serde(rename = "message")]
    pub what: String,
    pub stack: Vec<LogMessage>,
}

/// 5011: the sender is closing the connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosingConnectionMessage {
    pub reason_for_closing: String,
    pub closing_due_to_error: bool,
    /// fc's JSON leaves this out when empty (see [`Message::fields_json`]); fc::raw always
    /// writes its presence byte.
    #[serde(default)]
    pub error: Option<FcException>,
}

/// 5012: clock probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentTimeRequestMessage {
    pub request_sent_time: TimePoint,
}

/// 5013: clock probe answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentTimeReplyMessage {
    pub request_sent_time: TimePoint,
    pub request_received_time: TimePoint,
    pub reply_transmitted_time: TimePoint,
}

/// 5014: "can you reach this endpoint?".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckFirewallMessage {
    pub node_id: NodeId,
    pub endpoint_to_check: Endpoint,
}

/// 5015: the answer to a firewall check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckFirewallReplyMessage {
    pub node_id: NodeId,
    pub endpoint_checked: Endpoint,
    pub result: FirewallCheckResult,
}

/// 5016: "who are you connected to?".
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetCurrentConnectionsRequestMessage {}

/// One connection in a 5017 reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentConnectionData {
    pub connection_duration: u32,
    pub remote_endpoint: Endpoint,
    pub node_id: NodeId,
    pub clock_offset: Microseconds,
    pub round_trip_delay: Microseconds,
    pub connection_direction: Direction,
    pub firewalled: FirewalledState,
    pub user_data: VariantObject,
}

/// 5017: bandwidth figures and current connections.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetCurrentConnectionsReplyMessage {
    pub upload_rate_one_minute: u32,
    pub download_rate_one_minute: u32,
    pub upload_rate_fifteen_minutes: u32,
    pub download_rate_fifteen_minutes: u32,
    pub upload_rate_one_hour: u32,
    pub download_rate_one_hour: u32,
    pub current_connections: Vec<CurrentConnectionData>,
}

/// Why message data could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The data of a known message type is not a valid encoding of it.
    #[error("malformed {name} ({msg_type}): {source}")]
    Malformed {
        msg_type: u32,
        name: &'static str,
        source: RawError,
    },
    /// A block message shorter than its trailing block id.
    #[error("block message of {0} bytes is too short to carry a block id")]
    BlockTooShort(usize),
}

/// Any message, decoded from a frame's type and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// 1000: a transaction, kept as the bytes it came in.
    Trx(Vec<u8>),
    /// 1001: a signed block followed by its 20-byte id, kept as bytes.
    Block(Vec<u8>),
    ItemIdsInventory(ItemIdsInventoryMessage),
    BlockchainItemIdsInventory(BlockchainItemIdsInventoryMessage),
    FetchBlockchainItemIds(FetchBlockchainItemIdsMessage),
    FetchItems(FetchItemsMessage),
    ItemNotAvailable(ItemNotAvailableMessage),
    Hello(HelloMessage),
    ConnectionAccepted(ConnectionAcceptedMessage),
    ConnectionRejected(ConnectionRejectedMessage),
    AddressRequest(AddressRequestMessage),
    Address(AddressMessage),
    ClosingConnection(ClosingConnectionMessage),
    CurrentTimeRequest(CurrentTimeRequestMessage),
    CurrentTimeReply(CurrentTimeReplyMessage),
    CheckFirewall(CheckFirewallMessage),
    CheckFirewallReply(CheckFirewallReplyMessage),
    GetCurrentConnectionsRequest(GetCurrentConnectionsRequestMessage),
    GetCurrentConnectionsReply(GetCurrentConnectionsReplyMessage),
    /// Any other type: kept whole so it can be logged, ignored or relayed.
    Unknown {
        msg_type: u32,
        data: Vec<u8>,
    },
}

/// Size of the block id that ends a block message.
pub const BLOCK_ID_SIZE: usize = 20;

/// ripemd160 of message data: the id of a message, and the inventory hash of trx and blocks.
pub fn message_hash(data: &[u8]) -> Ripemd160 {
    Ripemd160(Ripemd::digest(data).into())
}

/// The block id a block message carries in its last 20 bytes.
pub fn block_id_of(block_message_data: &[u8]) -> Result<BlockId, DecodeError> {
    let len = block_message_data.len();
    let start = len
        .checked_sub(BLOCK_ID_SIZE)
        .ok_or(DecodeError::BlockTooShort(len))?;
    let mut id = [0u8; BLOCK_ID_SIZE];
    id.copy_from_slice(&block_message_data[start..]);
    Ok(Ripemd160(id))
}

/// The previous block id: the first 20 bytes of a signed block.
pub fn block_previous_of(block_message_data: &[u8]) -> Result<BlockId, DecodeError> {
    let head = block_message_data
        .get(..BLOCK_ID_SIZE)
        .ok_or(DecodeError::BlockTooShort(block_message_data.len()))?;
    let mut id = [0u8; BLOCK_ID_SIZE];
    id.copy_from_slice(head);
    Ok(Ripemd160(id))
}

macro_rules! message_table {
    ($( $variant:ident($ty:ty) = $code:path, $name:expr; )+) => {
        impl Message {
            /// The message type number.
            pub fn msg_type(&self) -> u32 {
                match self {
                    Message::Trx(_) => msg_type::TRX,
                    Message::Block(_) => msg_type::BLOCK,
                    $(Message::$variant(_) => $code,)+
                    Message::Unknown { msg_type, .. } => *msg_type,
                }
            }

            /// The reference's name for the message type.
            pub fn name(&self) -> &'static str {
                type_name(self.msg_type())
            }

            /// Decodes the data of a frame of type `msg_type`. Bytes after the last field are
            /// ignored, as fc ignores them.
            pub fn decode(msg_type: u32, data: &[u8]) -> Result<Message, DecodeError> {
                match msg_type {
                    msg_type::TRX => Ok(Message::Trx(data.to_vec())),
                    msg_type::BLOCK => {
                        block_id_of(data)?;
                        Ok(Message::Block(data.to_vec()))
                    }
                    $($code => raw::from_slice_prefix::<$ty>(data)
                        .map(|(m, _)| Message::$variant(m))
                        .map_err(|source| DecodeError::Malformed {
                            msg_type, name: $name, source,
                        }),)+
                    _ => Ok(Message::Unknown { msg_type, data: data.to_vec() }),
                }
            }

            /// As [`Message::decode`], taking the frame's bytes: opaque data (transactions,
            /// blocks, unknown types) keeps the frame's own buffer when nothing else shares it
            /// (a large message received into a buffer of its own), instead of a copy.
            pub fn decode_owned(msg_type: u32, data: bytes::Bytes) -> Result<Message, DecodeError> {
                match msg_type {
                    msg_type::TRX => Ok(Message::Trx(Vec::from(data))),
                    msg_type::BLOCK => {
                        block_id_of(&data)?;
                        Ok(Message::Block(Vec::from(data)))
                    }
                    $($code => Self::decode(msg_type, &data),)+
                    _ => Ok(Message::Unknown { msg_type, data: Vec::from(data) }),
                }
            }

            /// Encodes the message data (without frame header).
            pub fn encode_data(&self, out: &mut Vec<u8>) {
                let result = match self {
                    Message::Trx(d) | Message::Block(d) | Message::Unknown { data: d, .. } => {
                        out.extend_from_slice(d);
                        Ok(())
                    }
                    $(Message::$variant(m) => raw::to_writer(out, m),)+
                };
                // Every message type is made only of things fc::raw can express.
                debug_assert!(result.is_ok(), "message types always encode: {result:?}");
            }

            /// The message as the reference's JSON (`fields` in the vectors). Trx and block
            /// bodies are decoded by [`crate::wire::protocol`] where possible.
            pub fn fields_json(&self) -> Result<serde_json::Value, serde_json::Error> {
                let mut value = match self {
                    Message::Trx(d) => super::protocol::trx_json(d),
                    Message::Block(d) => super::protocol::block_json(d),
                    Message::Unknown { data, .. } => serde_json::json!({ "data": hex::encode(data) }),
                    $(Message::$variant(m) => serde_json::to_value(m)?,)+
                };
                // fc's JSON leaves out an empty optional.
                if let (Message::ClosingConnection(m), Some(obj)) = (self, value.as_object_mut()) {
                    if m.error.is_none() {
                        obj.remove("error");
                    }
                }
                Ok(value)
            }

            /// The inverse of [`Message::fields_json`].
            pub fn from_fields_json(msg_type: u32, fields: serde_json::Value) -> Result<Message, String> {
                match msg_type {
                    msg_type::TRX => super::protocol::trx_from_json(&fields).map(Message::Trx),
                    msg_type::BLOCK => super::protocol::block_from_json(&fields).map(Message::Block),
                    $($code => serde_json::from_value::<$ty>(fields)
                        .map(Message::$variant)
                        .map_err(|e| format!("{}: {e}", $name)),)+
                    _ => {
                        let data = fields.get("data").and_then(|d| d.as_str())
                            .ok_or_else(|| format!("message type {msg_type} needs {{\"data\": \"hex\"}}"))?;
                        let data = hex::decode(data).map_err(|e| e.to_string())?;
                        Ok(Message::Unknown { msg_type, data })
                    }
                }
            }
        }

        /// The reference's name for a message type.
        pub fn type_name(code: u32) -> &'static str {
            match code {
                msg_type::TRX => "trx_message",
                msg_type::BLOCK => "block_message",
                $($code => $name,)+
                _ => "unknown_message",
            }
        }
    };
}

message_table! {
    ItemIdsInventory(ItemIdsInventoryMessage) = msg_type::ITEM_IDS_INVENTORY, "item_ids_inventory_message";
    BlockchainItemIdsInventory(BlockchainItemIdsInventoryMessage) = msg_type::BLOCKCHAIN_ITEM_IDS_INVENTORY, "blockchain_item_ids_inventory_message";
    FetchBlockchainItemIds(FetchBlockchainItemIdsMessage) = msg_type::FETCH_BLOCKCHAIN_ITEM_IDS, "fetch_blockchain_item_ids_message";
    FetchItems(FetchItemsMessage) = msg_type::FETCH_ITEMS, "fetch_items_message";
    ItemNotAvailable(ItemNotAvailableMessage) = msg_type::ITEM_NOT_AVAILABLE, "item_not_available_message";
    Hello(HelloMessage) = msg_type::HELLO, "hello_message";
    ConnectionAccepted(ConnectionAcceptedMessage) = msg_type::CONNECTION_ACCEPTED, "connection_accepted_message";
    ConnectionRejected(ConnectionRejectedMessage) = msg_type::CONNECTION_REJECTED, "connection_rejected_message";
    AddressRequest(AddressRequestMessage) = msg_type::ADDRESS_REQUEST, "address_request_message";
    Address(AddressMessage) = msg_type::ADDRESS, "address_message";
    ClosingConnection(ClosingConnectionMessage) = msg_type::CLOSING_CONNECTION, "closing_connection_message";
    CurrentTimeRequest(CurrentTimeRequestMessage) = msg_type::CURRENT_TIME_REQUEST, "current_time_request_message";
    CurrentTimeReply(CurrentTimeReplyMessage) = msg_type::CURRENT_TIME_REPLY, "current_time_reply_message";
    CheckFirewall(CheckFirewallMessage) = msg_type::CHECK_FIREWALL, "check_firewall_message";
    CheckFirewallReply(CheckFirewallReplyMessage) = msg_type::CHECK_FIREWALL_REPLY, "check_firewall_reply_message";
    GetCurrentConnectionsRequest(GetCurrentConnectionsRequestMessage) = msg_type::GET_CURRENT_CONNECTIONS_REQUEST, "get_current_connections_request_message";
    GetCurrentConnectionsReply(GetCurrentConnectionsReplyMessage) = msg_type::GET_CURRENT_CONNECTIONS_REPLY, "get_current_connections_reply_message";
}

impl Message {
    /// The encoded message data.
    pub fn to_data(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_data(&mut out);
        out
    }

    /// Whether this is a type in the core range the reference ignores when it does not know it.
    pub fn is_ignorable_unknown(&self) -> bool {
        matches!(self, Message::Unknown { msg_type, .. }
            if (msg_type::CORE_FIRST..=msg_type::CORE_LAST).contains(msg_type))
    }

    /// The inventory hash of a trx or block (ripemd160 of the message data).
    pub fn item_hash(&self) -> Option<ItemHash> {
        match self {
            Message::Trx(d) | Message::Block(d) => Some(message_hash(d)),
            _ => None,
        }
    }
}
