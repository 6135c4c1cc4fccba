//! One connection's tasks: connect or accept, the key exchange, then a reader and a writer.
//!
//! The reader decrypts and decodes and hands messages to the node task; the writer takes
//! messages from the node task, stamps send times where the protocol wants them, encrypts and
//! writes. Neither decides anything.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::clock::Clock;
use super::{Event, Outgoing};
use crate::crypto::keys::PUBLIC_KEY_SIZE;
use crate::peer::PeerId;
use crate::wire::Message;
use crate::wire::channel::SecureChannel;
use crate::wire::frame::SecureCodec;

/// Bytes read from a socket at once.
pub const READ_CHUNK: usize = 64 * 1024;
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
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    channel: SecureChannel,
    local: SocketAddr,
}

/// Runs a connection until the socket closes or the node stops it. Reports to `events`; takes
/// messages to send from `outgoing`.
///
/// `stop` (sent, or dropped with the node's handle) is obeyed at every stage: while dialing,
/// during the key exchange, and while reading. After it nothing more is read; the writer
/// flushes what the node queued for at most [`CLOSE_FLUSH`], then the socket is dropped.
pub async fn run(
    peer: PeerId,
    target: Target,
    events: mpsc::Sender<Event>,
    outgoing: mpsc::UnboundedReceiver<Outgoing>,
    mut stop: oneshot::Receiver<()>,
    clock: Clock,
) {
    let established = tokio::select! {
        e = establish(peer, target, &events) => e,
        _ = &mut stop => return,
    };
    let Some(Established {
        reader,
        writer,
        channel,
        local,
    }) = established
    else {
        return;
    };
    let Some(keys) = channel.session_keys().cloned() else {
        return;
    };
    let event = Event::Established {
        peer,
        local,
        digest: keys.hello_digest(),
    };
    let sent = tokio::select! {
        r = events.send(event) => r.is_ok(),
        _ = &mut stop => false,
    };
    if !sent {
        return;
    }
    let codec = SecureCodec::for_session(&keys);
    let mut write_task = tokio::spawn(write_loop(
        peer,
        writer,
        codec,
        outgoing,
        events.clone(),
        clock,
    ));
    tokio::select! {
        () = read_loop(peer, reader, channel, &events) => {
            report(&events, Event::Closed { peer }).await;
            // The writer ends when the node drops its sender.
            let _ = write_task.await;
        }
        // The node closed the connection: stop reading, let the writer flush and finish.
        _ = &mut stop => {
            if tokio::time::timeout(CLOSE_FLUSH, &mut write_task).await.is_err() {
                debug!(peer, "writer did not flush in time; dropping the socket");
                write_task.abort();
            }
        }
    }
}

/// Connects (or takes the accepted socket), sends our key and reads exactly the peer's 33
/// bytes, reporting each read. Nothing beyond the key is read before the channel is
/// established, so a socket in the key exchange holds no read buffer. `None` once the failure
/// is reported.
async fn establish(
    peer: PeerId,
    target: Target,
    events: &mpsc::Sender<Event>,
) -> Option<Established> {
    let stream = match target {
        Target::Accepted(s) => s,
        Target::Dial(addr) => {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    report(events, dial_failed(peer, e)).await;
                    return None;
                }
                Err(_) => {
                    report(events, dial_failed(peer, "connect timed out")).await;
                    return None;
                }
            }
        }
    };
    let _ = stream.set_nodelay(true);
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let (mut reader, mut writer) = stream.into_split();
    let mut channel = SecureChannel::new();
    // Both sides send their key first; nobody waits.
    if let Err(e) = writer.write_all(channel.our_key()).await {
        report(events, dial_failed(peer, e)).await;
        return None;
    }
    let mut key = [0u8; PUBLIC_KEY_SIZE];
    let mut got = 0;
    while !channel.is_established() {
        let n = match key.get_mut(got..) {
            Some(rest) if !rest.is_empty() => reader.read(rest).await.unwrap_or(0),
            _ => 0,
        };
        if n == 0 {
            let error = dial_failed(peer, "closed during the key exchange");
            report(events, error).await;
            return None;
        }
        let chunk = &key[got..got + n];
        got += n;
        if let Err(e) = channel.receive(chunk) {
            // An invalid key: the node counts it against the peer's address.
            report(events, protocol_error(peer, e)).await;
            return None;
        }
        let in_flight = if channel.is_established() { 0 } else { got };
        report(
            events,
            Event::Bytes {
                peer,
                bytes: n,
                in_flight,
            },
        )
        .await;
    }
    Some(Established {
        reader,
        writer,
        channel,
        local,
    })
}

/// Hands `event` to the node task. A failed send means the node task is gone and nobody is
/// left to tell, so the caller goes on (or returns) the same either way.
async fn report(events: &mpsc::Sender<Event>, event: Event) {
    let _ = events.send(event).await;
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

/// Reads, decrypts and decodes until the socket closes or breaks the protocol. For each read:
/// the messages it completed, then the bytes read and how many of a message still arriving
/// remain buffered.
async fn read_loop(
    peer: PeerId,
    mut reader: OwnedReadHalf,
    mut channel: SecureChannel,
    events: &mpsc::Sender<Event>,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) => return,
            Err(e) => {
                debug!(peer, error = %e, "read failed");
                return;
            }
            Ok(n) => n,
        };
        if let Err(e) = channel.receive(&buf[..n]) {
            return report(events, protocol_error(peer, e)).await;
        }
        loop {
            match channel.next_frame() {
                Ok(Some(frame)) => match frame.message() {
                    Ok(message) => {
                        if events.send(Event::Message { peer, message }).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => return report(events, protocol_error(peer, e)).await,
                },
                Ok(None) => break,
                Err(e) => return report(events, protocol_error(peer, e)).await,
            }
        }
        let bytes = Event::Bytes {
            peer,
            bytes: n,
            in_flight: channel.buffered(),
        };
        if events.send(bytes).await.is_err() {
            return;
        }
    }
}

async fn write_loop(
    peer: PeerId,
    mut writer: OwnedWriteHalf,
    mut codec: SecureCodec,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    events: mpsc::Sender<Event>,
    clock: Clock,
) {
    let mut out = BytesMut::new();
    while let Some(item) = outgoing.recv().await {
        let mut message = match item {
            Outgoing::Message(m) => m,
            Outgoing::Close => break,
        };
        // The reference stamps these fields when the message leaves the queue.
        match &mut message {
            Message::CurrentTimeRequest(m) => m.request_sent_time = clock.now(),
            Message::CurrentTimeReply(m) => m.reply_transmitted_time = clock.now(),
            _ => {}
        }
        out.clear();
        if let Err(e) = codec.encode_message(&message, &mut out) {
            debug!(peer, error = %e, "cannot encode message");
            continue;
        }
        match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&out)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => break,
        }
        if events
            .send(Event::Sent {
                peer,
                bytes: out.len(),
            })
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = writer.shutdown().await;
}
