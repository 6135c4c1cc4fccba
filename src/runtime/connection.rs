//! One connection's task: connect or accept, the key exchange, then one loop that reads,
//! decrypts and decodes what the peer sends, and encodes, encrypts and writes what the node
//! queued on the connection's [`Link`]. It decides nothing.
//!
//! **Memory.** An idle established connection holds its socket, its two cipher states and this
//! task, and no buffer: bytes are read into a buffer taken when they arrive and kept only
//! while a message is partly received ([`ReadBuffer`]), and queued messages are encoded into
//! a buffer released once it is written. Each runtime thread keeps one spare read chunk and
//! one spare write buffer for the next connection that needs one, so busy connections do not
//! allocate per read or write.
//!
//! **Reading.** Bytes are read straight into the receive buffer and decrypted in place. The
//! messages a read completes go to the node task in events of at most
//! [`MAX_MESSAGES_PER_EVENT`] messages and [`MAX_EVENT_BYTES`] (a larger message goes alone,
//! keeping its buffer); the last event of a read carries the bytes read and the bytes of a
//! message still arriving (`in_flight`). Nothing more is read while the link's event queue is
//! full. Exactly the peer's 33 key bytes are read before that.
//!
//! **Writing.** Messages queued while the socket could take bytes are encoded back to back into
//! one buffer, up to [`WRITE_BATCH_BYTES`], and written together; a message queued on an idle
//! connection is written at once. Small frames are encrypted together in place; larger ones
//! straight from the message's data; frames of [`OFFLOAD_ENCRYPT_BYTES`] or more on the
//! blocking pool while the connection goes on writing and reading. Time fields are stamped
//! as the message leaves the queue, in a batch written at once. Each [`Event::Sent`] counts
//! whole messages written, so the node core's queue accounting stays exact.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, trace};

use super::Event;
use super::clock::Clock;
use super::fair::{Link, Report};
use crate::crypto::CipherStream;
use crate::crypto::keys::PUBLIC_KEY_SIZE;
use crate::peer::PeerId;
use crate::wire::Message;
use crate::wire::channel::SecureChannel;
use crate::wire::frame::{
    FrameError, MAX_MESSAGE_SIZE, SecureDecoder, encrypt_frame_into, encrypt_in_place, frame_into,
    padded_frame_len,
};

/// Bytes read from a socket at once when no large message is arriving. The buffer exists only
/// while bytes are being taken apart (see [`ReadBuffer`]).
pub const READ_CHUNK: usize = 64 * 1024;
/// Messages handed to the node task in one event at most: with [`MAX_EVENT_BYTES`], bounds
/// the node's work for this peer in one turn (one event per connection in turn), so a flood
/// of small messages cannot delay other peers.
pub const MAX_MESSAGES_PER_EVENT: usize = 64;
/// Wire bytes of messages handed over in one event at most; one larger message goes alone.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Ciphertext encoded ahead of the socket: messages queued together are encoded into one
/// buffer up to this many bytes (plus one message) and written with one call. Bounds the
/// writer's buffer beyond the message being written.
pub const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// How long a TCP connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer that accepts none of our bytes for this long is given up on: the connection ends
/// and is reported closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// After the node closes a connection, its writer gets this long to flush what was queued (a
/// goodbye, an address list) before the socket is dropped: a peer that reads nothing cannot
/// keep a socket the node has let go of.
pub const CLOSE_FLUSH: Duration = Duration::from_secs(5);

/// Where a connection comes from.
pub enum Target {
    Dial(SocketAddr),
    Accepted(TcpStream),
}

/// A socket whose key exchange finished.
struct Established {
    stream: TcpStream,
    channel: SecureChannel,
    local: SocketAddr,
    /// Bytes of the read that completed the peer's key, not yet reported.
    key_bytes: usize,
}

/// Runs a connection until the socket closes or the node stops it. Reports to `link` and takes
/// the messages to send from it.
///
/// The node's stop ([`Link::stop`]) is obeyed at every stage: while dialing, during the key
/// exchange, and while reading. After it nothing more is read; what the node queued is
/// flushed for at most [`CLOSE_FLUSH`], then the socket is dropped.
pub async fn run(peer: PeerId, target: Target, link: Arc<Link>, clock: Clock) {
    let established = establish(peer, target, &link).await;
    let Some(Established {
        stream,
        channel,
        local,
        key_bytes,
    }) = established
    else {
        return;
    };
    let Some((codec, digest, rx)) = channel
        .into_parts()
        .map(|(codec, keys, rx)| (codec, keys.hello_digest(), rx))
    else {
        return;
    };
    if !link
        .report(Event::Established {
            peer,
            local,
            digest,
            key_bytes,
        })
        .await
    {
        return;
    }
    let (encryptor, decoder) = codec.into_parts();
    Connection::new(peer, stream, encryptor, decoder, rx, link, clock)
        .serve()
        .await;
}

