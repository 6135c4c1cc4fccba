//! One connection's task: connect or accept, the key exchange, then one loop that reads,
//! decrypts and decodes what the peer sends, and encodes, encrypts and writes what the node
//! queued on the connection's [`Link`]. It decides nothing.
//!
//! **Memory.** An idle established connection holds its socket, its two cipher states and this
//! task, and no buffer: bytes are read into a buffer taken when they arrive and kept only
//! while a message is partly received ([`ReadBuffer`]), and queued messages are encoded into
//! a buffer released once it is written.
//!
//! **Reading.** The messages a read completes go to the node task in events of at most
//! [`MAX_MESSAGES_PER_EVENT`] messages and [`MAX_EVENT_BYTES`] (a larger message goes alone);
//! the last event of a read carries the bytes read and the bytes of a message still arriving
//! (`in_flight`). Nothing more is read while the link's event queue is full.
//!
//! **Writing.** Messages queued while the socket could take bytes are encoded back to back into
//! one buffer, up to [`WRITE_BATCH_BYTES`], and written together; a message queued on an idle
//! connection is written at once. Each [`Event::Sent`] counts whole messages written, so the
//! node core's queue accounting stays exact.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use super::Event;
use super::clock::Clock;
use super::fair::{Link, Report};
use crate::crypto::keys::PUBLIC_KEY_SIZE;
use crate::peer::PeerId;
use crate::wire::Message;
use crate::wire::channel::SecureChannel;
use crate::wire::frame::padded_frame_len;

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
/// A peer that accepts none of our bytes for this long is given up on.
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
}

/// Runs a connection until the socket closes or the node stops it. Reports to `link` and takes
/// the messages to send from it.
///
/// The node's stop ([`Link::stop`]) is obeyed at every stage: while dialing, during the key
/// exchange, and while reading. After it nothing more is read; what the node queued is
/// flushed for at most [`CLOSE_FLUSH`], then the socket is dropped.
pub async fn run(peer: PeerId, target: Target, link: Arc<Link>, clock: Clock) {
    let established = tokio::select! {
        e = establish(peer, target, &link) => e,
        () = link.stopped() => return,
    };
    let Some(Established {
        stream,
        channel,
        local,
    }) = established
    else {
        return;
    };
    let Some(digest) = channel.session_keys().map(|k| k.hello_digest()) else {
        return;
    };
    if !link.report(Event::Established {
        peer,
        local,
        digest,
    })
    .await
    {
        return;
    }
    Connection::new(peer, stream, channel, link, clock)
        .serve()
        .await;
}

