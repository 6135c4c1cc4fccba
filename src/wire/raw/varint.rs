//! fc's `unsigned_int`: unsigned LEB128 of up to 64 bits.

use super::RawError;

/// Most bytes a 64-bit LEB128 value takes.
pub const MAX_VARINT_LEN: usize = 10;

/// Appends `value` as LEB128.
pub fn write(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Number of bytes `value` takes as LEB128.
pub fn len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Reads a LEB128 value from the front of `input`, returning it and the bytes it took. Refuses
/// values over 64 bits the way fc does.
pub fn read(input: &[u8]) -> Result<(u64, usize), RawError> {
    let mut value: u64 = 0;
    let mut shift: u32 = 0;
    for (i, &b) in input.iter().enumerate() {
        if shift >= 64 || (shift == 63 && b & 0x7f > 1) {
            return Err(RawError::VarintOverflow);
        }
        value |= u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(RawError::UnexpectedEof { needed: 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        for (v, bytes) in [
            (0u64, vec![0x00]),
            (1, vec![0x01]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            write(&mut out, v);
            assert_eq!(out, bytes);
            assert_eq!(len(v), bytes.len());
            assert_eq!(read(&bytes).unwrap(), (v, bytes.len()));
        }
    }

    #[test]
    fn overflow_and_truncation_are_errors() {
        assert_eq!(
            read(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Err(RawError::VarintOverflow)
        );
        assert_eq!(read(&[0x80; 11]), Err(RawError::VarintOverflow));
        assert_eq!(read(&[0x80]), Err(RawError::UnexpectedEof { needed: 1 }));
        assert_eq!(read(&[]), Err(RawError::UnexpectedEof { needed: 1 }));
    }
}
