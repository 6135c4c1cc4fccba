//! CityHash as bitshares-fc implements it (`fc/src/crypto/city.cpp`).
//!
//! The stcp handshake derives its AES-CBC IV from `fc::city_hash_crc_128` of the
//! shared secret, so we must reproduce fc bit for bit. fc started from Google's
//! CityHash v1.1 but builds its 128-bit values with `uint128(hi, lo)` where Google
//! uses `pair(low, high)`. Every internal 128-bit value therefore has its halves
//! swapped relative to Google, which changes the mixing (`Hash128to64`), the seed
//! split and the result; `city_hash64` is affected too for inputs over 64 bytes.
//! Neither Google's reference nor the `cityhasher` crate can be used in its place.
//!
//! Above 900 bytes `city_hash_crc_128` switches to the CRC32C-based 256-bit hash.
//! fc uses the SSE4.2 `crc32` instruction where available and a software CRC32C
//! otherwise; both give the same values, and we use a portable table here.

const K0: u64 = 0xc3a5_c85c_97cb_3127;
const K1: u64 = 0xb492_b66f_be98_f273;
const K2: u64 = 0x9ae1_6a3b_2f90_404f;
const KMUL: u64 = 0x9ddf_ea08_eb38_2d69;

/// fc's `uint128(hi, lo)`: kept as named halves so the hi/lo convention is explicit.
#[derive(Clone, Copy)]
struct U128 {
    hi: u64,
    lo: u64,
}

