//! Frames: an 8-byte header (data size u32 LE, message type u32 LE), the data, then zero bytes
//! up to a multiple of 16 so that the whole frame is whole AES blocks.
//!
//! [`FrameDecoder`] reads plaintext incrementally: any split of the byte stream yields the same
//! frames. The declared size is checked against [`MAX_MESSAGE_SIZE`] as soon as the 8 header
//! bytes are there, before anything is reserved for the body. [`SecureCodec`] puts the two
//! [`CipherStream`]s around it and is what a connection uses after the key exchange; both are
//! tokio-util codecs.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::crypto::cipher::BLOCK_SIZE;
use crate::crypto::{CipherStream, CryptoError};

use super::message::{DecodeError, Message};

/// Largest message data a peer may send (the reference's MAX_MESSAGE_SIZE, 2 MiB).
pub const MAX_MESSAGE_SIZE: usize = 2 * 1024 * 1024;

/// Size of the frame header.
pub const HEADER_SIZE: usize = 8;

/// Bytes a frame of `data_len` bytes of data occupies on the wire.
pub fn padded_frame_len(data_len: usize) -> usize {
    (HEADER_SIZE + data_len).div_ceil(BLOCK_SIZE) * BLOCK_SIZE
}

/// Why the byte stream could not be framed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A header declared more data than [`MAX_MESSAGE_SIZE`]. Nothing was allocated for it.
    #[error("frame declares {size} bytes of data, above the {limit}-byte limit")]
    TooLarge { size: u64, limit: usize },
    /// The cipher refused the input (never happens with whole blocks).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The data of a known message type is malformed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The transport failed underneath the codec.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl PartialEq for FrameError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::TooLarge { size: a, limit: b }, Self::TooLarge { size: c, limit: d }) => {
                a == c && b == d
            }
            (Self::Crypto(a), Self::Crypto(b)) => a == b,
            (Self::Decode(a), Self::Decode(b)) => a == b,
            (Self::Io(a), Self::Io(b)) => a.kind() == b.kind(),
            _ => false,
        }
    }
}

/// One frame: its type and data, padding removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub msg_type: u32,
    pub data: Bytes,
}

impl Frame {
    /// Decodes the frame's message.
    pub fn message(&self) -> Result<Message, DecodeError> {
        Message::decode(self.msg_type, &self.data)
    }

    /// Decodes the frame's message, keeping the frame's buffer for opaque data when it is the
    /// only one using it (see [`Message::decode_owned`]).
    pub fn into_message(self) -> Result<Message, DecodeError> {
        Message::decode_owned(self.msg_type, self.data)
    }
}

/// The header of the frame at the front of `buf`, if 8 bytes are there. The size is checked
/// against the limit here, so callers can never be made to allocate for an oversized frame.
pub fn parse_header(buf: &[u8]) -> Result<Option<(usize, u32)>, FrameError> {
    let Some(header) = buf.get(..HEADER_SIZE) else {
        return Ok(None);
    };
    let size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let msg_type = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if size as usize > MAX_MESSAGE_SIZE {
        return Err(FrameError::TooLarge {
            size: u64::from(size),
            limit: MAX_MESSAGE_SIZE,
        });
    }
    Ok(Some((size as usize, msg_type)))
}

/// Appends the frame for `msg_type` and `data` (header, data, zero padding) to `out`.
pub fn encode_frame(msg_type: u32, data: &[u8], out: &mut BytesMut) -> Result<(), FrameError> {
    if data.len() > MAX_MESSAGE_SIZE {
        return Err(FrameError::TooLarge {
            size: data.len() as u64,
            limit: MAX_MESSAGE_SIZE,
        });
    }
    let total = padded_frame_len(data.len());
    out.reserve(total);
    out.put_u32_le(data.len() as u32);
    out.put_u32_le(msg_type);
    out.put_slice(data);
    out.put_bytes(0, total - HEADER_SIZE - data.len());
    Ok(())
}

