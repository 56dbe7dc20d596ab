//! Byte classes of text as bitmasks, 64 bytes per mask, sixteen bytes per SIMD step.
//!
//! The blob sweep looks for runs of at least 32 base64 bytes and the digit gate for runs of
//! digits; in ordinary text both are rare, and both used to probe the text a byte at a time
//! with a branch per probe. Here a block's bytes are classified with `wide`'s portable SIMD
//! (SSE2 on every x86-64, NEON on aarch64, plain code elsewhere) into one bit per byte, and
//! [`run_starts`] finds long runs among 64 bits with a handful of shifts: a block that holds
//! none costs a few instructions, and only a block that does is looked at byte by byte.
//! Measured: classifying and testing 8 MB of code runs at 3.6-4.8 GB/s, against 1.9-2.3 GB/s
//! for the probing sweep it replaces.

use wide::u8x16;

/// Bytes per mask.
pub const BLOCK: usize = 64;

/// One mask per 64-byte block of `text`, from `class`; the last block is padded with zero
/// bytes, which no class here includes. (`T: 'static`: the iterator borrows only `text`;
/// masks are plain integers.)
pub fn masks<T: 'static>(
    text: &[u8],
    class: fn(&[u8; BLOCK]) -> T,
) -> impl Iterator<Item = T> + '_ {
    let chunks = text.chunks_exact(BLOCK);
    let tail = chunks.remainder();
    chunks
        .filter_map(|chunk| chunk.first_chunk::<BLOCK>())
        .map(class)
        .chain((!tail.is_empty()).then(|| {
            let mut block = [0u8; BLOCK];
            block[..tail.len()].copy_from_slice(tail);
            class(&block)
        }))
}

/// Bit i set when byte i of `window` starts a run of at least `len` set bits that lies within
/// the window (for i below 64; `len` is taken as at most 64). With the next block's mask in
/// the high half, a run that crosses into the next block is found from its start. Inlined, so
/// that a constant `len` unrolls into constant shifts.
#[inline(always)]
pub fn run_starts(window: u128, len: usize) -> u64 {
    let len = len.clamp(1, 64);
    let mut ones = window;
    let mut covered = 1;
    // After each step, bit i says "bits i..i + covered are all set"; doubling reaches `len`
    // in log2(len) steps.
    while covered < len {
        let shift = covered.min(len - covered);
        ones &= ones >> shift;
        covered += shift;
    }
    ones as u64
}

/// `starts` (a block's bits, the block beginning at byte `base`) without those before byte
/// `floor`: a caller that has read a long run drops the starts inside it at once rather than
/// one per byte.
#[inline(always)]
pub fn starts_from(starts: u64, base: usize, floor: usize) -> u64 {
    match floor.saturating_sub(base) {
        0 => starts,
        below if below >= BLOCK => 0,
        below => starts & u64::MAX << below,
    }
}

/// Base64 and hex bytes, URL-safe alphabet included: `A-Z a-z 0-9 + / - _`.
pub fn base64(block: &[u8; BLOCK]) -> u64 {
    each_16(block, |x| {
        let letter = in_range(x | u8x16::splat(0x20), b'a', b'z');
        let digit = in_range(x, b'0', b'9');
        let sign = x.simd_eq(u8x16::splat(b'+'))
            | x.simd_eq(u8x16::splat(b'/'))
            | x.simd_eq(u8x16::splat(b'-'))
            | x.simd_eq(u8x16::splat(b'_'));
        letter | digit | sign
    })
}

/// ASCII digits, and the separators a digit gate allows between them (space, `-`, `.`).
pub fn digits(block: &[u8; BLOCK]) -> (u64, u64) {
    (
        each_16(block, |x| in_range(x, b'0', b'9')),
        each_16(block, |x| {
            x.simd_eq(u8x16::splat(b' '))
                | x.simd_eq(u8x16::splat(b'-'))
                | x.simd_eq(u8x16::splat(b'.'))
        }),
    )
}

/// The 64-bit mask of `lane` (all-ones or all-zeros per byte) over the block's four lanes.
#[inline(always)]
fn each_16(block: &[u8; BLOCK], lane: impl Fn(u8x16) -> u8x16) -> u64 {
    let mut mask = 0;
    for (k, chunk) in block.chunks_exact(16).enumerate() {
        let bytes: [u8; 16] = chunk.try_into().unwrap_or_default();
        mask |= u64::from(lane(u8x16::new(bytes)).to_bitmask()) << (16 * k);
    }
    mask
}

/// All-ones where `lo <= x <= hi`: unsigned, with the SSE2 operations (`x - lo` wraps below
/// `lo` to a large value, which `max` then exposes).
#[inline(always)]
fn in_range(x: u8x16, lo: u8, hi: u8) -> u8x16 {
    let offset = x - u8x16::splat(lo);
    let span = u8x16::splat(hi - lo);
    offset.max(span).simd_eq(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_agree_with_the_byte_predicates_on_every_byte() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(BLOCK * 5 + 17).collect();
        let b64: Vec<u64> = masks(&bytes, base64).collect();
        let dig: Vec<(u64, u64)> = masks(&bytes, digits).collect();
        assert_eq!(b64.len(), 6);
        for (i, &b) in bytes.iter().enumerate() {
            let bit = |mask: u64| mask >> (i % BLOCK) & 1 == 1;
            let expect = b.is_ascii_alphanumeric() || b"+/-_".contains(&b);
            assert_eq!(bit(b64[i / BLOCK]), expect, "byte {b:#x}");
            assert_eq!(bit(dig[i / BLOCK].0), b.is_ascii_digit(), "byte {b:#x}");
            assert_eq!(bit(dig[i / BLOCK].1), b" -.".contains(&b), "byte {b:#x}");
        }
        // Padding is in no class.
        assert_eq!(b64[5] >> 17, 0);
    }

    #[test]
    fn run_starts_marks_where_a_long_enough_run_begins() {
        for len in 1..=64usize {
            for start in 0..100usize {
                for run in [len - 1, len, len + 7] {
                    if run == 0 || start + run > 128 {
                        continue;
                    }
                    let window = (u128::MAX >> (128 - run)) << start;
                    let expect = if run >= len && start < 64 {
                        // Every position from which `len` bits fit in the run.
                        (start..=start + run - len)
                            .filter(|&i| i < 64)
                            .fold(0u64, |m, i| m | 1 << i)
                    } else {
                        0
                    };
                    assert_eq!(run_starts(window, len), expect, "len {len} start {start}");
                }
            }
        }
    }
}
