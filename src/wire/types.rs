//! The value types graphene messages are made of, each with two faces: fc::raw when the
//! serializer is not human-readable, and the reference's JSON form (`fc::variant`) when it is.
//!
//! | type | fc::raw | JSON |
//! |---|---|---|
//! | [`Ripemd160`], [`Sha256`], [`NodeId`], [`CompactSignatureBytes`] | raw bytes, no length | lowercase hex |
//! | [`IpAddress`] | u32 LE | "a.b.c.d" |
//! | [`Endpoint`] | address then u16 LE port | "a.b.c.d:port" |
//! | [`TimePointSec`] | u32 LE seconds | "YYYY-MM-DDTHH:MM:SS" |
//! | [`TimePoint`] | i64 LE microseconds | same, whole seconds as fc prints it (exact in lossless mode) |
//! | [`Microseconds`] | i64 LE | a number |
//! | the 1-byte enums | u8 | their names |

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

use super::time;

fn hex_or_raw<S: Serializer, const N: usize>(bytes: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&hex::encode(bytes))
    } else {
        let mut t = s.serialize_tuple(N)?;
        for b in bytes {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

fn hex_or_raw_de<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
    if d.is_human_readable() {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| de::Error::custom(format!("expected {N} bytes of hex")))
    } else {
        struct Fixed<const N: usize>;
        impl<'de, const N: usize> Visitor<'de> for Fixed<N> {
            type Value = [u8; N];
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{N} bytes")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
                let mut out = [0u8; N];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        d.deserialize_tuple(N, Fixed::<N>)
    }
}

macro_rules! fixed_bytes {
    ($(#[$doc:meta])* $name:ident, $n:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $n;
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $n] {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self([0u8; $n])
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let bytes = hex::decode(s).map_err(|e| e.to_string())?;
                bytes
                    .try_into()
                    .map(Self)
                    .map_err(|_| format!("expected {} bytes of hex", $n))
            }
        }

        impl From<[u8; $n]> for $name {
            fn from(b: [u8; $n]) -> Self {
                Self(b)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                hex_or_raw(&self.0, s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                hex_or_raw_de(d).map(Self)
            }
        }
    };
}

fixed_bytes!(
    /// fc::ripemd160: item hashes, block ids, transaction ids.
    Ripemd160, 20
);
fixed_bytes!(
    /// fc::sha256: the chain id.
    Sha256, 32
);
fixed_bytes!(
    /// A compressed secp256k1 public key (`node_id_t`, `node_public_key`).
    NodeId, 33
);
fixed_bytes!(
    /// fc's 65-byte compact recoverable signature.
    CompactSignatureBytes, 65
);

/// An item hash as inventory uses it.
pub type ItemHash = Ripemd160;
/// A block id: ripemd160-sized, first 4 bytes the block number big-endian.
pub type BlockId = Ripemd160;

impl Ripemd160 {
    /// The block number a block id carries in its first 4 bytes (big-endian).
    pub fn block_number(&self) -> u32 {
        u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }
}

/// fc::ip::address: an IPv4 address packed as its u32 value, little-endian.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct IpAddress(pub u32);

impl IpAddress {
    /// The standard-library form.
    pub fn to_ipv4(self) -> Ipv4Addr {
        Ipv4Addr::from(self.0)
    }
}

impl From<Ipv4Addr> for IpAddress {
    fn from(a: Ipv4Addr) -> Self {
        Self(u32::from(a))
    }
}

impl fmt::Debug for IpAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_ipv4())
    }
}

impl fmt::Display for IpAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_ipv4())
    }
}

impl Serialize for IpAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_u32(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for IpAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            Ipv4Addr::from_str(&text)
                .map(Self::from)
                .map_err(de::Error::custom)
        } else {
            u32::deserialize(d).map(Self)
        }
    }
}

/// fc::ip::endpoint: address and port.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Endpoint {
    pub address: IpAddress,
    pub port: u16,
}

impl Endpoint {
    /// An endpoint from its parts.
    pub fn new(address: Ipv4Addr, port: u16) -> Self {
        Self {
            address: address.into(),
            port,
        }
    }

    /// The standard-library form.
    pub fn to_socket_addr(self) -> SocketAddrV4 {
        SocketAddrV4::new(self.address.to_ipv4(), self.port)
    }
}

impl From<SocketAddrV4> for Endpoint {
    fn from(a: SocketAddrV4) -> Self {
        Self::new(*a.ip(), a.port())
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.address, self.port)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.address, self.port)
    }
}

