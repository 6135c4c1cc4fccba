//! The fuzz targets' logic: library entry points that `fuzz/` calls and `cargo test` replays.
//!
//! Each binary in `fuzz_targets/` is one line that calls the function of the same name below;
//! `tests/fuzz_replay.rs` replays the seed corpus (built in memory from
//! `tests/vectors/*.json` by [`seeds`]) through the same functions, so a target that stops
//! compiling or starts panicking on a known-good input is caught without a fuzzer.
//!
//! Every function takes the fuzzer's bytes and must never panic, except on purpose in an
//! `assert!` that states a property of the library (a failed one is a bug to report).

use crate::wire::Message;
use crate::wire::channel::absorb_untrusted;
use crate::wire::frame::{Frame, FrameDecoder, FrameError, MAX_MESSAGE_SIZE, encode_message};
use bytes::BytesMut;

pub mod chain;
pub mod node_events;
pub mod seeds;

pub use node_events::node_events;

/// The fuzz targets, by name (the binaries in `fuzz_targets/` and the folders of the corpus).
pub const TARGETS: [&str; 5] = [
    "frame_decoder",
    "message_decode",
    "handshake",
    "raw_roundtrip",
    "node_events",
];

/// Frames decoded from a plaintext stream, and the error that stopped decoding, if any.
#[derive(Debug, PartialEq)]
struct Decoded {
    frames: Vec<Frame>,
    error: Option<FrameError>,
}

/// Feeds `chunks` one after the other to a fresh [`FrameDecoder`], taking every frame after
/// each chunk, and stops at the first error (a connection would be dropped there).
fn decode_stream<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> Decoded {
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode_frame(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error) => {
                    return Decoded {
                        frames,
                        error: Some(error),
                    };
                }
            }
        }
    }
    Decoded {
        frames,
        error: None,
    }
}

/// `frame_decoder`: byte 0 chooses a chunk size (1 to 256), the rest is a plaintext byte
/// stream fed to [`FrameDecoder`] in chunks of that size. Every frame is decoded with
/// [`Message::decode`]. Checks that the frames (and the error that ends them) are the same as
/// when the stream arrives in one piece, and that no frame exceeds [`MAX_MESSAGE_SIZE`].
/// Returns the number of frames.
pub fn frame_decoder(data: &[u8]) -> usize {
    let Some((&step, stream)) = data.split_first() else {
        return 0;
    };
    let step = usize::from(step) + 1;
    let chunked = decode_stream(stream.chunks(step));
    let whole = decode_stream(std::iter::once(stream));
    assert_eq!(
        chunked, whole,
        "the frames depend on how the stream was split (chunks of {step})"
    );
    for frame in &chunked.frames {
        assert!(frame.data.len() <= MAX_MESSAGE_SIZE);
        // Malformed data is an error, never a panic.
        let _ = frame.message();
    }
    chunked.frames.len()
}

/// `message_decode`: bytes 0..4 are the message type (u32 LE), the rest is message data. If
/// [`Message::decode`] accepts it, the message's own encoding must decode to the same message,
/// and framing that encoding with [`encode_message`] must give back one frame of the same type
/// and data. Returns whether the data decoded.
pub fn message_decode(data: &[u8]) -> bool {
    let Some((head, body)) = data.split_first_chunk::<4>() else {
        return false;
    };
    let msg_type = u32::from_le_bytes(*head);
    let Ok(message) = Message::decode(msg_type, body) else {
        return false;
    };
    assert_eq!(message.msg_type(), msg_type);
    let encoded = message.to_data();
    let again = Message::decode(msg_type, &encoded)
        .unwrap_or_else(|e| panic!("the encoding of a decoded message does not decode: {e}"));
    assert_eq!(again, message, "decode(encode(m)) != m");
    if encoded.len() <= MAX_MESSAGE_SIZE {
        let mut wire = BytesMut::new();
        encode_message(&message, &mut wire).expect("a message within the limit frames");
        let frame = FrameDecoder::new()
            .decode_frame(&mut wire)
            .expect("our own frame parses")
            .expect("our own frame is whole");
        assert!(wire.is_empty(), "the frame left bytes behind");
        assert_eq!(frame.msg_type, msg_type);
        assert_eq!(&frame.data[..], &encoded[..]);
    }
    true
}

/// `handshake`: the bytes a peer sends, from its ephemeral key on, fed to
/// [`absorb_untrusted`] (the key exchange against the fixed
/// [`crate::wire::channel::FUZZ_EPHEMERAL_SECRET`], then decryption, framing and message
/// decoding). Returns the number of messages decoded, or `None` if the channel failed.
pub fn handshake(data: &[u8]) -> Option<usize> {
    absorb_untrusted(data).ok().map(|messages| messages.len())
}

/// The core message types `raw_roundtrip` chooses from.
pub const CORE_TYPES: std::ops::RangeInclusive<u32> = 5001..=5017;

/// The core message type that the selector byte `sel` of `raw_roundtrip` stands for.
pub fn core_type_of(sel: u8) -> u32 {
    let count = CORE_TYPES.end() - CORE_TYPES.start() + 1;
    CORE_TYPES.start() + u32::from(sel) % count
}

/// `raw_roundtrip`: byte 0 chooses one of the core message types 5001..=5017 (modulo 17), the
/// rest is decoded as that type's fc::raw data. If it decodes, decoding its re-encoding must
/// give the same message. Returns whether the data decoded.
pub fn raw_roundtrip(data: &[u8]) -> bool {
    let Some((&sel, body)) = data.split_first() else {
        return false;
    };
    let msg_type = core_type_of(sel);
    let Ok(message) = Message::decode(msg_type, body) else {
        return false;
    };
    assert_eq!(
        Message::decode(msg_type, &message.to_data()).as_ref(),
        Ok(&message),
        "decode(to_data(m)) != m for type {msg_type}"
    );
    true
}

/// Runs the target called `name` on `data` (for the corpus replay and tools).
pub fn run(name: &str, data: &[u8]) {
    match name {
        "frame_decoder" => {
            frame_decoder(data);
        }
        "message_decode" => {
            message_decode(data);
        }
        "handshake" => {
            handshake(data);
        }
        "raw_roundtrip" => {
            raw_roundtrip(data);
        }
        "node_events" => {
            node_events(data);
        }
        other => panic!("no fuzz target called {other}"),
    }
}