/// Connects (or takes the accepted socket), sends our key and reads exactly the peer's 33
/// bytes, reporting each read. Nothing beyond the key is read before the channel is
/// established, so a socket in the key exchange holds no read buffer. `None` once the failure
/// is reported.
async fn establish(peer: PeerId, target: Target, link: &Arc<Link>) -> Option<Established> {
    let mut stream = match target {
        Target::Accepted(s) => s,
        Target::Dial(addr) => {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
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
    if let Err(e) = stream.write_all(channel.our_key()).await {
        link.report(dial_failed(peer, e)).await;
        return None;
    }
    let mut key = [0u8; PUBLIC_KEY_SIZE];
    let mut got = 0;
    while !channel.is_established() {
        let n = match key.get_mut(got..) {
            Some(rest) if !rest.is_empty() => stream.read(rest).await.unwrap_or(0),
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
        let in_flight = if channel.is_established() { 0 } else { got };
        let bytes = Event::Bytes {
            peer,
            bytes: n,
            in_flight,
        };
        if !link.report(bytes).await {
            return None;
        }
    }
    Some(Established {
        stream,
        channel,
        local,
    })
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

impl ReadBuffer {
    /// Makes room in `buf` for the next read; `front_frame` is the wire length of the frame
    /// at its front, when its header has arrived.
    pub fn reserve(buf: &mut BytesMut, front_frame: Option<usize>) {
        let want = match front_frame {
            Some(len) if len > READ_CHUNK => len.saturating_sub(buf.len()),
            _ => READ_CHUNK,
        };
        buf.reserve(want.max(1));
    }

    /// After the complete frames were taken off `buf`: releases it if empty; a small partial
    /// frame keeps a buffer of its own size instead of the chunk it arrived in.
    pub fn settle(buf: &mut BytesMut, front_frame: Option<usize>) {
        if buf.is_empty() {
            if buf.capacity() > 0 {
                *buf = BytesMut::new();
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

/// Whether the protocol wants `message` stamped with its send time as it leaves the queue.
fn is_timed(message: &Message) -> bool {
    matches!(
        message,
        Message::CurrentTimeRequest(_) | Message::CurrentTimeReply(_)
    )
}

/// One established connection's state.
struct Connection {
    peer: PeerId,
    stream: TcpStream,
    channel: SecureChannel,
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
    out: BytesMut,
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

impl Connection {
    fn new(
        peer: PeerId,
        stream: TcpStream,
        channel: SecureChannel,
        link: Arc<Link>,
        clock: Clock,
    ) -> Self {
        Self {
            peer,
            stream,
            channel,
            link,
            clock,
            reading: true,
            read_unreported: 0,
            frames_left: false,
            error: None,
            closed: false,
            held: None,
            queue: VecDeque::new(),
            out: BytesMut::new(),
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
            self.fill();
            if let Err(e) = self.write_now() {
                debug!(peer = self.peer, error = %e, "write failed");
                return self.give_up(close_by.is_some()).await;
            }
            if close_by.is_some() {
                if self.out.is_empty() && self.queue.is_empty() {
                    self.link.take_outgoing(&mut self.queue);
                    if self.queue.is_empty() {
                        let _ = self.stream.shutdown().await;
                        return;
                    }
                }
            } else {
                self.report_ready();
            }
            if self.out.is_empty() && !self.queue.is_empty() {
                // More to encode and the socket took everything: go round without waiting,
                // within the scheduler's budget.
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

    /// Encodes queued messages into `out` until it holds [`WRITE_BATCH_BYTES`].
    fn fill(&mut self) {
        let start = self.encoded;
        let was_empty = self.out.is_empty();
        while self.out.len() < WRITE_BATCH_BYTES {
            if self.queue.is_empty() {
                self.link.take_outgoing(&mut self.queue);
            }
            // A timed message is stamped as late as it can be: it waits until the bytes ahead
            // of it are written, then leaves the queue.
            match self.queue.front() {
                None => break,
                Some(m) if is_timed(m) && !self.out.is_empty() => break,
                Some(_) => {}
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
            let before = self.out.len();
            if let Err(e) = self.channel.send(&message, &mut self.out) {
                debug!(peer = self.peer, error = %e, "cannot encode message");
                continue;
            }
            self.encoded += (self.out.len() - before) as u64;
        }
        if self.encoded > start {
            self.batch_ends.push_back(self.encoded);
            if was_empty {
                self.write_progress = Instant::now();
            }
        }
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            self.queue = VecDeque::new();
        }
    }

    /// Writes what the socket takes now, without waiting; notes the batches now written.
    fn write_now(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            match self.stream.try_write(&self.out) {
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
        if self.out.is_empty() && self.out.capacity() > 0 && self.queue.is_empty() {
            self.out = BytesMut::new();
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

    /// Hands the node task every event it has room for: messages read (in order), bytes
    /// sent, then a protocol error or the end of the stream.
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
        let mut messages = Vec::new();
        let mut size = 0usize;
        let mut complete = false;
        while messages.len() < MAX_MESSAGES_PER_EVENT {
            if !messages.is_empty()
                && self
                    .channel
                    .front_frame_len()
                    .is_some_and(|len| size + len > MAX_EVENT_BYTES)
            {
                break;
            }
            match self.channel.next_frame() {
                Ok(Some(frame)) => match frame.message() {
                    Ok(m) => {
                        size += padded_frame_len(frame.data.len());
                        messages.push(m);
                    }
                    Err(e) => {
                        self.fail(e);
                        break;
                    }
                },
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
        let front = self.channel.front_frame_len();
        ReadBuffer::settle(self.channel.receive_buffer(), front);
        let bytes = std::mem::take(&mut self.read_unreported);
        if messages.is_empty() && bytes == 0 {
            return None;
        }
        Some(Event::Messages {
            peer,
            messages,
            bytes,
            in_flight: self.channel.buffered(),
        })
    }

    /// The peer broke the protocol: nothing more is read; the error is reported after the
    /// messages before it, then the connection is reported closed.
    fn fail(&mut self, error: impl std::fmt::Display) {
        self.error = Some(error.to_string());
        self.stop_reading();
    }

    /// Reads once, without waiting, into the receive buffer.
    fn read_now(&mut self) {
        let front = self.channel.front_frame_len();
        let buf = self.channel.receive_buffer();
        ReadBuffer::reserve(buf, front);
        match self.stream.try_read_buf(buf) {
            Ok(0) => self.end_of_stream(None),
            Ok(n) => self.read_unreported += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                ReadBuffer::settle(self.channel.receive_buffer(), front);
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
        *self.channel.receive_buffer() = BytesMut::new();
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
