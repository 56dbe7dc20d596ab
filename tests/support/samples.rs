//! Made-up samples for the detection tests: a seeded generator and the checksummed token shape
//! GitHub and npm share. Included with `#[path]` by the tests that generate credentials, so
//! that the corpus and the held-out set draw them the same way.
#![allow(dead_code)]

/// Deterministic xorshift generator: the samples are the same on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn string(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len())] as char)
            .collect()
    }

    pub fn alnum(&mut self, len: usize) -> String {
        self.string(ALNUM, len)
    }

    pub fn hex(&mut self, len: usize) -> String {
        self.string(HEX, len)
    }
}

pub const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const HEX: &[u8] = b"0123456789abcdef";

/// GitHub/npm style token: prefix, 30 random base62, then the 6-char base62 CRC32 of those 30
/// (off by one when `valid` is false).
pub fn checksummed_token(rng: &mut Rng, prefix: &str, valid: bool) -> String {
    let body = rng.alnum(30);
    let mut crc = crc32fast::hash(body.as_bytes());
    if !valid {
        crc = crc.wrapping_add(1);
    }
    let mut checksum = [b'0'; 6];
    for slot in checksum.iter_mut().rev() {
        *slot = ALNUM[(crc % 62) as usize];
        crc /= 62;
    }
    format!("{prefix}{body}{}", String::from_utf8_lossy(&checksum))
}