/// Connects (or takes the accepted socket), sends our key and reads exactly the peer's 33
/// bytes, reporting each read (the last one's bytes with [`Event::Established`]). Nothing
/// beyond the key is read before the channel is established, so a socket in the key exchange
/// holds no read buffer. `None` once the failure is reported, or at once when the node stops
/// the connection.
///
/// Each socket operation is raced with the stop; reporting is not (it returns by itself once
/// the node stops the connection), so the link's wake-up has one waiter at a time.
async fn establish(peer: PeerId, target: Target, link: &Arc<Link>) -> Option<Established> {
    let mut stream = match target {
        Target::Accepted(s) => s,
        Target::Dial(addr) => {
            let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr));
            match or_stop(link, connect).await? {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    link.report(dial_failed(peer, e)).await;
                    return None;
                }
                Err(_) => {
                    link.report(dial_failed(peer, "connect timed out")).await;
                    return None;
                }
            }
        }
    };
    let _ = stream.set_nodelay(true);
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut channel = SecureChannel::new();
    // Both sides send their key first; nobody waits.
    if let Err(e) = or_stop(link, stream.write_all(channel.our_key())).await? {
        link.report(dial_failed(peer, e)).await;
        return None;
    }
    let mut key = [0u8; PUBLIC_KEY_SIZE];
    let mut got = 0;
    while !channel.is_established() {
        let n = match key.get_mut(got..) {
            Some(rest) if !rest.is_empty() => or_stop(link, stream.read(rest)).await?.unwrap_or(0),
            _ => 0,
        };
        if n == 0 {
            let error = dial_failed(peer, "closed during the key exchange");
            link.report(error).await;
            return None;
        }
        let chunk = &key[got..got + n];
        got += n;
        if let Err(e) = channel.receive(chunk) {
            // An invalid key: the node counts it against the peer's address.
            link.report(protocol_error(peer, e)).await;
            return None;
        }
        if channel.is_established() {
            // The last read's bytes go with `Event::Established`.
            return Some(Established {
                stream,
                channel,
                local,
                key_bytes: n,
            });
        }
        let bytes = Event::Bytes {
            peer,
            bytes: n,
            in_flight: got,
        };
        if !link.report(bytes).await {
            return None;
        }
    }
    Some(Established {
        stream,
        channel,
        local,
        key_bytes: 0,
    })
}

/// `work`'s output, or `None` as soon as the node stops the connection.
async fn or_stop<F: std::future::Future>(link: &Link, work: F) -> Option<F::Output> {
    tokio::select! {
        out = work => Some(out),
        () = link.stopped() => None,
    }
}

/// The event for a connection that failed before its channel was established.
fn dial_failed(peer: PeerId, error: impl std::fmt::Display) -> Event {
    Event::DialFailed {
        peer,
        error: error.to_string(),
    }
}

/// The event for a peer whose bytes or frames broke the protocol.
fn protocol_error(peer: PeerId, error: impl std::fmt::Display) -> Event {
    Event::ProtocolError {
        peer,
        error: error.to_string(),
    }
}

/// How a connection holds its receive buffer: nothing between messages. A read takes a
/// buffer of [`READ_CHUNK`] bytes, or, for a message larger than that whose header has
/// arrived, a buffer of the message's own size (at most `MAX_MESSAGE_SIZE` plus its header
/// and padding, checked on the header before anything is reserved). Once the frames a read
/// completed are taken, an empty buffer is released and a small partial message moves to a
/// buffer of its own frame's size, so a peer that stops mid-message holds no more than that
/// message.
pub struct ReadBuffer;