/// Writes the plaintext frame for `msg_type` and `data` over `out`, which must be exactly
/// [`padded_frame_len`]`(data.len())` bytes long (whatever they held before).
pub fn frame_into(msg_type: u32, data: &[u8], out: &mut [u8]) -> Result<(), FrameError> {
    check_frame(data.len(), out.len())?;
    let (header, rest) = out.split_at_mut(HEADER_SIZE);
    header[..4].copy_from_slice(&(data.len() as u32).to_le_bytes());
    header[4..].copy_from_slice(&msg_type.to_le_bytes());
    let (body, padding) = rest.split_at_mut(data.len());
    body.copy_from_slice(data);
    padding.fill(0);
    Ok(())
}

/// Refuses data above [`MAX_MESSAGE_SIZE`], and an output that is not its frame's length.
fn check_frame(data_len: usize, out_len: usize) -> Result<(), FrameError> {
    if data_len > MAX_MESSAGE_SIZE {
        return Err(FrameError::TooLarge {
            size: data_len as u64,
            limit: MAX_MESSAGE_SIZE,
        });
    }
    if out_len != padded_frame_len(data_len) {
        return Err(FrameError::Crypto(CryptoError::NotBlockAligned(out_len)));
    }
    Ok(())
}

/// Appends the frame of `message` to `out`.
pub fn encode_message(message: &Message, out: &mut BytesMut) -> Result<(), FrameError> {
    match message {
        // Opaque bodies are framed as they are, without an intermediate copy.
        Message::Trx(data) | Message::Block(data) | Message::Unknown { data, .. } => {
            encode_frame(message.msg_type(), data, out)
        }
        _ => encode_frame(message.msg_type(), &message.to_data(), out),
    }
}

/// Incremental frame decoder over plaintext.
#[derive(Debug, Default, Clone)]
pub struct FrameDecoder {
    _private: (),
}

impl FrameDecoder {
    /// A new decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one whole frame off the front of `buf`, if it is all there. `Ok(None)` means "need
    /// more bytes" and reserves room for the rest of a frame whose header was valid.
    pub fn decode_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some((size, msg_type)) = parse_header(buf)? else {
            return Ok(None);
        };
        let total = padded_frame_len(size);
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(total);
        frame.advance(HEADER_SIZE);
        frame.truncate(size);
        Ok(Some(Frame {
            msg_type,
            data: frame.freeze(),
        }))
    }
}

/// Plaintext frames as a tokio-util codec (for tests, tools and unencrypted links).
#[derive(Debug, Default, Clone)]
pub struct FrameCodec {
    decoder: FrameDecoder,
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        self.decoder.decode_frame(src)
    }
}

impl Encoder<&Message> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: &Message, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_message(item, dst)
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_frame(item.msg_type, &item.data, dst)
    }
}

/// Encrypted frames: the codec of an established stcp connection, both directions.
///
/// Decoding ([`SecureDecoder`]) decrypts every whole block as soon as it arrives (in place, in
/// the read buffer) and then frames the plaintext. Encoding frames and encrypts, continuing
/// the stream from one frame to the next.
#[derive(Debug)]
pub struct SecureCodec {
    encrypt: CipherStream,
    decode: SecureDecoder,
}

/// The receiving half of a [`SecureCodec`]: `decrypted` remembers how far the buffer is
/// plaintext. Frames are whole blocks, so after a frame is taken off the front the boundary
/// stays block-aligned.
#[derive(Debug)]
pub struct SecureDecoder {
    decrypt: CipherStream,
    decrypted: usize,
    decoder: FrameDecoder,
}

impl SecureCodec {
    /// A codec from the two directions' streams.
    pub fn new(encrypt: CipherStream, decrypt: CipherStream) -> Self {
        Self {
            encrypt,
            decode: SecureDecoder {
                decrypt,
                decrypted: 0,
                decoder: FrameDecoder::new(),
            },
        }
    }

