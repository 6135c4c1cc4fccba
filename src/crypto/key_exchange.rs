//! The stcp key exchange: both sides send a fresh compressed secp256k1 key in clear, then derive
//! the same 64-byte shared secret, AES key and IV.
//!
//! [`KeyExchange`] is a sans-IO state machine: it hands out the 33 bytes to send, takes the
//! peer's bytes in pieces of any size, and once 33 have arrived yields the [`SessionKeys`] and
//! any bytes that came after the key (they are already ciphertext). Both sides may send first;
//! nothing here waits on the other direction.

use sha2::{Digest, Sha256, Sha512};

use super::city::city_hash_crc_128_iv;
use super::keys::{
    PUBLIC_KEY_SIZE, PublicKeyBytes, SecretKey, decompress, ecdh_x, public_key, random_secret,
};
use super::{CipherStream, CryptoError};

/// What both ends of a connection derive from the exchange.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// SHA-512 of the x coordinate of the shared point: fc's "shared secret". The hello
    /// signature covers SHA-256 of it.
    pub shared_secret: [u8; 64],
    /// SHA-256 of the shared secret.
    pub aes_key: [u8; 32],
    /// fc's `city_hash_crc_128` of the shared secret, laid out hi64 LE then lo64 LE.
    pub aes_iv: [u8; 16],
}

impl SessionKeys {
    /// Derives the keys from the raw shared secret.
    pub fn from_shared_secret(shared_secret: [u8; 64]) -> Self {
        let aes_key: [u8; 32] = Sha256::digest(shared_secret).into();
        let aes_iv = city_hash_crc_128_iv(&shared_secret);
        Self {
            shared_secret,
            aes_key,
            aes_iv,
        }
    }

    /// The digest a node signs with its identity key for `hello.signed_shared_secret`.
    /// It equals the AES key: both are SHA-256 of the shared secret.
    pub fn hello_digest(&self) -> [u8; 32] {
        self.aes_key
    }

    /// The stream for what we send.
    pub fn encryptor(&self) -> CipherStream {
        CipherStream::encryptor(&self.aes_key, &self.aes_iv)
    }

    /// The stream for what we receive.
    pub fn decryptor(&self) -> CipherStream {
        CipherStream::decryptor(&self.aes_key, &self.aes_iv)
    }
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys { .. }")
    }
}

/// fc's shared secret between our ephemeral secret and the peer's public key.
pub fn shared_secret(ours: &SecretKey, theirs: &PublicKeyBytes) -> Result<[u8; 64], CryptoError> {
    #[cfg(fuzzing)]
    {
        let key = (ours.secret_bytes(), *theirs);
        super::fuzz_memo::get_or_insert(&super::fuzz_memo::SHARED_SECRETS, key, || {
            shared_secret_uncached(ours, theirs)
        })
    }
    #[cfg(not(fuzzing))]
    shared_secret_uncached(ours, theirs)
}

fn shared_secret_uncached(
    ours: &SecretKey,
    theirs: &PublicKeyBytes,
) -> Result<[u8; 64], CryptoError> {
    let public = decompress(theirs)?;
    let x = ecdh_x(ours, &public);
    if x.iter().all(|b| *b == 0) {
        return Err(CryptoError::DegenerateSharedPoint);
    }
    Ok(Sha512::digest(x).into())
}

/// One side of the key exchange. See the module docs for the calling contract.
pub struct KeyExchange {
    secret: SecretKey,
    public: PublicKeyBytes,
    received: [u8; PUBLIC_KEY_SIZE],
    received_len: usize,
}

/// The outcome of feeding bytes: either more are needed, or the exchange is complete.
#[derive(Debug)]
pub enum ExchangeProgress {
    /// Fewer than 33 bytes of the peer's key have arrived.
    NeedMore,
    /// The exchange is done. `consumed` bytes of the last input belonged to the key; the rest is
    /// the start of the encrypted stream.
    Done {
        keys: SessionKeys,
        peer_key: PublicKeyBytes,
        consumed: usize,
    },
}

impl KeyExchange {
    /// A new exchange with a fresh ephemeral key (one per connection, as fc does).
    pub fn new() -> Self {
        Self::with_secret(random_secret())
    }

    /// An exchange with a given ephemeral key: for tests and vectors.
    pub fn with_secret(secret: SecretKey) -> Self {
        #[cfg(fuzzing)]
        let public = super::fuzz_memo::get_or_insert(
            &super::fuzz_memo::PUBLIC_KEYS,
            secret.secret_bytes(),
            || public_key(&secret),
        );
        #[cfg(not(fuzzing))]
        let public = public_key(&secret);
        Self {
            secret,
            public,
            received: [0; PUBLIC_KEY_SIZE],
            received_len: 0,
        }
    }

    /// The 33 bytes to write first, unencrypted and unframed.
    pub fn our_public_key(&self) -> &PublicKeyBytes {
        &self.public
    }

    /// Feeds bytes read from the peer. After `Done`, further calls keep returning an error-free
    /// `Done` only if fed again from scratch; callers stop feeding once done.
    pub fn feed(&mut self, input: &[u8]) -> Result<ExchangeProgress, CryptoError> {
        let want = PUBLIC_KEY_SIZE - self.received_len;
        let take = want.min(input.len());
        self.received[self.received_len..self.received_len + take].copy_from_slice(&input[..take]);
        self.received_len += take;
        if self.received_len < PUBLIC_KEY_SIZE {
            return Ok(ExchangeProgress::NeedMore);
        }
        let peer_key = self.received;
        let secret = shared_secret(&self.secret, &peer_key)?;
        Ok(ExchangeProgress::Done {
            keys: SessionKeys::from_shared_secret(secret),
            peer_key,
            consumed: take,
        })
    }
}

impl Default for KeyExchange {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_agree_whatever_the_split() {
        let mut a = KeyExchange::new();
        let mut b = KeyExchange::new();
        let a_pub = *a.our_public_key();
        let b_pub = *b.our_public_key();
        let ka = match a.feed(&b_pub).unwrap() {
            ExchangeProgress::Done { keys, consumed, .. } => {
                assert_eq!(consumed, 33);
                keys
            }
            ExchangeProgress::NeedMore => panic!("33 bytes must complete"),
        };
        assert!(matches!(
            b.feed(&a_pub[..1]).unwrap(),
            ExchangeProgress::NeedMore
        ));
        assert!(matches!(
            b.feed(&a_pub[1..20]).unwrap(),
            ExchangeProgress::NeedMore
        ));
        let mut tail = a_pub[20..].to_vec();
        tail.extend_from_slice(b"ciphertext");
        let kb = match b.feed(&tail).unwrap() {
            ExchangeProgress::Done { keys, consumed, .. } => {
                assert_eq!(consumed, 13);
                keys
            }
            ExchangeProgress::NeedMore => panic!("must complete"),
        };
        assert!(ka == kb);
    }

    #[test]
    fn invalid_peer_keys_are_typed_errors() {
        let mut bad = [0u8; 33];
        assert_eq!(
            KeyExchange::new().feed(&bad).unwrap_err(),
            CryptoError::InvalidPublicKey
        );
        bad[0] = 0x04;
        assert_eq!(
            KeyExchange::new().feed(&bad).unwrap_err(),
            CryptoError::InvalidPublicKey
        );
        // x = p - 1 has no point on secp256k1 with either parity? Use all 0xff: above p.
        let mut above_p = [0xffu8; 33];
        above_p[0] = 0x02;
        assert_eq!(
            KeyExchange::new().feed(&above_p).unwrap_err(),
            CryptoError::InvalidPublicKey
        );
    }
}
