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

/// Where a connection comes from.
pub enum Target {
    Dial(SocketAddr),
    Accepted(TcpStream),
}

/// Runs a connection until the socket closes. Reports to `events`; takes messages to send from
/// `outgoing`.
pub async fn run(
    peer: PeerId,
    target: Target,
    events: mpsc::Sender<Event>,
    outgoing: mpsc::UnboundedReceiver<Outgoing>,
    stop: oneshot::Receiver<()>,
    clock: Clock,
) {
    let stream = match target {
        Target::Accepted(s) => s,
        Target::Dial(addr) => {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return report(&events, dial_failed(peer, e)).await,
                Err(_) => return report(&events, dial_failed(peer, "connect timed out")).await,
            }
        }
    };
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok();
    let (mut reader, mut writer) = stream.into_split();
    let mut channel = SecureChannel::new();
    // Both sides send their key first; nobody waits.
    if let Err(e) = writer.write_all(channel.our_key()).await {
        return report(&events, dial_failed(peer, e)).await;
    }
    let mut buf = vec![0u8; READ_CHUNK];
    while !channel.is_established() {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let error = dial_failed(peer, "closed during the key exchange");
                return report(&events, error).await;
            }
            Ok(n) => {
                report(&events, Event::Bytes { peer, bytes: n }).await;
                if let Err(e) = channel.receive(&buf[..n]) {
                    // An invalid key: the node counts it against the peer's address.
                    return report(&events, protocol_error(peer, e)).await;
                }
            }
        }
    }
    let Some(keys) = channel.session_keys().cloned() else {
        return;
    };
    let local = local.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    if events
        .send(Event::Established {
            peer,
            local,
            digest: keys.hello_digest(),
        })
        .await
        .is_err()
    {
        return;
    }
    let codec = SecureCodec::for_session(&keys);
    let write_task = tokio::spawn(write_loop(
        peer,
        writer,
        codec,
        outgoing,
        events.clone(),
        clock,
    ));
    tokio::select! {
        () = read_loop(peer, reader, channel, buf, &events) => {
            report(&events, Event::Closed { peer }).await;
        }
        // The node closed the connection: stop reading, let the writer flush and finish.
        _ = stop => {}
    }
    // The writer ends when the node drops its sender or asks it to close.
    let _ = write_task.await;
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

async fn read_loop(
    peer: PeerId,
    mut reader: OwnedReadHalf,
    mut channel: SecureChannel,
    mut buf: Vec<u8>,
    events: &mpsc::Sender<Event>,
) {
    loop {
        // Frames that arrived with the key exchange.
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
        match reader.read(&mut buf).await {
            Ok(0) => return,
            Err(e) => {
                debug!(peer, error = %e, "read failed");
                return;
            }
            Ok(n) => {
                if events.send(Event::Bytes { peer, bytes: n }).await.is_err() {
                    return;
                }
                if let Err(e) = channel.receive(&buf[..n]) {
                    return report(events, protocol_error(peer, e)).await;
                }
            }
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