// Out-of-range reads yield 0 instead of panicking; every call site stays in
// bounds, and the tests (run with overflow checks) exercise all lengths.
fn fetch64(s: &[u8], at: usize) -> u64 {
    s.get(at..at.saturating_add(8))
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn fetch32(s: &[u8], at: usize) -> u64 {
    s.get(at..at.saturating_add(4))
        .and_then(|b| b.try_into().ok())
        .map_or(0, |b| u64::from(u32::from_le_bytes(b)))
}

fn byte(s: &[u8], at: usize) -> u64 {
    s.get(at).map_or(0, |&b| u64::from(b))
}

fn shift_mix(v: u64) -> u64 {
    v ^ (v >> 47)
}

fn hash128_to_64(x: U128) -> u64 {
    let mut a = (x.lo ^ x.hi).wrapping_mul(KMUL);
    a ^= a >> 47;
    let mut b = (x.hi ^ a).wrapping_mul(KMUL);
    b ^= b >> 47;
    b.wrapping_mul(KMUL)
}

/// Two-argument `HashLen16`: fc packs `u` as the HIGH word, which is where it
/// parts ways with Google (Google's `u` is the low word).
fn hash_len16(u: u64, v: u64) -> u64 {
    hash128_to_64(U128 { hi: u, lo: v })
}

fn hash_len16_mul(u: u64, v: u64, mul: u64) -> u64 {
    let mut a = (u ^ v).wrapping_mul(mul);
    a ^= a >> 47;
    let mut b = (v ^ a).wrapping_mul(mul);
    b ^= b >> 47;
    b.wrapping_mul(mul)
}

fn hash_len0to16(s: &[u8]) -> u64 {
    let len = s.len();
    let len64 = len as u64;
    if len >= 8 {
        let mul = K2.wrapping_add(len64.wrapping_mul(2));
        let a = fetch64(s, 0).wrapping_add(K2);
        let b = fetch64(s, len - 8);
        let c = b.rotate_right(37).wrapping_mul(mul).wrapping_add(a);
        let d = a.rotate_right(25).wrapping_add(b).wrapping_mul(mul);
        return hash_len16_mul(c, d, mul);
    }
    if len >= 4 {
        let mul = K2.wrapping_add(len64.wrapping_mul(2));
        let a = fetch32(s, 0);
        return hash_len16_mul(len64.wrapping_add(a << 3), fetch32(s, len - 4), mul);
    }
    if len > 0 {
        let y = byte(s, 0) + (byte(s, len >> 1) << 8);
        let z = len64 + (byte(s, len - 1) << 2);
        return shift_mix(y.wrapping_mul(K2) ^ z.wrapping_mul(K0)).wrapping_mul(K2);
    }
    K2
}

fn hash_len17to32(s: &[u8]) -> u64 {
    let len = s.len();
    let mul = K2.wrapping_add((len as u64).wrapping_mul(2));
    let a = fetch64(s, 0).wrapping_mul(K1);
    let b = fetch64(s, 8);
    let c = fetch64(s, len - 8).wrapping_mul(mul);
    let d = fetch64(s, len - 16).wrapping_mul(K2);
    hash_len16_mul(
        a.wrapping_add(b)
            .rotate_right(43)
            .wrapping_add(c.rotate_right(30))
            .wrapping_add(d),
        a.wrapping_add(b.wrapping_add(K2).rotate_right(18))
            .wrapping_add(c),
        mul,
    )
}

fn hash_len33to64(s: &[u8]) -> u64 {
    let len = s.len();
    let mul = K2.wrapping_add((len as u64).wrapping_mul(2));
    let a = fetch64(s, 0).wrapping_mul(K2);
    let b = fetch64(s, 8);
    let c = fetch64(s, len - 24);
    let d = fetch64(s, len - 32);
    let e = fetch64(s, 16).wrapping_mul(K2);
    let f = fetch64(s, 24).wrapping_mul(9);
    let g = fetch64(s, len - 8);
    let h = fetch64(s, len - 16).wrapping_mul(mul);
    let u = a
        .wrapping_add(g)
        .rotate_right(43)
        .wrapping_add(b.rotate_right(30).wrapping_add(c).wrapping_mul(9));
    let v = (a.wrapping_add(g) ^ d).wrapping_add(f).wrapping_add(1);
    let w = u
        .wrapping_add(v)
        .wrapping_mul(mul)
        .swap_bytes()
        .wrapping_add(h);
    let x = e.wrapping_add(f).rotate_right(42).wrapping_add(c);
    let y = v
        .wrapping_add(w)
        .wrapping_mul(mul)
        .swap_bytes()
        .wrapping_add(g)
        .wrapping_mul(mul);
    let z = e.wrapping_add(f).wrapping_add(c);
    let a = x
        .wrapping_add(z)
        .wrapping_mul(mul)
        .wrapping_add(y)
        .swap_bytes()
        .wrapping_add(b);
    let b = shift_mix(
        z.wrapping_add(a)
            .wrapping_mul(mul)
            .wrapping_add(d)
            .wrapping_add(h),
    )
    .wrapping_mul(mul);
    b.wrapping_add(x)
}

/// A plain (first, second) pair; unlike `U128` it carries no hi/lo meaning.
type Pair = (u64, u64);

fn weak_hash_len32_with_seeds_raw(w: u64, x: u64, y: u64, z: u64, a: u64, b: u64) -> Pair {
    let a = a.wrapping_add(w);
    let b = b.wrapping_add(a).wrapping_add(z).rotate_right(21);
    let c = a;
    let a = a.wrapping_add(x).wrapping_add(y);
    let b = b.wrapping_add(a.rotate_right(44));
    (a.wrapping_add(z), b.wrapping_add(c))
}

fn weak_hash_len32_with_seeds(s: &[u8], at: usize, a: u64, b: u64) -> Pair {
    weak_hash_len32_with_seeds_raw(
        fetch64(s, at),
        fetch64(s, at + 8),
        fetch64(s, at + 16),
        fetch64(s, at + 24),
        a,
        b,
    )
}

/// `fc::city_hash64`.
pub fn city_hash64(data: &[u8]) -> u64 {
    let s = data;
    let len = s.len();
    if len <= 16 {
        return hash_len0to16(s);
    }
    if len <= 32 {
        return hash_len17to32(s);
    }
    if len <= 64 {
        return hash_len33to64(s);
    }

    let len64 = len as u64;
    let mut x = fetch64(s, len - 40);
    let mut y = fetch64(s, len - 16).wrapping_add(fetch64(s, len - 56));
    let mut z = hash_len16(
        fetch64(s, len - 48).wrapping_add(len64),
        fetch64(s, len - 24),
    );
    let mut v = weak_hash_len32_with_seeds(s, len - 64, len64, z);
    let mut w = weak_hash_len32_with_seeds(s, len - 32, y.wrapping_add(K1), x);
    x = x.wrapping_mul(K1).wrapping_add(fetch64(s, 0));

    // The tail was already folded in above, so the loop covers the whole
    // 64-byte blocks strictly before the last byte.
    let mut remaining = (len - 1) & !63usize;
    let mut pos = 0usize;
    while remaining != 0 {
        x = x
            .wrapping_add(y)
            .wrapping_add(v.0)
            .wrapping_add(fetch64(s, pos + 8))
            .rotate_right(37)
            .wrapping_mul(K1);
        y = y
            .wrapping_add(v.1)
            .wrapping_add(fetch64(s, pos + 48))
            .rotate_right(42)
            .wrapping_mul(K1);
        x ^= w.1;
        y = y.wrapping_add(v.0).wrapping_add(fetch64(s, pos + 40));
        z = z.wrapping_add(w.0).rotate_right(33).wrapping_mul(K1);
        v = weak_hash_len32_with_seeds(s, pos, v.1.wrapping_mul(K1), x.wrapping_add(w.0));
        w = weak_hash_len32_with_seeds(
            s,
            pos + 32,
            z.wrapping_add(w.1),
            y.wrapping_add(fetch64(s, pos + 16)),
        );
        std::mem::swap(&mut z, &mut x);
        pos += 64;
        remaining -= 64;
    }
    hash_len16(
        hash_len16(v.0, w.0)
            .wrapping_add(shift_mix(y).wrapping_mul(K1))
            .wrapping_add(z),
        hash_len16(v.1, w.1).wrapping_add(x),
    )
}

fn city_murmur(s: &[u8], seed: U128) -> U128 {
    let len = s.len();
    let mut a = seed.lo;
    let mut b = seed.hi;
    let mut c;
    let mut d;
    if len <= 16 {
        a = shift_mix(a.wrapping_mul(K1)).wrapping_mul(K1);
        c = b.wrapping_mul(K1).wrapping_add(hash_len0to16(s));
        d = shift_mix(a.wrapping_add(if len >= 8 { fetch64(s, 0) } else { c }));
    } else {
        c = hash_len16(fetch64(s, len - 8).wrapping_add(K1), a);
        d = hash_len16(
            b.wrapping_add(len as u64),
            c.wrapping_add(fetch64(s, len - 16)),
        );
        a = a.wrapping_add(d);
        // Consumes 16-byte steps while any byte past the first 16 remains
        // unvisited, so the last step may overlap the tail read above.
        let mut pos = 0usize;
        let mut left = len - 16;
        loop {
            a ^= shift_mix(fetch64(s, pos).wrapping_mul(K1)).wrapping_mul(K1);
            a = a.wrapping_mul(K1);
            b ^= a;
            c ^= shift_mix(fetch64(s, pos + 8).wrapping_mul(K1)).wrapping_mul(K1);
            c = c.wrapping_mul(K1);
            d ^= c;
            pos += 16;
            if left <= 16 {
                break;
            }
            left -= 16;
        }
    }
    let a = hash_len16(a, c);
    let b = hash_len16(d, b);
    U128 {
        hi: a ^ b,
        lo: hash_len16(b, a),
    }
}

/// One round of the long-input loop shared by the 128-bit hash.
struct LongState {
    x: u64,
    y: u64,
    z: u64,
    v: Pair,
    w: Pair,
}

impl LongState {
    fn round(&mut self, s: &[u8], pos: usize) {
        self.x = self
            .x
            .wrapping_add(self.y)
            .wrapping_add(self.v.0)
            .wrapping_add(fetch64(s, pos + 8))
            .rotate_right(37)
            .wrapping_mul(K1);
        self.y = self
            .y
            .wrapping_add(self.v.1)
            .wrapping_add(fetch64(s, pos + 48))
            .rotate_right(42)
            .wrapping_mul(K1);
        self.x ^= self.w.1;
        self.y = self
            .y
            .wrapping_add(self.v.0)
            .wrapping_add(fetch64(s, pos + 40));
        self.z = self
            .z
            .wrapping_add(self.w.0)
            .rotate_right(33)
            .wrapping_mul(K1);
        self.v = weak_hash_len32_with_seeds(
            s,
            pos,
            self.v.1.wrapping_mul(K1),
            self.x.wrapping_add(self.w.0),
        );
        self.w = weak_hash_len32_with_seeds(
            s,
            pos + 32,
            self.z.wrapping_add(self.w.1),
            self.y.wrapping_add(fetch64(s, pos + 16)),
        );
        std::mem::swap(&mut self.z, &mut self.x);
    }
}

fn city_hash128_with_seed(s: &[u8], seed: U128) -> U128 {
    let len = s.len();
    if len < 128 {
        return city_murmur(s, seed);
    }

    let x = seed.lo;
    let y = seed.hi;
    let z = (len as u64).wrapping_mul(K1);
    let v0 = (y ^ K1)
        .rotate_right(49)
        .wrapping_mul(K1)
        .wrapping_add(fetch64(s, 0));
    let v1 = v0
        .rotate_right(42)
        .wrapping_mul(K1)
        .wrapping_add(fetch64(s, 8));
    let w0 = y
        .wrapping_add(z)
        .rotate_right(35)
        .wrapping_mul(K1)
        .wrapping_add(x);
    let w1 = x
        .wrapping_add(fetch64(s, 88))
        .rotate_right(53)
        .wrapping_mul(K1);
    let mut st = LongState {
        x,
        y,
        z,
        v: (v0, v1),
        w: (w0, w1),
    };

    let mut pos = 0usize;
    let mut left = len;
    loop {
        st.round(s, pos);
        st.round(s, pos + 64);
        pos += 128;
        left -= 128;
        if left < 128 {
            break;
        }
    }

    let LongState {
        mut x,
        mut y,
        mut z,
        mut v,
        mut w,
    } = st;
    x = x.wrapping_add(v.0.wrapping_add(z).rotate_right(49).wrapping_mul(K0));
    y = y.wrapping_mul(K0).wrapping_add(w.1.rotate_right(37));
    z = z.wrapping_mul(K0).wrapping_add(w.0.rotate_right(27));
    w.0 = w.0.wrapping_mul(9);
    v.0 = v.0.wrapping_mul(K0);

    // Up to four 32-byte chunks taken backwards from the end; the first of them
    // may reach back into bytes the main loop already consumed (pos >= 128).
    let end = pos + left;
    let mut tail_done = 0usize;
    while tail_done < left {
        tail_done += 32;
        let at = end - tail_done;
        y = x
            .wrapping_add(y)
            .rotate_right(42)
            .wrapping_mul(K0)
            .wrapping_add(v.1);
        w.0 = w.0.wrapping_add(fetch64(s, at + 16));
        x = x.wrapping_mul(K0).wrapping_add(w.0);
        z = z.wrapping_add(w.1).wrapping_add(fetch64(s, at));
        w.1 = w.1.wrapping_add(v.0);
        v = weak_hash_len32_with_seeds(s, at, v.0.wrapping_add(z), v.1);
        v.0 = v.0.wrapping_mul(K0);
    }

    let x = hash_len16(x, v.0);
    let y = hash_len16(y.wrapping_add(z), w.0);
    U128 {
        hi: hash_len16(x.wrapping_add(v.1), w.1).wrapping_add(y),
        lo: hash_len16(x.wrapping_add(w.1), y.wrapping_add(v.1)),
    }
}

fn city_hash128_u128(s: &[u8]) -> U128 {
    if s.len() >= 16 {
        let seed = U128 {
            hi: fetch64(s, 0),
            lo: fetch64(s, 8).wrapping_add(K0),
        };
        city_hash128_with_seed(&s[16..], seed)
    } else {
        city_hash128_with_seed(s, U128 { hi: K0, lo: K1 })
    }
}

/// fc's internal `city_hash128` (no CRC). Returns `(hi64, lo64)`.
pub fn city_hash128(data: &[u8]) -> (u64, u64) {
    let r = city_hash128_u128(data);
    (r.hi, r.lo)
}

/// Reflected CRC32C (Castagnoli, polynomial 0x82f63b78) byte table.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut x = i as u32;
        let mut j = 0;
        while j < 8 {
            x = if x & 1 != 0 {
                (x >> 1) ^ 0x82f6_3b78
            } else {
                x >> 1
            };
            j += 1;
        }
        table[i] = x;
        i += 1;
    }
    table
};

