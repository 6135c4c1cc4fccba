//! One direction of the stcp stream: AES-256-CBC without padding whose chaining state lives as
//! long as the connection.
//!
//! fc's `stcp_socket` encrypts each write with the CBC state left by the previous one, so the
//! whole direction is a single CBC stream starting from the handshake IV. `CipherStream` works in
//! place on whole 16-byte blocks; the frame layer guarantees frames are block multiples.

use aes::Aes256;
use cbc::cipher::{Array, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};

use super::CryptoError;

/// AES block size; frames are padded to a multiple of it.
pub const BLOCK_SIZE: usize = 16;

enum Mode {
    Encrypt(Box<cbc::Encryptor<Aes256>>),
    Decrypt(Box<cbc::Decryptor<Aes256>>),
}

/// The CBC state of one direction of a connection.
///
/// Create one with [`CipherStream::encryptor`] for what we send and one with
/// [`CipherStream::decryptor`] for what we receive, both from the same key and IV (fc uses the
/// same pair both ways). Then call [`CipherStream::apply`] on consecutive stretches of the
/// stream, each a whole number of blocks; the chaining state carries over between calls.
pub struct CipherStream {
    mode: Mode,
}

impl CipherStream {
    /// The stream for bytes we send.
    pub fn encryptor(key: &[u8; 32], iv: &[u8; 16]) -> Self {
        let e = cbc::Encryptor::<Aes256>::new(&(*key).into(), &(*iv).into());
        Self {
            mode: Mode::Encrypt(Box::new(e)),
        }
    }

    /// The stream for bytes we receive.
    pub fn decryptor(key: &[u8; 32], iv: &[u8; 16]) -> Self {
        let d = cbc::Decryptor::<Aes256>::new(&(*key).into(), &(*iv).into());
        Self {
            mode: Mode::Decrypt(Box::new(d)),
        }
    }

    /// Encrypts or decrypts (as the stream was made) `buf` in place. `buf` must be a whole number
    /// of blocks; otherwise nothing is touched and the state does not move.
    pub fn apply(&mut self, buf: &mut [u8]) -> Result<(), CryptoError> {
        let (blocks, rest) = Array::slice_as_chunks_mut(buf);
        if !rest.is_empty() {
            return Err(CryptoError::NotBlockAligned(
                blocks.len() * BLOCK_SIZE + rest.len(),
            ));
        }
        match &mut self.mode {
            Mode::Encrypt(e) => e.encrypt_blocks(blocks),
            Mode::Decrypt(d) => d.decrypt_blocks(blocks),
        }
        Ok(())
    }

    /// Encrypts or decrypts (as the stream was made) `input` into `output`, which must be the
    /// same whole number of blocks; otherwise nothing is touched and the state does not move.
    /// The bytes are read once, by the cipher: no copy of the input is made first.
    pub fn apply_b2b(&mut self, input: &[u8], output: &mut [u8]) -> Result<(), CryptoError> {
        let (in_blocks, in_rest) = Array::slice_as_chunks(input);
        let (out_blocks, out_rest) = Array::slice_as_chunks_mut(output);
        if !in_rest.is_empty() || !out_rest.is_empty() || in_blocks.len() != out_blocks.len() {
            return Err(CryptoError::NotBlockAligned(input.len()));
        }
        let done = match &mut self.mode {
            Mode::Encrypt(e) => e.encrypt_blocks_b2b(in_blocks, out_blocks),
            Mode::Decrypt(d) => d.decrypt_blocks_b2b(in_blocks, out_blocks),
        };
        // The lengths were checked above.
        done.map_err(|_| CryptoError::NotBlockAligned(input.len()))
    }

    /// Whether this stream encrypts (true) or decrypts (false).
    pub fn is_encryptor(&self) -> bool {
        matches!(self.mode, Mode::Encrypt(_))
    }
}

impl std::fmt::Debug for CipherStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material or chaining state.
        f.debug_struct("CipherStream")
            .field("encrypt", &self.is_encryptor())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaligned_input_is_refused_without_moving_state() {
        let key = [7u8; 32];
        let iv = [9u8; 16];
        let mut a = CipherStream::encryptor(&key, &iv);
        let mut b = CipherStream::encryptor(&key, &iv);
        let mut odd = [0u8; 17];
        assert_eq!(a.apply(&mut odd), Err(CryptoError::NotBlockAligned(17)));
        let mut x = [1u8; 32];
        let mut y = [1u8; 32];
        a.apply(&mut x).unwrap();
        b.apply(&mut y).unwrap();
        assert_eq!(x, y);
    }

    #[test]
    fn buffer_to_buffer_continues_the_same_stream() {
        let key = [5u8; 32];
        let iv = [6u8; 16];
        let data: Vec<u8> = (0..160u8).collect();
        let mut whole = data.clone();
        CipherStream::encryptor(&key, &iv)
            .apply(&mut whole)
            .unwrap();
        let mut enc = CipherStream::encryptor(&key, &iv);
        let mut out = vec![0u8; 160];
        let (a, b) = out.split_at_mut(48);
        a.copy_from_slice(&data[..48]);
        enc.apply(a).unwrap();
        enc.apply_b2b(&data[48..], b).unwrap();
        assert_eq!(out, whole);
        let mut odd = [0u8; 17];
        assert_eq!(
            enc.apply_b2b(&[0u8; 17], &mut odd),
            Err(CryptoError::NotBlockAligned(17))
        );
        assert!(enc.apply_b2b(&[0u8; 16], &mut [0u8; 32]).is_err());
        let mut plain = vec![0u8; 160];
        CipherStream::decryptor(&key, &iv)
            .apply_b2b(&whole, &mut plain)
            .unwrap();
        assert_eq!(plain, data);
    }

    #[test]
    fn chaining_carries_across_calls() {
        let key = [3u8; 32];
        let iv = [4u8; 16];
        let data: Vec<u8> = (0..96u8).collect();
        let mut whole = data.clone();
        CipherStream::encryptor(&key, &iv)
            .apply(&mut whole)
            .unwrap();
        let mut parts = data.clone();
        let mut enc = CipherStream::encryptor(&key, &iv);
        let (a, b) = parts.split_at_mut(32);
        enc.apply(a).unwrap();
        enc.apply(b).unwrap();
        assert_eq!(whole, parts);
        let mut dec = CipherStream::decryptor(&key, &iv);
        let (a, b) = parts.split_at_mut(48);
        dec.apply(a).unwrap();
        dec.apply(b).unwrap();
        assert_eq!(parts, data);
    }
}
