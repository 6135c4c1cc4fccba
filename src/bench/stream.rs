//! `stream`: one established connection, messages of 1 MiB and of 100 B sent as fast as the
//! target takes them. The messages are of type [`STREAM_MSG_TYPE`], an unknown core type that
//! graphene nodes ignore, so the target reads, decrypts, frames and discards them. The clock
//! stops when the reply to a time request sent after the last message arrives: the target has
//! then read everything before it.
//!
//! The bench encrypts on a thread of its own (the node's [`SecureChannel`] code), handing
//! whole buffers to the socket writer, so encryption and writing overlap as in a node.
//! Baselines of the same run: AES-256-CBC encryption of the same bytes on one core (the `aes`
//! and `cbc` crates alone; CBC encryption is serial, so this bounds one connection), and plain
//! TCP on loopback carrying the same writes to a reader that discards them.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use aes::Aes256;
use bytes::BytesMut;
use cbc::cipher::{Array, BlockModeEncrypt, KeyIvInit};
use tokio::io::AsyncWriteExt;

use super::client::{Conn, open_active};
use super::target::Target;
use super::{BenchError, BenchResult, Figure, Report};
use crate::crypto::NodeKey;
use crate::wire::channel::SecureChannel;
use crate::wire::frame::{MAX_MESSAGE_SIZE, padded_frame_len};

/// The message type streamed: in the core range (5000-5099), known to no implementation, so
/// both grapevine and the reference ignore it without blame.
pub const STREAM_MSG_TYPE: u32 = 5050;
/// Bytes of frames put in one write (several small messages per write, one large message).
pub const WRITE_BATCH: usize = 64 * 1024;
/// Encrypted buffers waiting for the socket.
const QUEUED_BUFFERS: usize = 4;

/// What to run.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// Seconds each message size is streamed for.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Data bytes of the large messages.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub large: usize,
    /// Data bytes of the small messages.
    #[arg(long, default_value_t = 100)]
    pub small: usize,
}

impl Options {
    /// The defaults of `grapevine-bench all`.
    pub fn modest() -> Self {
        Self {
            seconds: 2.0,
            large: 1024 * 1024,
            small: 100,
        }
    }
}

/// One size streamed.
#[derive(Clone, Debug, Default)]
pub struct Streamed {
    pub messages: u64,
    pub writes: u64,
    pub data_bytes: u64,
    pub wire_bytes: u64,
    pub seconds: f64,
    /// From the last write to the time reply.
    pub drain_seconds: f64,
}

/// Messages of `size` per write.
pub fn batch_of(size: usize) -> usize {
    (WRITE_BATCH / padded_frame_len(size)).max(1)
}

/// Streams messages of `size` data bytes over `conn` for `seconds`; answers the connection
/// back and what was sent.
async fn stream_size(conn: Conn, size: usize, seconds: f64) -> BenchResult<(Conn, Streamed)> {
    let Conn {
        mut stream,
        channel,
    } = conn;
    let batch = batch_of(size);
    let (full_tx, mut full_rx) = tokio::sync::mpsc::channel::<BytesMut>(QUEUED_BUFFERS);
    let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<BytesMut>(QUEUED_BUFFERS + 2);
    let started = Instant::now();
    let until = started + Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO);
    let encryptor = std::thread::spawn(move || -> Result<SecureChannel, BenchError> {
        let mut channel = channel;
        let data = vec![0x5a_u8; size];
        while Instant::now() < until {
            let mut buf = empty_rx
                .try_recv()
                .unwrap_or_else(|_| BytesMut::with_capacity(batch * padded_frame_len(size)));
            buf.clear();
            for _ in 0..batch {
                channel.send_raw(STREAM_MSG_TYPE, &data, &mut buf)?;
            }
            if full_tx.blocking_send(buf).is_err() {
                break;
            }
        }
        Ok(channel)
    });
    let mut sent = Streamed::default();
    let mut write_error = None;
    while let Some(buf) = full_rx.recv().await {
        if let Err(e) = stream.write_all(&buf).await {
            write_error = Some(e);
            break;
        }
        sent.writes += 1;
        sent.messages += batch as u64;
        sent.wire_bytes += buf.len() as u64;
        let _ = empty_tx.try_send(buf);
    }
    drop(full_rx);
    let channel = tokio::task::spawn_blocking(move || encryptor.join())
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?
        .map_err(|_| BenchError::Setup("the encryption thread panicked".into()))??;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    let last_write = Instant::now();
    let mut conn = Conn { stream, channel };
    conn.time_round_trip().await?;
    sent.seconds = started.elapsed().as_secs_f64();
    sent.drain_seconds = last_write.elapsed().as_secs_f64();
    sent.data_bytes = sent.messages * size as u64;
    Ok((conn, sent))
}