impl FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SocketAddrV4::from_str(s)
            .map(Self::from)
            .map_err(|e| format!("{s:?} is not an ip:port endpoint: {e}"))
    }
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            let mut t = s.serialize_tuple(2)?;
            t.serialize_element(&self.address)?;
            t.serialize_element(&self.port)?;
            t.end()
        }
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            Endpoint::from_str(&text).map_err(de::Error::custom)
        } else {
            let (address, port) = <(IpAddress, u16)>::deserialize(d)?;
            Ok(Self { address, port })
        }
    }
}

/// fc::time_point_sec: seconds since the epoch as u32.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug)]
pub struct TimePointSec(pub u32);

impl fmt::Display for TimePointSec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&time::format_seconds(i64::from(self.0)))
    }
}

impl Serialize for TimePointSec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_u32(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for TimePointSec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            let micros = time::parse_micros(&text)
                .ok_or_else(|| de::Error::custom(format!("bad time {text:?}")))?;
            u32::try_from(micros.div_euclid(1_000_000))
                .map(Self)
                .map_err(|_| de::Error::custom(format!("time {text:?} out of range")))
        } else {
            u32::deserialize(d).map(Self)
        }
    }
}

/// fc::time_point: microseconds since the epoch as i64.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug)]
pub struct TimePoint(pub i64);

impl fmt::Display for TimePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&time::format_micros(self.0))
    }
}

impl Serialize for TimePoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            if super::json::lossless() {
                s.collect_str(self)
            } else {
                // fc prints a time_point to whole seconds.
                s.collect_str(&time::format_seconds(self.0.div_euclid(1_000_000)))
            }
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for TimePoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            time::parse_micros(&text)
                .map(Self)
                .ok_or_else(|| de::Error::custom(format!("bad time {text:?}")))
        } else {
            i64::deserialize(d).map(Self)
        }
    }
}

/// fc::microseconds: a signed duration, a plain number in JSON.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Microseconds(pub i64);

/// Declares a one-byte enum (`fc::enum_type<uint8_t, E>`) that is its name in JSON.
macro_rules! byte_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $value:expr => $text:expr),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
            /// A value this version does not know; kept so it survives a round trip.
            Other(u8),
        }

        impl $name {
            /// The byte on the wire.
            pub fn to_byte(self) -> u8 {
                match self {
                    $(Self::$variant => $value,)+
                    Self::Other(b) => b,
                }
            }
            /// From the byte on the wire; unknown values are kept as `Other`.
            pub fn from_byte(b: u8) -> Self {
                match b {
                    $($value => Self::$variant,)+
                    other => Self::Other(other),
                }
            }
            /// The reference's name for it.
            pub fn name(self) -> String {
                match self {
                    $(Self::$variant => $text.to_string(),)+
                    Self::Other(b) => b.to_string(),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.name())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    match self {
                        Self::Other(b) => s.serialize_u8(*b),
                        known => s.serialize_str(&known.name()),
                    }
                } else {
                    s.serialize_u8(self.to_byte())
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    #[derive(Deserialize)]
                    #[serde(untagged)]
                    enum Form { Name(String), Number(u8) }
                    match Form::deserialize(d)? {
                        Form::Number(b) => Ok(Self::from_byte(b)),
                        Form::Name(n) => match n.as_str() {
                            $($text => Ok(Self::$variant),)+
                            other => Err(de::Error::custom(format!(
                                "unknown {} {other:?}", stringify!($name)))),
                        },
                    }
                } else {
                    u8::deserialize(d).map(Self::from_byte)
                }
            }
        }
    };
}

byte_enum!(
    /// Why a hello was refused (`rejection_reason_code`).
    RejectionReason {
        Unspecified = 0 => "unspecified",
        DifferentChain = 1 => "different_chain",
        AlreadyConnected = 2 => "already_connected",
        ConnectedToSelf = 3 => "connected_to_self",
        NotAcceptingConnections = 4 => "not_accepting_connections",
        Blocked = 5 => "blocked",
        InvalidHelloMessage = 6 => "invalid_hello_message",
        ClientTooOld = 7 => "client_too_old",
    }
);

byte_enum!(
    /// Who dialled whom (`peer_connection_direction`).
    Direction {
        Unknown = 0 => "unknown",
        Inbound = 1 => "inbound",
        Outbound = 2 => "outbound",
    }
);

byte_enum!(
    /// Whether a peer is reachable from outside (`firewalled_state`).
    FirewalledState {
        Unknown = 0 => "unknown",
        Firewalled = 1 => "firewalled",
        NotFirewalled = 2 => "not_firewalled",
    }
);

byte_enum!(
    /// Outcome of a firewall check (`firewall_check_result`).
    FirewallCheckResult {
        UnableToCheck = 0 => "unable_to_check",
        UnableToConnect = 1 => "unable_to_connect",
        ConnectionSuccessful = 2 => "connection_successful",
    }
);
