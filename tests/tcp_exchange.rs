//! Two tokio tasks run the stcp key exchange over a real TCP socket on 127.0.0.1 and exchange a
//! few hundred messages of mixed sizes, up to the 2 MiB limit, written at random split points.

use bytes::BytesMut;
use grapevine::wire::Message;
use grapevine::wire::channel::SecureChannel;
use grapevine::wire::frame::MAX_MESSAGE_SIZE;
use grapevine::wire::message::{
    AddressRequestMessage, CurrentTimeRequestMessage, FetchItemsMessage,
};
use grapevine::wire::types::{Ripemd160, TimePoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MESSAGES: usize = 300;

/// A small deterministic generator (xorshift64*): both ends derive the same traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn traffic(seed: u64) -> Vec<Message> {
    let mut rng = Rng(seed);
    (0..MESSAGES)
        .map(|i| {
            // A few messages at and near the limit, the rest small or medium.
            let size = match i {
                7 => MAX_MESSAGE_SIZE,
                150 => MAX_MESSAGE_SIZE - 1,
                _ if i % 50 == 3 => 1 << 20,
                _ => rng.below(5000) as usize,
            };
            match rng.below(5) {
                0 => Message::AddressRequest(AddressRequestMessage {}),
                1 => Message::CurrentTimeRequest(CurrentTimeRequestMessage {
                    request_sent_time: TimePoint(rng.next() as i64),
                }),
                2 => Message::FetchItems(FetchItemsMessage {
                    item_type: 1001,
                    items_to_fetch: (0..rng.below(50))
                        .map(|_| Ripemd160([rng.next() as u8; 20]))
                        .collect(),
                }),
                3 => Message::Trx((0..size).map(|j| (j ^ i) as u8).collect()),
                _ => Message::Unknown {
                    msg_type: 5050 + (i as u32 % 40),
                    data: vec![i as u8; size],
                },
            }
        })
        .collect()
}

async fn peer(stream: TcpStream, send_seed: u64, recv_seed: u64) -> usize {
    let (mut reader, mut writer) = stream.into_split();
    let mut channel = SecureChannel::new();
    // Both sides write their key first; neither waits for the other.
    writer.write_all(channel.our_key()).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    while !channel.is_established() {
        let n = reader.read(&mut buf).await.unwrap();
        assert!(n > 0, "peer closed during the key exchange");
        channel.receive(&buf[..n]).unwrap();
    }
    // Encrypt everything up front (the channel is not shared between tasks), then write it in
    // random pieces while reading concurrently so neither side can block the other.
    let mut wire = BytesMut::new();
    for m in traffic(send_seed) {
        channel.send(&m, &mut wire).unwrap();
    }
    let writing = tokio::spawn(async move {
        let mut rng = Rng(send_seed ^ 0x5eed);
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let n = (1 + rng.below(70_000) as usize).min(rest.len());
            writer.write_all(&rest[..n]).await.unwrap();
            rest = &rest[n..];
        }
        writer.shutdown().await.unwrap();
    });
    let expected = traffic(recv_seed);
    let mut got = 0;
    while got < expected.len() {
        while let Some(frame) = channel.next_frame().unwrap() {
            assert_eq!(frame.message().unwrap(), expected[got], "message {got}");
            got += 1;
        }
        if got == expected.len() {
            break;
        }
        let n = reader.read(&mut buf).await.unwrap();
        assert!(n > 0, "stream ended after {got} messages");
        channel.receive(&buf[..n]).unwrap();
    }
    writing.await.unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_exchange_and_mixed_traffic_over_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        peer(stream, 2, 1).await
    });
    let client = tokio::spawn(async move {
        let stream = TcpStream::connect(addr).await.unwrap();
        peer(stream, 1, 2).await
    });
    assert_eq!(client.await.unwrap(), MESSAGES);
    assert_eq!(server.await.unwrap(), MESSAGES);
}
