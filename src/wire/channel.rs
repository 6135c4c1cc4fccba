//! One encrypted stcp connection, sans IO: the key exchange followed by encrypted frames.
//!
//! Calling contract:
//! 1. write [`SecureChannel::our_key`] (33 bytes) to the socket first, without waiting;
//! 2. hand every byte read from the socket to [`SecureChannel::receive`], then call
//!    [`SecureChannel::next_frame`] until it returns `Ok(None)`;
//! 3. once [`SecureChannel::is_established`], [`SecureChannel::send`] appends ciphertext to an
//!    output buffer for the socket.
//!
//! Any error is final for the connection: the peer sent something no graphene node sends.

use bytes::BytesMut;

use crate::crypto::{CryptoError, ExchangeProgress, KeyExchange, PublicKeyBytes, SessionKeys};

use super::frame::{Frame, FrameError, SecureCodec};
use super::message::Message;

/// Why a channel failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChannelError {
    #[error("key exchange: {0}")]
    Crypto(#[from] CryptoError),
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
    /// `send` before the key exchange finished (a local bug, not the peer's fault).
    #[error("the key exchange has not finished")]
    NotEstablished,
}

enum State {
    Exchanging(Box<KeyExchange>),
    Established {
        codec: Box<SecureCodec>,
        keys: Box<SessionKeys>,
        peer_key: PublicKeyBytes,
    },
}

/// An stcp connection's protocol state below messages.
pub struct SecureChannel {
    our_key: PublicKeyBytes,
    state: State,
    rx: BytesMut,
}

impl SecureChannel {
    /// A channel with a fresh ephemeral key.
    pub fn new() -> Self {
        Self::from_exchange(KeyExchange::new())
    }

    /// A channel around a given exchange (tests, vectors, fuzzing).
    pub fn from_exchange(exchange: KeyExchange) -> Self {
        Self {
            our_key: *exchange.our_public_key(),
            state: State::Exchanging(Box::new(exchange)),
            rx: BytesMut::new(),
        }
    }

    /// The 33 bytes to send before anything else.
    pub fn our_key(&self) -> &PublicKeyBytes {
        &self.our_key
    }

    /// Whether the key exchange has finished.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established { .. })
    }

    /// The derived keys, once established (the hello signature covers them).
    pub fn session_keys(&self) -> Option<&SessionKeys> {
        match &self.state {
            State::Established { keys, .. } => Some(keys),
            State::Exchanging(_) => None,
        }
    }

    /// The peer's ephemeral key, once established.
    pub fn peer_key(&self) -> Option<&PublicKeyBytes> {
        match &self.state {
            State::Established { peer_key, .. } => Some(peer_key),
            State::Exchanging(_) => None,
        }
    }

    /// Bytes received and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.rx.len()
    }

    /// Frees the receive buffer's memory when it holds no bytes (every frame taken), so an
    /// idle connection keeps none; the next [`SecureChannel::receive`] allocates again. Once a
    /// frame was split off it, the buffer keeps the capacity it grew to for the largest
    /// message so far (tens of KiB), which matters when thousands of connections sit idle.
    pub fn release_idle_buffer(&mut self) {
        if self.rx.is_empty() {
            self.rx = BytesMut::new();
        }
    }

    /// The established channel taken apart: its codec, its session keys, and the bytes
    /// received and not yet returned as frames (the caller goes on decoding them with the
    /// codec). `None` before the key exchange has finished.
    pub fn into_parts(self) -> Option<(SecureCodec, SessionKeys, BytesMut)> {
        match self.state {
            State::Established { codec, keys, .. } => Some((*codec, *keys, self.rx)),
            State::Exchanging(_) => None,
        }
    }

    /// Takes bytes read from the socket.
    pub fn receive(&mut self, mut data: &[u8]) -> Result<(), ChannelError> {
        if let State::Exchanging(exchange) = &mut self.state {
            match exchange.feed(data)? {
                ExchangeProgress::NeedMore => return Ok(()),
                ExchangeProgress::Done {
                    keys,
                    peer_key,
                    consumed,
                } => {
                    data = &data[consumed..];
                    let codec = SecureCodec::for_session(&keys);
                    self.state = State::Established {
                        codec: Box::new(codec),
                        keys: Box::new(keys),
                        peer_key,
                    };
                }
            }
        }
        self.rx.extend_from_slice(data);
        Ok(())
    }

    /// The next complete frame received, if any.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ChannelError> {
        match &mut self.state {
            State::Exchanging(_) => Ok(None),
            State::Established { codec, .. } => Ok(codec.decode_frame(&mut self.rx)?),
        }
    }

    /// Frames and encrypts raw `data` as a message of type `msg_type` onto `out` (relaying a
    /// message whose type we do not know, or a test peer sending bytes that are not what
    /// their type says).
    pub fn send_raw(
        &mut self,
        msg_type: u32,
        data: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), ChannelError> {
        match &mut self.state {
            State::Exchanging(_) => Err(ChannelError::NotEstablished),
            State::Established { codec, .. } => Ok(codec.encode_raw(msg_type, data, out)?),
        }
    }

    /// Frames and encrypts `message` onto `out`.
    pub fn send(&mut self, message: &Message, out: &mut BytesMut) -> Result<(), ChannelError> {
        match &mut self.state {
            State::Exchanging(_) => Err(ChannelError::NotEstablished),
            State::Established { codec, .. } => Ok(codec.encode_message(message, out)?),
        }
    }
}