/// What `_mm_crc32_u64(crc, v)` computes: only the low 32 bits of `crc` take
/// part, the 8 bytes of `v` go in little-endian order, no inversion is applied,
/// and the 32-bit result is zero-extended.
fn crc32c_u64(crc: u64, v: u64) -> u64 {
    let mut c = crc as u32;
    for b in v.to_le_bytes() {
        c = CRC32C_TABLE[usize::from(c as u8 ^ b)] ^ (c >> 8);
    }
    u64::from(c)
}

struct Crc256State {
    a: u64,
    b: u64,
    c: u64,
    d: u64,
    e: u64,
    f: u64,
    g: u64,
    h: u64,
    x: u64,
    y: u64,
    z: u64,
}

impl Crc256State {
    /// Mixes 40 bytes at `pos`, ending with a rotation of `e` by `r`.
    fn chunk(&mut self, s: &[u8], pos: usize, r: u32) {
        (self.x, self.z, self.y) = (self.y, self.x, self.z);
        self.b = self.b.wrapping_add(fetch64(s, pos));
        self.c = self.c.wrapping_add(fetch64(s, pos + 8));
        self.d = self.d.wrapping_add(fetch64(s, pos + 16));
        self.e = self.e.wrapping_add(fetch64(s, pos + 24));
        self.f = self.f.wrapping_add(fetch64(s, pos + 32));
        self.a = self.a.wrapping_add(self.b);
        self.h = self.h.wrapping_add(self.f);
        self.b = self.b.wrapping_add(self.c);
        self.f = self.f.wrapping_add(self.d);
        self.g = self.g.wrapping_add(self.e);
        self.e = self.e.wrapping_add(self.z);
        self.g = self.g.wrapping_add(self.x);
        self.z = crc32c_u64(self.z, self.b.wrapping_add(self.g));
        self.y = crc32c_u64(self.y, self.e.wrapping_add(self.h));
        self.x = crc32c_u64(self.x, self.f.wrapping_add(self.a));
        self.e = self.e.rotate_right(r);
        self.c = self.c.wrapping_add(self.e);
    }
}