    /// A codec for one side of a connection whose two directions share `key` and `iv`, as
    /// every stcp connection's do.
    pub fn from_key_iv(key: &[u8; 32], iv: &[u8; 16]) -> Self {
        Self::new(
            CipherStream::encryptor(key, iv),
            CipherStream::decryptor(key, iv),
        )
    }

    /// The codec for a connection with these session keys.
    pub fn for_session(keys: &crate::crypto::SessionKeys) -> Self {
        Self::from_key_iv(&keys.aes_key, &keys.aes_iv)
    }

    /// The two directions apart: the sending stream (for [`encrypt_frame_into`] and
    /// [`encrypt_in_place`], which may run elsewhere) and the receiving half.
    pub fn into_parts(self) -> (CipherStream, SecureDecoder) {
        (self.encrypt, self.decode)
    }

    /// Bytes of `src` already decrypted but not yet returned as a frame.
    pub fn buffered_plaintext(&self) -> usize {
        self.decode.buffered_plaintext()
    }

    /// See [`SecureDecoder::front_frame_len`].
    pub fn front_frame_len(&self, src: &[u8]) -> Option<usize> {
        self.decode.front_frame_len(src)
    }

    /// Decrypts whatever whole blocks arrived and takes the next frame if it is complete.
    pub fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        self.decode.decode_frame(src)
    }

    /// Encrypts, in place, plaintext frames written by [`frame_into`] (see
    /// [`encrypt_in_place`]).
    pub fn encrypt_in_place(&mut self, buf: &mut [u8]) -> Result<(), FrameError> {
        encrypt_in_place(&mut self.encrypt, buf)
    }

    /// Frames and encrypts `data` straight into `out` (see [`encrypt_frame_into`]).
    pub fn encrypt_frame_into(
        &mut self,
        msg_type: u32,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<(), FrameError> {
        encrypt_frame_into(&mut self.encrypt, msg_type, data, out)
    }

    /// Frames and encrypts `message`, appending the ciphertext to `dst`.
    pub fn encode_message(
        &mut self,
        message: &Message,
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        let start = dst.len();
        encode_message(message, dst)?;
        self.encrypt.apply(&mut dst[start..])?;
        Ok(())
    }

    /// Frames and encrypts raw `data` of type `msg_type`.
    pub fn encode_raw(
        &mut self,
        msg_type: u32,
        data: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        let start = dst.len();
        encode_frame(msg_type, data, dst)?;
        self.encrypt.apply(&mut dst[start..])?;
        Ok(())
    }
}

impl SecureDecoder {
    /// Bytes of `src` already decrypted but not yet returned as a frame.
    pub fn buffered_plaintext(&self) -> usize {
        self.decrypted
    }

    /// The wire length of the frame at the front of `src` (header, data, padding), once its
    /// header is decrypted (after a [`SecureDecoder::decode_frame`] call that returned `None`
    /// or left bytes behind); `None` before, or if the header is invalid (decoding reports
    /// that).
    pub fn front_frame_len(&self, src: &[u8]) -> Option<usize> {
        let plain = src.get(..self.decrypted)?;
        match parse_header(plain) {
            Ok(Some((size, _))) => Some(padded_frame_len(size)),
            _ => None,
        }
    }

    /// Decrypts whatever whole blocks arrived and takes the next frame if it is complete.
    pub fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let whole = src.len() / BLOCK_SIZE * BLOCK_SIZE;
        if whole > self.decrypted {
            self.decrypt.apply(&mut src[self.decrypted..whole])?;
            self.decrypted = whole;
        }
        // The frame decoder must only see plaintext: hand it a view limited to what is
        // decrypted by checking the header first.
        let Some((size, _)) = parse_header(&src[..self.decrypted])? else {
            if self.decrypted < HEADER_SIZE {
                src.reserve(BLOCK_SIZE);
            }
            return Ok(None);
        };
        let total = padded_frame_len(size);
        if self.decrypted < total {
            src.reserve(total.saturating_sub(src.len()));
            return Ok(None);
        }
        let frame = self.decoder.decode_frame(src)?;
        if frame.is_some() {
            self.decrypted -= total;
        }
        Ok(frame)
    }
}