impl Default for SecureChannel {
    fn default() -> Self {
        Self::new()
    }
}

/// The ephemeral secret [`absorb_untrusted`] uses, so a fuzzer can build valid streams.
pub const FUZZ_EPHEMERAL_SECRET: [u8; 32] = [0x11; 32];

/// Feeds arbitrary peer bytes into a fresh channel and decodes every frame they yield: the
/// fuzzing entry point for the handshake, also run by the unit tests.
pub fn absorb_untrusted(input: &[u8]) -> Result<Vec<Message>, ChannelError> {
    // A fixed ephemeral key keeps fuzzing deterministic.
    let secret = crate::crypto::keys::secret_from_bytes(&FUZZ_EPHEMERAL_SECRET)?;
    let mut channel = SecureChannel::from_exchange(KeyExchange::with_secret(secret));
    let mut out = Vec::new();
    // Split the input as a socket might, at a point derived from the input itself.
    let split = input
        .first()
        .map_or(0, |b| usize::from(*b))
        .min(input.len());
    for chunk in [&input[..split], &input[split..]] {
        channel.receive(chunk)?;
        while let Some(frame) = channel.next_frame()? {
            if let Ok(m) = frame.message() {
                out.push(m);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::{AddressRequestMessage, msg_type};

    #[test]
    fn two_channels_talk() {
        let mut a = SecureChannel::new();
        let mut b = SecureChannel::new();
        assert_eq!(
            a.send(
                &Message::AddressRequest(AddressRequestMessage {}),
                &mut BytesMut::new()
            ),
            Err(ChannelError::NotEstablished)
        );
        let a_key = *a.our_key();
        let b_key = *b.our_key();
        a.receive(&b_key).unwrap();
        let mut wire = BytesMut::new();
        a.send(
            &Message::AddressRequest(AddressRequestMessage {}),
            &mut wire,
        )
        .unwrap();
        // b gets a's key and the first frame in one read.
        let mut bytes = a_key.to_vec();
        bytes.extend_from_slice(&wire);
        b.receive(&bytes).unwrap();
        let frame = b.next_frame().unwrap().unwrap();
        assert_eq!(frame.msg_type, msg_type::ADDRESS_REQUEST);
        assert!(b.next_frame().unwrap().is_none());
        assert!(a.session_keys() == b.session_keys());
    }

    #[test]
    fn an_idle_buffer_is_released_and_the_stream_goes_on() {
        let (mut a, mut b) = (SecureChannel::new(), SecureChannel::new());
        let (a_key, b_key) = (*a.our_key(), *b.our_key());
        a.receive(&b_key).unwrap();
        b.receive(&a_key).unwrap();
        for size in [3000, 10] {
            let mut wire = BytesMut::new();
            a.send_raw(5050, &vec![7; size], &mut wire).unwrap();
            // Half a frame: the buffer holds bytes and is kept.
            let half = wire.len() / 2;
            b.receive(&wire[..half]).unwrap();
            assert!(b.next_frame().unwrap().is_none());
            b.release_idle_buffer();
            assert_eq!(b.buffered(), half);
            b.receive(&wire[half..]).unwrap();
            let frame = b.next_frame().unwrap().unwrap();
            assert_eq!(frame.data.len(), size);
            assert_eq!(b.buffered(), 0);
            b.release_idle_buffer();
            assert_eq!(b.rx.capacity(), 0);
        }
    }

    #[test]
    fn junk_is_an_error_not_a_panic() {
        assert!(absorb_untrusted(&[0u8; 40]).is_err());
        assert!(absorb_untrusted(&[]).unwrap().is_empty());
    }
}