/// Seconds to encrypt `writes` buffers of `len` bytes with a bare `cbc::Encryptor<Aes256>`
/// on this thread.
pub fn cbc_seconds(len: usize, writes: u64) -> f64 {
    let mut buf: Vec<u8> = (0..len.div_ceil(16) * 16)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let mut cipher = cbc::Encryptor::<Aes256>::new(&[0x5c; 32].into(), &[0xa7; 16].into());
    let started = Instant::now();
    for _ in 0..writes {
        let (blocks, _) = Array::slice_as_chunks_mut(&mut buf[..]);
        cipher.encrypt_blocks(blocks);
        std::hint::black_box(&buf);
    }
    started.elapsed().as_secs_f64()
}

/// Seconds to carry `writes` writes of `len` bytes over plain TCP on 127.0.0.1 to a reader
/// that discards them (until the reader acknowledges the last byte).
pub fn tcp_seconds(len: usize, writes: u64) -> BenchResult<f64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let total = len as u64 * writes;
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        while got < total {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        s.write_all(&[1])
    });
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let buf = vec![0x5a_u8; len];
    let started = Instant::now();
    for _ in 0..writes {
        s.write_all(&buf)?;
    }
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack)?;
    let seconds = started.elapsed().as_secs_f64();
    reader
        .join()
        .map_err(|_| BenchError::Setup("the TCP reader panicked".into()))??;
    Ok(seconds)
}

/// Runs the measurement against `target`.
pub fn run(target: &Target, opts: &Options) -> BenchResult<Report> {
    for size in [opts.large, opts.small] {
        if size > MAX_MESSAGE_SIZE {
            return Err(BenchError::Setup(format!(
                "messages of {size} bytes are above the protocol's {MAX_MESSAGE_SIZE}"
            )));
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(1)
        .build()?;
    let identity = NodeKey::generate();
    let (large, small) = rt.block_on(async {
        let conn = open_active(target.addr, None, target.chain_id, &identity).await?;
        let (conn, large) = stream_size(conn, opts.large, opts.seconds).await?;
        let (_conn, small) = stream_size(conn, opts.small, opts.seconds).await?;
        Ok::<_, BenchError>((large, small))
    })?;
    drop(rt);

    let mut report = Report::new("stream", &target.description);
    for (label, size, s, per_message) in [
        (size_label(opts.large), opts.large, &large, false),
        (size_label(opts.small), opts.small, &small, true),
    ] {
        let write_len = batch_of(size) * padded_frame_len(size);
        let cbc = cbc_seconds(write_len, s.writes);
        let tcp = tcp_seconds(write_len, s.writes)?;
        let (value, unit, base_cbc, base_tcp) = if per_message {
            let m = s.messages as f64;
            (m / s.seconds, "messages/s", m / cbc, m / tcp)
        } else {
            let b = s.data_bytes as f64 / 1e6;
            (b / s.seconds, "MB/s", b / cbc, b / tcp)
        };
        report.figures.push(Figure::new(
            &format!("{label} messages"),
            value,
            unit,
            "AES-256-CBC encryption of the same bytes, one core",
            base_cbc,
        ));
        report.figures.push(Figure::new(
            &format!("{label} messages, against plain TCP"),
            value,
            unit,
            "plain TCP on loopback, the same writes, a reader that discards",
            base_tcp,
        ));
        let key = label.replace(' ', "");
        report.detail(&format!("{key}_messages"), s.messages);
        report.detail(&format!("{key}_data_bytes"), s.data_bytes);
        report.detail(&format!("{key}_wire_bytes"), s.wire_bytes);
        report.detail(&format!("{key}_writes"), s.writes);
        report.detail(&format!("{key}_seconds"), s.seconds);
        report.detail(&format!("{key}_drain_ms"), s.drain_seconds * 1000.0);
        report.detail(
            &format!("{key}_data_mb_per_s"),
            s.data_bytes as f64 / 1e6 / s.seconds,
        );
        report.detail(
            &format!("{key}_messages_per_s"),
            s.messages as f64 / s.seconds,
        );
    }
    report.note(
        "MB = 10^6 bytes of message data; the bench encrypts on its own thread, so a target \
         faster than one core's CBC encryption shows as a ratio near 1",
    );
    Ok(report)
}

/// "1 MiB", "100 B", "64 KiB".
pub fn size_label(size: usize) -> String {
    if size >= 1024 * 1024 && size.is_multiple_of(1024 * 1024) {
        format!("{} MiB", size / (1024 * 1024))
    } else if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_batches() {
        assert_eq!(size_label(1024 * 1024), "1 MiB");
        assert_eq!(size_label(100), "100 B");
        assert_eq!(batch_of(1024 * 1024), 1);
        assert_eq!(batch_of(100), 64 * 1024 / 112);
    }

    #[test]
    fn baselines_run() {
        assert!(cbc_seconds(4096, 4) > 0.0);
        assert!(tcp_seconds(4096, 4).unwrap() > 0.0);
    }
}