thread_local! {
    /// One read chunk per runtime thread, kept between reads: an empty connection's chunk
    /// comes back here instead of to the allocator, so reading does not allocate (and fault in)
    /// fresh memory for every read, while idle connections still hold none.
    static SPARE_READ_CHUNK: RefCell<Option<BytesMut>> = const { RefCell::new(None) };
    /// Likewise one write buffer per runtime thread (up to [`MAX_SPARE_WRITE_BUFFER`]).
    static SPARE_WRITE_BUFFER: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// The largest write buffer kept for reuse on a runtime thread: the coalescing limit and
/// a frame beyond it.
const MAX_SPARE_WRITE_BUFFER: usize = 2 * WRITE_BATCH_BYTES;

impl ReadBuffer {
    /// Makes room in `buf` for the next read; `front_frame` is the wire length of the frame
    /// at its front, when its header has arrived.
    pub fn reserve(buf: &mut BytesMut, front_frame: Option<usize>) {
        let want = match front_frame {
            Some(len) if len > READ_CHUNK => len.saturating_sub(buf.len()),
            _ => READ_CHUNK,
        };
        if buf.capacity() == 0
            && let Some(spare) = SPARE_READ_CHUNK.with(|s| s.borrow_mut().take())
        {
            *buf = spare;
        }
        buf.reserve(want.max(1));
    }

    /// After the complete frames were taken off `buf`: releases it if empty (to the thread's
    /// spare chunk when that is free); a small partial frame keeps a buffer of its own size
    /// instead of the chunk it arrived in.
    pub fn settle(buf: &mut BytesMut, front_frame: Option<usize>) {
        if buf.is_empty() {
            let mut chunk = std::mem::take(buf);
            // Only a chunk nothing else shares, of the usual size, is kept.
            if chunk.try_reclaim(READ_CHUNK) && chunk.capacity() <= 2 * READ_CHUNK {
                SPARE_READ_CHUNK.with(|s| {
                    let mut s = s.borrow_mut();
                    if s.is_none() {
                        *s = Some(chunk);
                    }
                });
            }
            return;
        }
        if front_frame.is_some_and(|len| len > READ_CHUNK) {
            // A large message is received into its own buffer (reserved at its header).
            return;
        }
        let keep = front_frame.unwrap_or(0).max(buf.len());
        let mut own = BytesMut::with_capacity(keep);
        own.extend_from_slice(buf);
        *buf = own;
    }
}

/// Frames at least this long are encrypted on the blocking pool, so that a large message does
/// not hold a runtime worker (and the other connections and the node task it would run) for
/// the milliseconds its encryption takes (about 1.2 ms per MiB: CBC encryption is serial);
/// meanwhile the connection goes on writing what is ready and reading.
pub const OFFLOAD_ENCRYPT_BYTES: usize = 256 * 1024;

/// A large frame (see [`OFFLOAD_ENCRYPT_BYTES`]) is taken for encryption while up to this much
/// ciphertext still waits for the socket, so that encrypting one and writing the last overlap;
/// bounds the writer to two frames of the largest size.
pub const ENCRYPT_AHEAD_BYTES: usize = MAX_MESSAGE_SIZE + 16;

/// Frames at least this long are encrypted straight from the message's data (the cipher reads
/// it once, no plaintext copy); shorter ones are framed back to back and encrypted together
/// with one call.
const DIRECT_ENCRYPT_BYTES: usize = 4096;

/// Ciphertext waiting for the socket. The buffer is reused while messages keep coming (its
/// bytes are overwritten, not allocated and zeroed again) and released once everything is
/// written and nothing more is queued.
#[derive(Default)]
struct WriteBuffer {
    buf: Vec<u8>,
    /// First byte not yet written.
    start: usize,
    /// End of what was appended.
    end: usize,
}

impl WriteBuffer {
    fn len(&self) -> usize {
        self.end - self.start
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// `n` bytes were written.
    fn advance(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room for `n` more bytes at the end; what was there before is unspecified.
    fn append(&mut self, n: usize) -> &mut [u8] {
        if self.buf.capacity() == 0
            && let Some(spare) = SPARE_WRITE_BUFFER.with(|s| s.borrow_mut().take())
        {
            self.buf = spare;
        }
        if self.end + n > self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end + n > self.buf.len() {
            self.buf.resize(self.end + n, 0);
        }
        let at = self.end;
        self.end += n;
        &mut self.buf[at..self.end]
    }

    /// The last `n` bytes appended.
    fn last(&mut self, n: usize) -> &mut [u8] {
        &mut self.buf[self.end - n..self.end]
    }

    /// Appends all of `whole`: when nothing is waiting, by taking the buffer itself (and
    /// handing back the one it replaces, for reuse); otherwise by copying it.
    fn take_whole(&mut self, whole: Vec<u8>) -> Vec<u8> {
        if self.is_empty() {
            let end = whole.len();
            let previous = std::mem::replace(&mut self.buf, whole);
            self.start = 0;
            self.end = end;
            return previous;
        }
        self.append(whole.len()).copy_from_slice(&whole);
        whole
    }

    /// The allocation held (0 when released).
    fn held(&self) -> usize {
        self.buf.capacity()
    }

    /// Releases the buffer (to the thread's spare when that is free and it is not large).
    fn release(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        *self = Self::default();
        if buf.capacity() > 0 && buf.capacity() <= MAX_SPARE_WRITE_BUFFER {
            SPARE_WRITE_BUFFER.with(|s| {
                let mut s = s.borrow_mut();
                if s.is_none() {
                    *s = Some(buf);
                }
            });
        }
    }
}

/// Whether the protocol wants `message` stamped with its send time as it leaves the queue.
fn is_timed(message: &Message) -> bool {
    matches!(
        message,
        Message::CurrentTimeRequest(_) | Message::CurrentTimeReply(_)
    )
}

/// A large frame being encrypted on the blocking pool: the stream and the buffer come back
/// with the ciphertext.
/// The stream, the ciphertext, whether it worked, and the message's data (freed back on the
/// connection's own thread, not on the one encrypting).
type Encrypted = (CipherStream, Vec<u8>, Result<(), FrameError>, Vec<u8>);
type Encrypting = tokio::task::JoinHandle<Encrypted>;

/// One established connection's state.
struct Connection {
    peer: PeerId,
    stream: TcpStream,
    /// The sending stream; `None` while lent out for a large frame (`encrypting`).
    encryptor: Option<CipherStream>,
    /// A large frame being encrypted off the runtime's workers.
    encrypting: Option<Encrypting>,
    /// A buffer for the next large frame (the last one's, once written), kept while large
    /// messages keep coming.
    spare: Vec<u8>,
    decoder: SecureDecoder,
    /// Bytes received and not yet returned as frames (see [`ReadBuffer`]).
    rx: BytesMut,
    link: Arc<Link>,
    clock: Clock,
    /// Whether bytes are still read (not after the end of the stream, an error, or the stop).
    reading: bool,
    /// Bytes read and not reported yet: they go with the event that hands over the last
    /// message they completed.
    read_unreported: usize,
    /// Complete frames still in the receive buffer (the last event was full).
    frames_left: bool,
    /// A protocol error to report after the messages before it.
    error: Option<String>,
    /// `Closed` to report after everything before it.
    closed: bool,
    /// The next event, waiting for room in the link's queue.
    held: Option<Event>,
    /// Messages taken from the link, not yet encoded.
    queue: VecDeque<Message>,
    /// Ciphertext not yet written.
    out: WriteBuffer,
    /// Bytes encoded and bytes written since the channel was established.
    encoded: u64,
    written: u64,
    /// Where each batch of whole messages ends in the stream of encoded bytes.
    batch_ends: VecDeque<u64>,
    /// End of the last batch reported as sent.
    sent_reported: u64,
    /// When the socket last took bytes (or `out` last went from empty to not).
    write_progress: Instant,
}

/// Why encoding stopped the connection: the cipher refused a frame, which never happens with
/// frames this module builds; the stream would no longer be valid.
#[derive(Debug, thiserror::Error)]
#[error("cannot encrypt: {0}")]
struct EncodeError(String);

impl Connection {
    fn new(
        peer: PeerId,
        stream: TcpStream,
        encryptor: CipherStream,
        decoder: SecureDecoder,
        rx: BytesMut,
        link: Arc<Link>,
        clock: Clock,
    ) -> Self {
        Self {
            peer,
            stream,
            encryptor: Some(encryptor),
            encrypting: None,
            spare: Vec::new(),
            decoder,
            rx,
            link,
            clock,
            reading: true,
            read_unreported: 0,
            frames_left: false,
            error: None,
            closed: false,
            held: None,
            queue: VecDeque::new(),
            out: WriteBuffer::default(),
            encoded: 0,
            written: 0,
            batch_ends: VecDeque::new(),
            sent_reported: 0,
            write_progress: Instant::now(),
        }
    }

    async fn serve(mut self) {
        let mut close_by: Option<Instant> = None;
        loop {
            if close_by.is_none() && self.link.is_stopped() {
                // The node is done with us: read nothing more, flush, close.
                close_by = Some(Instant::now() + CLOSE_FLUSH);
                self.stop_reading();
                self.held = None;
            }
            if let Err(e) = self.fill() {
                debug!(peer = self.peer, error = %e, "dropping the connection");
                return self.give_up(close_by.is_some()).await;
            }
            if let Err(e) = self.write_now() {
                debug!(peer = self.peer, error = %e, "write failed");
                return self.give_up(close_by.is_some()).await;
            }
            if close_by.is_some() {
                if self.out.is_empty() && self.queue.is_empty() && self.encrypting.is_none() {
                    self.link.take_outgoing(&mut self.queue);
                    if self.queue.is_empty() {
                        let _ = self.stream.shutdown().await;
                        return;
                    }
                }
            } else {
                self.report_ready();
            }
            if self.out.is_empty()
                && self.encryptor.is_some()
                && (!self.queue.is_empty() || self.link.has_outgoing())
            {
                // More to encode and the socket took everything: go round without waiting,
                // within the scheduler's budget. (The link's queue is looked at too: its
                // wake-up may have been spent while nothing could be encoded.)
                tokio::task::consume_budget().await;
                continue;
            }
            let want_read = self.reading
                && self.held.is_none()
                && self.read_unreported == 0
                && !self.frames_left
                && self.link.has_room();
            let want_write = !self.out.is_empty();
            let write_deadline = self.write_progress + WRITE_TIMEOUT;
            let close_deadline = close_by.unwrap_or(write_deadline);
            trace!(
                peer = self.peer,
                want_read,
                want_write,
                out = self.out.len(),
                queue = self.queue.len(),
                encrypting = self.encrypting.is_some(),
                held = self.held.is_some(),
                unreported = self.read_unreported,
                frames_left = self.frames_left,
                rx = self.rx.len(),
                "waiting"
            );
            tokio::select! {
                r = self.stream.readable(), if want_read => match r {
                    Ok(()) => self.read_now(),
                    Err(e) => self.end_of_stream(Some(e)),
                },
                r = self.stream.writable(), if want_write => {
                    if let Err(e) = r {
                        debug!(peer = self.peer, error = %e, "socket failed");
                        return self.give_up(close_by.is_some()).await;
                    }
                }
                done = async {
                    match self.encrypting.as_mut() {
                        Some(task) => task.await,
                        None => std::future::pending().await,
                    }
                }, if self.encrypting.is_some() => {
                    self.encrypting = None;
                    if let Err(e) = self.encrypted(done) {
                        debug!(peer = self.peer, error = %e, "dropping the connection");
                        return self.give_up(close_by.is_some()).await;
                    }
                }
                () = self.link.changed() => {}
                () = tokio::time::sleep_until(write_deadline), if want_write => {
                    debug!(peer = self.peer, "the peer took no bytes for {WRITE_TIMEOUT:?}");
                    return self.give_up(close_by.is_some()).await;
                }
                () = tokio::time::sleep_until(close_deadline), if close_by.is_some() => {
                    debug!(peer = self.peer, "did not flush in time; dropping the socket");
                    return;
                }
            }
        }
    }

    /// Encodes queued messages into `out` until it holds [`WRITE_BATCH_BYTES`]. Small frames
    /// are framed back to back and encrypted with one call; a frame of
    /// [`DIRECT_ENCRYPT_BYTES`] or more is encrypted straight from the message; one of
    /// [`OFFLOAD_ENCRYPT_BYTES`] or more is encrypted on the blocking pool (meanwhile nothing
    /// more is encoded, and the connection goes on writing and reading).
    fn fill(&mut self) -> Result<(), EncodeError> {
        let Some(encryptor) = self.encryptor.as_mut() else {
            return Ok(());
        };
        let start = self.encoded;
        let was_empty = self.out.is_empty();
        // Plaintext frames at the end of `out`, encrypted together when the batch ends (or
        // before a frame encrypted on its own, to keep the stream in order).
        let mut plain = 0usize;
        let mut offload = None;
        loop {
            if self.queue.is_empty() {
                self.link.take_outgoing(&mut self.queue);
            }
            // A timed message is stamped as late as it can be: while bytes of an earlier
            // write wait for the socket it stays queued; it leaves the queue (and is
            // stamped) in a batch that is written at once.
            let ahead =
                match self.queue.front() {
                    None => break,
                    Some(m) if is_timed(m) && !was_empty => break,
                    // A large frame is encrypted while the last one is still being written.
                    Some(
                        Message::Trx(d) | Message::Block(d) | Message::Unknown { data: d, .. },
                    ) if padded_frame_len(d.len()) >= OFFLOAD_ENCRYPT_BYTES => ENCRYPT_AHEAD_BYTES,
                    Some(_) => WRITE_BATCH_BYTES,
                };
            if self.out.len() >= ahead {
                break;
            }
            let Some(mut message) = self.queue.pop_front() else {
                break;
            };
            // The reference stamps these fields when the message leaves the queue.
            match &mut message {
                Message::CurrentTimeRequest(m) => m.request_sent_time = self.clock.now(),
                Message::CurrentTimeReply(m) => m.reply_transmitted_time = self.clock.now(),
                _ => {}
            }
            let msg_type = message.msg_type();
            let data = match message {
                Message::Trx(d) | Message::Block(d) | Message::Unknown { data: d, .. } => d,
                other => other.to_data(),
            };
            if data.len() > MAX_MESSAGE_SIZE {
                debug!(
                    peer = self.peer,
                    size = data.len(),
                    "message too large to send"
                );
                continue;
            }
            let n = padded_frame_len(data.len());
            if n >= OFFLOAD_ENCRYPT_BYTES {
                offload = Some((msg_type, data));
                break;
            }
            if n >= DIRECT_ENCRYPT_BYTES {
                encrypt_in_place(encryptor, self.out.last(plain)).map_err(encode_error)?;
                plain = 0;
                encrypt_frame_into(encryptor, msg_type, &data, self.out.append(n))
                    .map_err(encode_error)?;
            } else {
                frame_into(msg_type, &data, self.out.append(n)).map_err(encode_error)?;
                plain += n;
            }
            self.encoded += n as u64;
        }
        encrypt_in_place(encryptor, self.out.last(plain)).map_err(encode_error)?;
        if self.encoded > start {
            self.batch_ends.push_back(self.encoded);
            if was_empty {
                self.write_progress = Instant::now();
            }
        }
        if let Some((msg_type, data)) = offload
            && let Some(mut encryptor) = self.encryptor.take()
        {
            let mut buf = std::mem::take(&mut self.spare);
            buf.resize(padded_frame_len(data.len()), 0);
            self.encrypting = Some(tokio::task::spawn_blocking(move || {
                let done = encrypt_frame_into(&mut encryptor, msg_type, &data, &mut buf);
                (encryptor, buf, done, data)
            }));
        }
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            self.queue = VecDeque::new();
        }
        Ok(())
    }

    /// A large frame came back from the blocking pool: its ciphertext joins `out` (taking
    /// the buffer as it is when nothing is waiting before it).
    fn encrypted(
        &mut self,
        done: Result<Encrypted, tokio::task::JoinError>,
    ) -> Result<(), EncodeError> {
        let (encryptor, buf, result, data) = done.map_err(|e| EncodeError(e.to_string()))?;
        drop(data);
        result.map_err(encode_error)?;
        self.encryptor = Some(encryptor);
        let n = buf.len();
        let was_empty = self.out.is_empty();
        self.spare = self.out.take_whole(buf);
        self.encoded += n as u64;
        self.batch_ends.push_back(self.encoded);
        if was_empty {
            self.write_progress = Instant::now();
        }
        Ok(())
    }

    /// Writes what the socket takes now, without waiting.
    fn write_now(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            match self.stream.try_write(self.out.pending()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out.advance(n);
                    self.written += n as u64;
                    self.write_progress = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.out.is_empty() && self.queue.is_empty() && self.encrypting.is_none() {
            // Idle: nothing is kept for the next message.
            if self.out.held() > 0 {
                self.out.release();
            }
            if self.spare.capacity() > 0 {
                self.spare = Vec::new();
            }
        }
        Ok(())
    }

    /// Bytes of whole messages written and not yet reported.
    fn take_sent(&mut self) -> usize {
        let mut done = self.sent_reported;
        while let Some(&end) = self.batch_ends.front() {
            if end > self.written {
                break;
            }
            done = end;
            self.batch_ends.pop_front();
        }
        if self.batch_ends.is_empty() && self.batch_ends.capacity() > 0 {
            self.batch_ends = VecDeque::new();
        }
        let bytes = (done - self.sent_reported) as usize;
        self.sent_reported = done;
        bytes
    }

    /// Hands the node task every event it has room for: bytes sent, messages read (in
    /// order), then a protocol error or the end of the stream.
    fn report_ready(&mut self) {
        loop {
            if let Some(event) = self.held.take() {
                match self.link.try_report(event) {
                    Report::Taken => {}
                    Report::Full(event) => {
                        self.held = Some(event);
                        return;
                    }
                    Report::Stopped => return,
                }
            }
            let sent = self.take_sent();
            let next = if sent > 0 {
                Some(Event::Sent {
                    peer: self.peer,
                    bytes: sent,
                })
            } else if self.read_unreported > 0 || self.frames_left {
                match self.next_batch() {
                    Some(event) => Some(event),
                    // Nothing to hand over from the buffer: look at what comes after it.
                    None => continue,
                }
            } else if let Some(error) = self.error.take() {
                self.closed = true;
                Some(protocol_error(self.peer, error))
            } else if std::mem::take(&mut self.closed) {
                Some(Event::Closed { peer: self.peer })
            } else {
                None
            };
            match next {
                Some(event) => self.held = Some(event),
                None => return,
            }
        }
    }

    /// The next event of messages from the receive buffer: up to the per-event limits, and
    /// with the bytes read and `in_flight` once no complete frame is left.
    fn next_batch(&mut self) -> Option<Event> {
        // Room for as many messages as the buffer may hold (one per 128 bytes), so the
        // vector is not regrown message by message.
        let mut messages =
            Vec::with_capacity((self.rx.len() / 128).clamp(1, MAX_MESSAGES_PER_EVENT));
        let mut size = 0usize;
        let mut complete = false;
        while messages.len() < MAX_MESSAGES_PER_EVENT {
            if !messages.is_empty()
                && self
                    .decoder
                    .front_frame_len(&self.rx)
                    .is_some_and(|len| size + len > MAX_EVENT_BYTES)
            {
                break;
            }
            match self.decoder.decode_frame(&mut self.rx) {
                Ok(Some(frame)) => {
                    size += padded_frame_len(frame.data.len());
                    if self.rx.is_empty() && frame.data.len() > READ_CHUNK {
                        // A large message received into a buffer of its own, with nothing
                        // after it: let the message have the buffer (no copy).
                        self.rx = BytesMut::new();
                    }
                    match frame.into_message() {
                        Ok(m) => messages.push(m),
                        Err(e) => {
                            self.fail(e);
                            break;
                        }
                    }
                }
                Ok(None) => {
                    complete = true;
                    break;
                }
                Err(e) => {
                    self.fail(e);
                    break;
                }
            }
        }
        let peer = self.peer;
        if self.error.is_some() {
            // The messages before the bad frame still count.
            return (!messages.is_empty()).then_some(Event::Messages {
                peer,
                messages,
                bytes: 0,
                in_flight: 0,
            });
        }
        self.frames_left = !complete;
        if !complete {
            return Some(Event::Messages {
                peer,
                messages,
                bytes: 0,
                in_flight: 0,
            });
        }
        let front = self.decoder.front_frame_len(&self.rx);
        ReadBuffer::settle(&mut self.rx, front);
        let bytes = std::mem::take(&mut self.read_unreported);
        if messages.is_empty() && bytes == 0 {
            return None;
        }
        Some(Event::Messages {
            peer,
            messages,
            bytes,
            in_flight: self.rx.len(),
        })
    }

    /// The peer broke the protocol: nothing more is read; the error is reported after the
    /// messages before it, then the connection is reported closed.
    fn fail(&mut self, error: impl std::fmt::Display) {
        self.error = Some(error.to_string());
        self.stop_reading();
    }

    /// Reads once, without waiting, into the receive buffer.
    ///
    /// A read that leaves room in the buffer has emptied the socket's receive queue, so the
    /// socket's readiness is cleared at once instead of by one more read answering
    /// `WouldBlock` (as tokio's own `poll_read` does): the read runs inside `try_io`, which
    /// takes its readiness snapshot before the read and clears only that snapshot, so bytes
    /// arriving after the read still wake the connection.
    fn read_now(&mut self) {
        let front = self.decoder.front_frame_len(&self.rx);
        ReadBuffer::reserve(&mut self.rx, front);
        let room = self.rx.capacity() - self.rx.len();
        let (stream, rx) = (&self.stream, &mut self.rx);
        let mut drained = 0;
        let read = stream.try_io(Interest::READABLE, || match stream.try_read_buf(rx) {
            Ok(n) if n > 0 && n < room => {
                drained = n;
                Err(io::ErrorKind::WouldBlock.into())
            }
            other => other,
        });
        match read {
            Ok(0) => self.end_of_stream(None),
            Ok(n) => self.read_unreported += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && drained > 0 => {
                self.read_unreported += drained;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                ReadBuffer::settle(&mut self.rx, front);
            }
            Err(e) => self.end_of_stream(Some(e)),
        }
    }

    /// The peer closed the socket (or it failed): report it after everything before it.
    fn end_of_stream(&mut self, error: Option<io::Error>) {
        if let Some(e) = error {
            debug!(peer = self.peer, error = %e, "read failed");
        }
        self.stop_reading();
        self.closed = true;
    }

    fn stop_reading(&mut self) {
        self.reading = false;
        self.frames_left = false;
        self.read_unreported = 0;
        self.rx = BytesMut::new();
    }

    /// The socket cannot be written: report what is left and the close (unless the node
    /// already stopped the connection), then drop the socket.
    async fn give_up(mut self, stopped: bool) {
        if stopped {
            return;
        }
        self.stop_reading();
        self.closed = true;
        loop {
            self.report_ready();
            if self.held.is_none() {
                return;
            }
            self.link.changed().await;
            if self.link.is_stopped() {
                return;
            }
        }
    }
}

fn encode_error(e: impl std::fmt::Display) -> EncodeError {
    EncodeError(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::SecureCodec;

    #[test]
    fn an_idle_connection_holds_no_read_buffer() {
        let mut rx = BytesMut::new();
        // Bytes arrive: a chunk is taken for the read.
        ReadBuffer::reserve(&mut rx, None);
        assert!(rx.capacity() >= READ_CHUNK);
        // The read completed whole frames and nothing is left: the chunk is released.
        ReadBuffer::settle(&mut rx, None);
        assert_eq!(rx.capacity(), 0);
        // A read that found nothing (spurious readiness) gives the chunk back too; the next
        // read on this thread reuses it instead of allocating.
        ReadBuffer::reserve(&mut rx, None);
        let chunk = rx.as_ptr();
        ReadBuffer::settle(&mut rx, None);
        assert_eq!(rx.capacity(), 0);
        let mut other = BytesMut::new();
        ReadBuffer::reserve(&mut other, None);
        assert_eq!(other.as_ptr(), chunk, "the thread's spare chunk");
        // A chunk still shared with a frame being decoded is not kept for reuse.
        other.extend_from_slice(&[1u8; 32]);
        let frame = other.split_to(32).freeze();
        ReadBuffer::settle(&mut other, None);
        let mut third = BytesMut::new();
        ReadBuffer::reserve(&mut third, None);
        assert_ne!(third.as_ptr(), chunk);
        drop(frame);
    }

    #[test]
    fn a_small_partial_message_keeps_only_its_own_size() {
        let mut rx = BytesMut::new();
        ReadBuffer::reserve(&mut rx, None);
        rx.extend_from_slice(&[7u8; 5000]);
        // Frames were taken off the front; 40 bytes of a 112-byte frame remain.
        let _ = rx.split_to(5000 - 40);
        ReadBuffer::settle(&mut rx, Some(112));
        assert_eq!(rx.len(), 40);
        assert!(rx.capacity() <= 112, "holds {} bytes", rx.capacity());
        assert_eq!(&rx[..], &[7u8; 40][..]);
        // Header not in yet: only the bytes themselves.
        let mut rx = BytesMut::with_capacity(READ_CHUNK);
        rx.extend_from_slice(&[1u8; 10]);
        ReadBuffer::settle(&mut rx, None);
        assert!(rx.capacity() <= 16);
        // The next read gets a whole chunk again, keeping the partial bytes.
        ReadBuffer::reserve(&mut rx, None);
        assert!(rx.capacity() - rx.len() >= READ_CHUNK);
        assert_eq!(&rx[..], &[1u8; 10][..]);
    }

    #[test]
    fn a_large_message_is_read_into_a_buffer_of_its_size() {
        let frame = padded_frame_len(1_500_000);
        let mut rx = BytesMut::new();
        ReadBuffer::reserve(&mut rx, None);
        rx.extend_from_slice(&[0u8; 1000]);
        // Its header is in: the rest of it is reserved, not more.
        ReadBuffer::reserve(&mut rx, Some(frame));
        assert!(rx.capacity() >= frame);
        assert!(rx.capacity() < 2 * frame);
        let cap = rx.capacity();
        // Kept as it is while the message arrives; no further growth.
        ReadBuffer::settle(&mut rx, Some(frame));
        assert_eq!(rx.capacity(), cap);
        rx.extend_from_slice(&vec![0u8; frame - 1000 - 16]);
        ReadBuffer::reserve(&mut rx, Some(frame));
        assert_eq!(rx.capacity(), cap, "16 bytes to go fit in what is there");
    }

    #[test]
    fn the_write_buffer_reuses_its_bytes_and_is_released_when_idle() {
        let mut out = WriteBuffer::default();
        out.append(100).fill(1);
        out.append(50).fill(2);
        assert_eq!(out.len(), 150);
        out.advance(120);
        assert_eq!(out.pending(), &[2u8; 30][..]);
        // Room at the end is made by moving what waits to the front, not by growing.
        let held = out.held();
        out.append(100).fill(3);
        assert_eq!(out.held(), held);
        assert_eq!(out.len(), 130);
        out.advance(130);
        assert!(out.is_empty());
        // A whole buffer is taken as it is when nothing waits, and the old one handed back.
        let previous = out.take_whole(vec![9u8; 64]);
        assert_eq!(previous.capacity(), held);
        assert_eq!(out.pending(), &[9u8; 64][..]);
        // Something waits: the next whole buffer is copied behind it.
        let back = out.take_whole(vec![8u8; 16]);
        assert_eq!(back, vec![8u8; 16]);
        assert_eq!(out.len(), 80);
        out.advance(80);
        out.release();
        assert_eq!(out.held(), 0);
    }

    #[test]
    fn batched_frames_decode_as_sent() {
        // What `fill` does: small frames back to back, encrypted with one call; large ones
        // encrypted on their own; the receiving codec sees one valid stream.
        let key = [4u8; 32];
        let iv = [5u8; 16];
        let (mut encryptor, _) = SecureCodec::from_key_iv(&key, &iv).into_parts();
        let mut rx_codec = SecureCodec::from_key_iv(&key, &iv);
        let mut out = WriteBuffer::default();
        let sizes = [0usize, 100, 5000, 17, 300_000, 3];
        let mut plain = 0;
        for (i, n) in sizes.iter().enumerate() {
            let data = vec![i as u8; *n];
            let len = padded_frame_len(*n);
            if len >= DIRECT_ENCRYPT_BYTES {
                encrypt_in_place(&mut encryptor, out.last(plain)).unwrap();
                plain = 0;
                encrypt_frame_into(&mut encryptor, 5050, &data, out.append(len)).unwrap();
            } else {
                frame_into(5050, &data, out.append(len)).unwrap();
                plain += len;
            }
        }
        encrypt_in_place(&mut encryptor, out.last(plain)).unwrap();
        let mut wire = BytesMut::from(out.pending());
        for (i, n) in sizes.iter().enumerate() {
            let frame = rx_codec.decode_frame(&mut wire).unwrap().unwrap();
            assert_eq!(frame.data.len(), *n);
            assert!(frame.data.iter().all(|b| *b == i as u8));
        }
        assert!(wire.is_empty());
    }
}