/// `CityHashCrc256Long`; callers guarantee `s.len() >= 240`.
fn city_hash_crc256_long(s: &[u8], seed: u32) -> [u64; 4] {
    let len = s.len();
    let len64 = len as u64;
    let seed = u64::from(seed);
    let c = hash_len16(fetch64(s, 96).wrapping_add(K0), len64);
    let d = fetch64(s, 120).wrapping_mul(K0).wrapping_add(len64);
    let mut result = [c, d, 0, 0];
    let mut st = Crc256State {
        a: fetch64(s, 56).wrapping_add(K0),
        b: fetch64(s, 96).wrapping_add(K0),
        c,
        d,
        e: fetch64(s, 184).wrapping_add(seed),
        f: 0,
        g: 0,
        h: c.wrapping_add(d),
        x: seed,
        y: 0,
        z: 0,
    };

    let iters = len / 240;
    let mut left = len - iters * 240;
    let mut pos = 0usize;
    for _ in 0..iters {
        st.chunk(s, pos, 0);
        (st.a, st.h, st.c) = (st.c, st.a, st.h);
        st.chunk(s, pos + 40, 33);
        (st.a, st.h, st.f) = (st.f, st.a, st.h);
        st.chunk(s, pos + 80, 0);
        (st.b, st.h, st.f) = (st.f, st.b, st.h);
        st.chunk(s, pos + 120, 42);
        (st.b, st.h, st.d) = (st.d, st.b, st.h);
        st.chunk(s, pos + 160, 0);
        (st.b, st.h, st.e) = (st.e, st.b, st.h);
        st.chunk(s, pos + 200, 33);
        (st.a, st.h, st.e) = (st.e, st.a, st.h);
        pos += 240;
    }

    while left >= 40 {
        st.chunk(s, pos, 29);
        st.e ^= st.a.rotate_right(20);
        st.h = st.h.wrapping_add(st.b.rotate_right(30));
        st.g ^= st.c.rotate_right(40);
        st.f = st.f.wrapping_add(st.d.rotate_right(34));
        (st.c, st.h, st.g) = (st.g, st.c, st.h);
        pos += 40;
        left -= 40;
    }
    if left > 0 {
        // Re-read the final 40 bytes, overlapping what was already mixed.
        st.chunk(s, pos + left - 40, 33);
        st.e ^= st.a.rotate_right(43);
        st.h = st.h.wrapping_add(st.b.rotate_right(42));
        st.g ^= st.c.rotate_right(41);
        st.f = st.f.wrapping_add(st.d.rotate_right(40));
    }

    let Crc256State {
        mut a,
        mut b,
        mut c,
        mut d,
        mut e,
        f,
        mut g,
        mut h,
        mut x,
        mut y,
        mut z,
    } = st;
    result[0] ^= h;
    result[1] ^= g;
    g = g.wrapping_add(h);
    a = hash_len16(a, g.wrapping_add(z));
    x = x.wrapping_add(y << 32);
    b = b.wrapping_add(x);
    c = hash_len16(c, z).wrapping_add(h);
    d = hash_len16(d, e.wrapping_add(result[0]));
    g = g.wrapping_add(e);
    h = h.wrapping_add(hash_len16(x, f));
    e = hash_len16(a, d).wrapping_add(g);
    z = hash_len16(b, c).wrapping_add(a);
    y = hash_len16(g, h).wrapping_add(c);
    result[0] = e.wrapping_add(z).wrapping_add(y).wrapping_add(x);
    a = shift_mix(a.wrapping_add(y).wrapping_mul(K0))
        .wrapping_mul(K0)
        .wrapping_add(b);
    result[1] = result[1].wrapping_add(a).wrapping_add(result[0]);
    a = shift_mix(a.wrapping_mul(K0))
        .wrapping_mul(K0)
        .wrapping_add(c);
    result[2] = a.wrapping_add(result[1]);
    a = shift_mix(a.wrapping_add(e).wrapping_mul(K0)).wrapping_mul(K0);
    result[3] = a.wrapping_add(result[2]);
    result
}