/// Encrypts, in place, plaintext frames written by [`frame_into`] (whole blocks), continuing
/// the stream `encrypt`: frames written back to back are encrypted with one call.
pub fn encrypt_in_place(encrypt: &mut CipherStream, buf: &mut [u8]) -> Result<(), FrameError> {
    Ok(encrypt.apply(buf)?)
}

/// Frames and encrypts `data` of type `msg_type` straight into `out`, which must be exactly
/// [`padded_frame_len`]`(data.len())` bytes long, continuing the stream `encrypt`: the cipher
/// reads the data where it is, so a large message is not copied before it is encrypted.
pub fn encrypt_frame_into(
    encrypt: &mut CipherStream,
    msg_type: u32,
    data: &[u8],
    out: &mut [u8],
) -> Result<(), FrameError> {
    check_frame(data.len(), out.len())?;
    // The first block: the header and up to 8 bytes of data.
    let head = data.len().min(BLOCK_SIZE - HEADER_SIZE);
    let (first, rest) = out.split_at_mut(BLOCK_SIZE);
    first[..4].copy_from_slice(&(data.len() as u32).to_le_bytes());
    first[4..HEADER_SIZE].copy_from_slice(&msg_type.to_le_bytes());
    first[HEADER_SIZE..HEADER_SIZE + head].copy_from_slice(&data[..head]);
    first[HEADER_SIZE + head..].fill(0);
    encrypt.apply(first)?;
    // Whole blocks of data, read by the cipher; then the last partial block, padded.
    let body = &data[head..];
    let whole = body.len() / BLOCK_SIZE * BLOCK_SIZE;
    let (middle, last) = rest.split_at_mut(whole);
    encrypt.apply_b2b(&body[..whole], middle)?;
    let tail = &body[whole..];
    if !tail.is_empty() {
        let (bytes, padding) = last.split_at_mut(tail.len());
        bytes.copy_from_slice(tail);
        padding.fill(0);
        encrypt.apply(last)?;
    }
    Ok(())
}

impl Decoder for SecureCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        self.decode_frame(src)
    }
}

impl Encoder<&Message> for SecureCodec {
    type Error = FrameError;

    fn encode(&mut self, item: &Message, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_message(item, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_header_is_refused_before_allocation() {
        let mut buf = BytesMut::with_capacity(16);
        buf.put_u32_le(MAX_MESSAGE_SIZE as u32 + 1);
        buf.put_u32_le(5006);
        let cap = buf.capacity();
        let err = FrameDecoder::new().decode_frame(&mut buf).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                size: MAX_MESSAGE_SIZE as u64 + 1,
                limit: MAX_MESSAGE_SIZE
            }
        );
        assert_eq!(
            buf.capacity(),
            cap,
            "nothing reserved for the refused frame"
        );
    }

    #[test]
    fn exactly_the_limit_is_accepted() {
        let data = vec![7u8; MAX_MESSAGE_SIZE];
        let mut buf = BytesMut::new();
        encode_frame(1001, &data, &mut buf).unwrap();
        assert_eq!(buf.len() % 16, 0);
        let frame = FrameDecoder::new().decode_frame(&mut buf).unwrap().unwrap();
        assert_eq!(frame.data.len(), MAX_MESSAGE_SIZE);
        assert!(buf.is_empty());
        let mut out = BytesMut::new();
        assert!(matches!(
            encode_frame(1001, &vec![0u8; MAX_MESSAGE_SIZE + 1], &mut out),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn padding_and_split_points() {
        let mut wire = BytesMut::new();
        let sizes = [0usize, 1, 7, 8, 9, 15, 16, 17, 100];
        for (i, n) in sizes.iter().enumerate() {
            encode_frame(5000 + i as u32, &vec![i as u8; *n], &mut wire).unwrap();
        }
        assert_eq!(wire.len() % 16, 0);
        for step in [1usize, 3, 16, 33, 1000] {
            let mut dec = FrameDecoder::new();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in wire.chunks(step) {
                buf.extend_from_slice(chunk);
                while let Some(f) = dec.decode_frame(&mut buf).unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), sizes.len());
            for (i, f) in got.iter().enumerate() {
                assert_eq!(f.msg_type, 5000 + i as u32);
                assert_eq!(f.data.len(), sizes[i]);
            }
        }
    }

    #[test]
    fn opaque_data_keeps_the_frame_buffer_when_alone() {
        let data = vec![3u8; 100_000];
        let at = data.as_ptr();
        let frame = Frame {
            msg_type: 5050,
            data: Bytes::from(data),
        };
        match frame.into_message().unwrap() {
            Message::Unknown { msg_type, data } => {
                assert_eq!(msg_type, 5050);
                assert_eq!(data.as_ptr(), at, "no copy");
                assert_eq!(data, vec![3u8; 100_000]);
            }
            other => panic!("{other:?}"),
        }
        // Shared with something else: copied, both intact.
        let shared = Bytes::from(vec![4u8; 64]);
        let frame = Frame {
            msg_type: 1000,
            data: shared.clone(),
        };
        assert_eq!(frame.into_message().unwrap(), Message::Trx(vec![4u8; 64]));
        assert_eq!(shared, vec![4u8; 64]);
        // A block too short to hold its id is refused as `decode` refuses it.
        let short = Frame {
            msg_type: 1001,
            data: Bytes::from(vec![0u8; 3]),
        };
        assert_eq!(short.clone().into_message(), short.message());
        assert!(short.into_message().is_err());
    }

    #[test]
    fn frames_written_in_place_match_appended_ones() {
        let key = [8u8; 32];
        let iv = [9u8; 16];
        let mut appended = SecureCodec::from_key_iv(&key, &iv);
        let mut direct = SecureCodec::from_key_iv(&key, &iv);
        let mut batched = SecureCodec::from_key_iv(&key, &iv);
        for len in [0usize, 1, 7, 8, 9, 23, 24, 25, 100, 4096, 70_001] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut want = BytesMut::new();
            appended.encode_raw(5050, &data, &mut want).unwrap();
            let mut out = vec![0xee; padded_frame_len(len)];
            direct.encrypt_frame_into(5050, &data, &mut out).unwrap();
            assert_eq!(out, want.as_ref(), "{len} bytes");
            let mut plain = vec![0xdd; padded_frame_len(len)];
            frame_into(5050, &data, &mut plain).unwrap();
            batched.encrypt_in_place(&mut plain).unwrap();
            assert_eq!(plain, want.as_ref(), "{len} bytes, framed then encrypted");
        }
        let mut short = vec![0u8; 16];
        assert!(direct.encrypt_frame_into(1, &[0u8; 9], &mut short).is_err());
        let mut big = vec![0u8; padded_frame_len(MAX_MESSAGE_SIZE + 1)];
        assert!(matches!(
            frame_into(1, &vec![0u8; MAX_MESSAGE_SIZE + 1], &mut big),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn secure_codec_round_trip_with_odd_splits() {
        let key = [1u8; 32];
        let iv = [2u8; 16];
        let mut tx = SecureCodec::from_key_iv(&key, &iv);
        let mut rx = SecureCodec::from_key_iv(&key, &iv);
        let mut wire = BytesMut::new();
        let msgs: Vec<Message> = (0..20)
            .map(|i| Message::Unknown {
                msg_type: 5050,
                data: vec![i as u8; i * 13],
            })
            .collect();
        for m in &msgs {
            tx.encode_message(m, &mut wire).unwrap();
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(5) {
            buf.extend_from_slice(chunk);
            while let Some(f) = rx.decode_frame(&mut buf).unwrap() {
                got.push(f.message().unwrap());
            }
        }
        assert_eq!(got, msgs);
        assert_eq!(rx.buffered_plaintext(), 0);
    }
}