/// `CityHashCrc256`: short inputs are zero-padded to 240 bytes and the length
/// goes into the seed so that padded inputs stay distinct.
fn city_hash_crc256(s: &[u8]) -> [u64; 4] {
    if s.len() >= 240 {
        city_hash_crc256_long(s, 0)
    } else {
        let mut buf = [0u8; 240];
        buf[..s.len()].copy_from_slice(s);
        city_hash_crc256_long(&buf, !(s.len() as u32))
    }
}

/// `fc::city_hash_crc_128`. Returns `(hi64, lo64)`.
///
/// Up to 900 bytes this equals [`city_hash128`]; above that it is words 2 and 3
/// of the CRC32C-based 256-bit hash.
pub fn city_hash_crc_128(data: &[u8]) -> (u64, u64) {
    if data.len() <= 900 {
        city_hash128(data)
    } else {
        let r = city_hash_crc256(data);
        (r[2], r[3])
    }
}

/// The 16 AES IV bytes fc derives from `city_hash_crc_128`: hi64 little-endian,
/// then lo64 little-endian.
pub fn city_hash_crc_128_iv(data: &[u8]) -> [u8; 16] {
    let (hi, lo) = city_hash_crc_128(data);
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(&hi.to_le_bytes());
    iv[8..].copy_from_slice(&lo.to_le_bytes());
    iv
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn hex_u64(v: &Value) -> u64 {
        let s = v.as_str().expect("hex string");
        u64::from_str_radix(s, 16).expect("valid 64-bit hex")
    }

    fn hex_bytes(v: &Value) -> Vec<u8> {
        hex::decode(v.as_str().expect("hex string")).expect("valid hex")
    }

    #[test]
    fn fc_vectors() {
        let doc: Value =
            serde_json::from_str(include_str!("../../tests/vectors/city.json")).expect("json");
        let vectors = doc["vectors"].as_array().expect("vectors array");
        assert!(!vectors.is_empty());
        for v in vectors {
            let len = v["len"].as_u64().expect("len") as usize;
            let input = hex_bytes(&v["input_hex"]);
            assert_eq!(input.len(), len);
            assert!(input.iter().enumerate().all(|(i, &b)| b == i as u8));

            let crc = &v["fc_city_hash_crc_128"];
            assert_eq!(
                city_hash_crc_128(&input),
                (hex_u64(&crc["hi64"]), hex_u64(&crc["lo64"])),
                "city_hash_crc_128 len {len}"
            );
            assert_eq!(
                city_hash_crc_128_iv(&input).to_vec(),
                hex_bytes(&crc["as_aes_iv_bytes"]),
                "iv len {len}"
            );

            let h128 = &v["fc_city_hash128"];
            assert_eq!(
                city_hash128(&input),
                (hex_u64(&h128["hi64"]), hex_u64(&h128["lo64"])),
                "city_hash128 len {len}"
            );
            assert_eq!(
                city_hash64(&input),
                hex_u64(&v["fc_city_hash64"]),
                "city_hash64 len {len}"
            );
        }
    }

    #[test]
    fn handshake_shared_secret_iv() {
        let doc: Value =
            serde_json::from_str(include_str!("../../tests/vectors/crypto.json")).expect("json");
        let pairs = doc["pairs"].as_array().expect("pairs array");
        assert!(!pairs.is_empty());
        for p in pairs {
            let secret = hex_bytes(&p["shared_secret_sha512_of_x"]);
            assert_eq!(secret.len(), 64);
            assert_eq!(
                city_hash_crc_128(&secret),
                (
                    hex_u64(&p["city_hash_crc_128_of_shared_secret_hi64"]),
                    hex_u64(&p["city_hash_crc_128_of_shared_secret_lo64"])
                )
            );
            assert_eq!(
                city_hash_crc_128_iv(&secret).to_vec(),
                hex_bytes(&p["aes_cbc_iv_bytes"])
            );
        }
    }

    #[test]
    fn crc32c_matches_known_check_value() {
        // Standard CRC32C check: "123456789" with init/xorout 0xffffffff.
        let mut c: u32 = !0;
        for b in b"123456789" {
            c = CRC32C_TABLE[usize::from(c as u8 ^ b)] ^ (c >> 8);
        }
        assert_eq!(!c, 0xe306_9283);
        // The u64 step ignores the upper half of the incoming crc.
        assert_eq!(crc32c_u64(0xdead_beef_0000_1234, 7), crc32c_u64(0x1234, 7));
    }

    #[test]
    fn all_lengths_do_not_panic() {
        let data: Vec<u8> = (0..=2100u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..=data.len() {
            let s = &data[..len];
            let _ = city_hash64(s);
            let _ = city_hash128(s);
            let (hi, lo) = city_hash_crc_128(s);
            let iv = city_hash_crc_128_iv(s);
            assert_eq!(iv[..8], hi.to_le_bytes());
            assert_eq!(iv[8..], lo.to_le_bytes());
            if len < 240 {
                let _ = city_hash_crc256(s);
            }
        }
    }
}
