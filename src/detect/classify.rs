//! Byte classes of text as bitmasks, 64 bytes per mask, 32 bytes per SIMD step with AVX2 and
//! sixteen without.
//!
//! The blob sweep looks for runs of at least 32 base64 bytes and the digit gate for runs of
//! digits; in ordinary text both are rare, and both used to probe the text a byte at a time
//! with a branch per probe. Here a block's bytes are classified with `wide`'s portable SIMD
//! (SSE2 on every x86-64, NEON on aarch64, plain code elsewhere) into one bit per byte, and
//! [`run_starts`] finds long runs among 64 bits with a handful of shifts: a block that holds
//! none costs a few instructions, and only a block that does is looked at byte by byte.
//! Measured: classifying and testing 8 MB of code runs at 3.6-4.8 GB/s, against 1.9-2.3 GB/s
//! for the probing sweep it replaces. Where the CPU has AVX2 (module `simd`, chosen at run
//! time) the blob sweep over that code takes a quarter less time again.

use std::ops::ControlFlow;

use wide::u8x16;

/// Bytes per mask.
pub const BLOCK: usize = 64;

/// Calls `visit(base, this, next)` for every block of `text` (the block starting at byte
/// `base`) with its masks of ASCII digits and of the separators a digit gate allows between
/// them (space, `-`, `.`), and the next block's (zeros past the end).
///
/// One call per text, not one per block: the vector classifier is inlined into the loop, so
/// a block costs its few vector instructions, without a call and a CPU check each (a quarter
/// of the digit gate's time on code, where most blocks hold a digit).
pub fn each_digits(text: &[u8], mut visit: impl FnMut(usize, (u64, u64), (u64, u64))) {
    #[cfg(target_arch = "x86_64")]
    if simd::each_digits(text, &mut visit) {
        return;
    }
    each_block(text, digits_portable, &mut visit);
}

/// Like [`each_digits`], with the masks of base64 and hex bytes, URL-safe alphabet included
/// (`A-Z a-z 0-9 + / - _`), and of `%` (the blob sweep's other kind of run, found in the same
/// pass rather than a second one over the text); `visit` may stop the walk.
pub fn each_base64(
    text: &[u8],
    mut visit: impl FnMut(usize, (u64, u64), (u64, u64)) -> ControlFlow<()>,
) {
    #[cfg(target_arch = "x86_64")]
    if simd::each_base64(text, &mut visit) {
        return;
    }
    each_block(text, base64_portable, &mut visit);
}

/// The escape byte that opens a terminal control sequence (`ESC [ 32 m`).
pub const ESCAPE: u8 = 0x1B;

/// Whether folding must look at `byte`: not ASCII (`0x80` or more), or [`ESCAPE`].
#[inline(always)]
pub const fn is_special(byte: u8) -> bool {
    byte >= 0x80 || byte == ESCAPE
}

/// The offset of the first byte of `text` from `from` on that folding must look at
/// ([`is_special`]), if any.
///
/// Folding asks this of every input, and nearly all of a typical input is ASCII without
/// escapes: with AVX2, 128 bytes are tested per step (measured on 8 MiB of code: the 64-byte
/// `is_ascii` steps were 4% of a scan).
pub fn next_special(text: &[u8], from: usize) -> Option<usize> {
    match text.get(from) {
        None => return None,
        // Text in another script is non-ASCII character after character: answered at once,
        // without a vector step that would stop at its first byte.
        Some(&byte) if is_special(byte) => return Some(from),
        Some(_) => {}
    }
    #[cfg(target_arch = "x86_64")]
    let from = simd::skip_plain(text, from);
    let mut at = from;
    while text
        .get(at..at + BLOCK)
        .is_some_and(|block| block.is_ascii() && memchr::memchr(ESCAPE, block).is_none())
    {
        at += BLOCK;
    }
    Some(at + text.get(at..)?.iter().position(|&b| is_special(b))?)
}

/// What a block visitor returns: `()` to go on, or a `ControlFlow` to say whether to.
trait Visited {
    fn stop(self) -> bool;
}

impl Visited for () {
    fn stop(self) -> bool {
        false
    }
}

impl Visited for ControlFlow<()> {
    fn stop(self) -> bool {
        self.is_break()
    }
}

/// The loop behind [`each_digits`] and [`each_base64`], inlined into each so that `class`
/// is too. The last block is padded with zero bytes, which no class here includes.
#[inline(always)]
fn each_block<T: Copy + Default, V: Visited>(
    text: &[u8],
    class: impl Fn(&[u8; BLOCK]) -> T,
    visit: &mut impl FnMut(usize, T, T) -> V,
) {
    let mask_at = |at: usize| match text.get(at..at + BLOCK).and_then(|b| b.first_chunk()) {
        Some(block) => class(block),
        None if at < text.len() => {
            let mut block = [0u8; BLOCK];
            block[..text.len() - at].copy_from_slice(&text[at..]);
            class(&block)
        }
        None => T::default(),
    };
    let mut this = mask_at(0);
    let mut base = 0;
    while base < text.len() {
        let next = mask_at(base + BLOCK);
        if visit(base, this, next).stop() {
            return;
        }
        this = next;
        base += BLOCK;
    }
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

/// The base64 and `%` classes with `wide`'s 16-byte vectors, for CPUs without AVX2.
fn base64_portable(block: &[u8; BLOCK]) -> (u64, u64) {
    (
        each_16(block, |x| {
            let letter = in_range(x | u8x16::splat(0x20), b'a', b'z');
            let digit = in_range(x, b'0', b'9');
            let sign = x.simd_eq(u8x16::splat(b'+'))
                | x.simd_eq(u8x16::splat(b'/'))
                | x.simd_eq(u8x16::splat(b'-'))
                | x.simd_eq(u8x16::splat(b'_'));
            letter | digit | sign
        }),
        each_16(block, |x| x.simd_eq(u8x16::splat(b'%'))),
    )
}

/// The digit classes with `wide`'s 16-byte vectors, for CPUs without AVX2.
fn digits_portable(block: &[u8; BLOCK]) -> (u64, u64) {
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

/// The classes 32 bytes per step where the CPU has AVX2: a third of the instructions of the
/// 16-byte `wide` versions, which SSE2 limits to compares (no byte shuffles). Base64 is
/// classified by two nibble lookups: its bytes are those whose high-nibble class and
/// low-nibble class share a bit.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    use std::arch::x86_64::*;

    use super::BLOCK;

    /// Bits by high nibble: `2` for `+ - /`, `3` digits, `4`/`6` letters from `A`/`a` up to
    /// `O`/`o`, `5` the rest of the capitals and `_`, `7` the rest of the small letters.
    const HIGH: [i8; 16] = [0, 0, 1, 2, 4, 8, 4, 16, 0, 0, 0, 0, 0, 0, 0, 0];
    /// The low nibbles each of those groups admits.
    const LOW: [i8; 16] = {
        let mut low = [0i8; 16];
        let mut nibble = 0;
        while nibble < 16 {
            let mut bits = 0;
            if nibble == 0xB || nibble == 0xD || nibble == 0xF {
                bits |= 1; // + - /
            }
            if nibble <= 9 {
                bits |= 2; // 0-9
            }
            if nibble >= 1 {
                bits |= 4; // A-O, a-o
            }
            if nibble <= 0xA || nibble == 0xF {
                bits |= 8; // P-Z, _
            }
            if nibble <= 0xA {
                bits |= 16; // p-z
            }
            low[nibble] = bits;
            nibble += 1;
        }
        low
    };

    /// [`super::each_digits`] with the AVX2 classifier inlined; `false` (nothing visited)
    /// without AVX2.
    pub(super) fn each_digits(
        text: &[u8],
        visit: &mut impl FnMut(usize, (u64, u64), (u64, u64)),
    ) -> bool {
        if !is_x86_feature_detected!("avx2") {
            return false;
        }
        // SAFETY: the CPU has AVX2, just checked.
        unsafe { each_digits_avx2(text, visit) };
        true
    }

    /// [`super::each_base64`] with the AVX2 classifier inlined; `false` (nothing visited)
    /// without AVX2.
    pub(super) fn each_base64(
        text: &[u8],
        visit: &mut impl FnMut(usize, (u64, u64), (u64, u64)) -> super::ControlFlow<()>,
    ) -> bool {
        if !is_x86_feature_detected!("avx2") {
            return false;
        }
        // SAFETY: the CPU has AVX2, just checked.
        unsafe { each_base64_avx2(text, visit) };
        true
    }

    /// Where the first 128-byte step of `text` from `at` that holds a byte from `0x80` or an
    /// escape (or the last whole step) begins: the caller looks at the rest byte by byte.
    pub(super) fn skip_plain(text: &[u8], at: usize) -> usize {
        if !is_x86_feature_detected!("avx2") {
            return at;
        }
        // SAFETY: the CPU has AVX2, just checked.
        unsafe { skip_plain_avx2(text, at) }
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn skip_plain_avx2(text: &[u8], mut at: usize) -> usize {
        let escape = _mm256_set1_epi8(super::ESCAPE as i8);
        // Not `at + 128 <= len`: that could wrap for an `at` past the end.
        while text.len().saturating_sub(at) >= 128 {
            // SAFETY: the four 32-byte loads lie inside `text[at..at + 128]`; unaligned loads.
            let [a, b, c, d] = unsafe {
                let load = |k: usize| _mm256_loadu_si256(text.as_ptr().add(at + 32 * k).cast());
                [load(0), load(1), load(2), load(3)]
            };
            // A byte from 0x80 has its top bit set; an escape byte becomes all-ones.
            let high = _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d));
            let escapes = _mm256_or_si256(
                _mm256_or_si256(_mm256_cmpeq_epi8(a, escape), _mm256_cmpeq_epi8(b, escape)),
                _mm256_or_si256(_mm256_cmpeq_epi8(c, escape), _mm256_cmpeq_epi8(d, escape)),
            );
            if _mm256_movemask_epi8(_mm256_or_si256(high, escapes)) != 0 {
                break;
            }
            at += 128;
        }
        at
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn each_digits_avx2(text: &[u8], visit: &mut impl FnMut(usize, (u64, u64), (u64, u64))) {
        // SAFETY: this function runs only where the CPU has AVX2.
        super::each_block(text, |block| unsafe { digits_avx2(block) }, visit);
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn each_base64_avx2(
        text: &[u8],
        visit: &mut impl FnMut(usize, (u64, u64), (u64, u64)) -> super::ControlFlow<()>,
    ) {
        // SAFETY: this function runs only where the CPU has AVX2.
        super::each_block(text, |block| unsafe { base64_avx2(block) }, visit);
    }

    /// The block's two 32-byte halves.
    #[target_feature(enable = "avx2")]
    fn halves(block: &[u8; BLOCK]) -> [__m256i; 2] {
        // SAFETY: both 32-byte loads lie inside the 64-byte block; unaligned loads.
        unsafe {
            [
                _mm256_loadu_si256(block.as_ptr().cast()),
                _mm256_loadu_si256(block.as_ptr().add(32).cast()),
            ]
        }
    }

    /// One bit per byte of the two halves' byte masks (all-ones or all-zeros per byte).
    #[target_feature(enable = "avx2")]
    fn bits(masks: [__m256i; 2]) -> u64 {
        let low = _mm256_movemask_epi8(masks[0]) as u32;
        let high = _mm256_movemask_epi8(masks[1]) as u32;
        u64::from(low) | u64::from(high) << 32
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn base64_avx2(block: &[u8; BLOCK]) -> (u64, u64) {
        let high_table = _mm256_broadcastsi128_si256(_mm_setr_epi8(
            HIGH[0], HIGH[1], HIGH[2], HIGH[3], HIGH[4], HIGH[5], HIGH[6], HIGH[7], HIGH[8],
            HIGH[9], HIGH[10], HIGH[11], HIGH[12], HIGH[13], HIGH[14], HIGH[15],
        ));
        let low_table = _mm256_broadcastsi128_si256(_mm_setr_epi8(
            LOW[0], LOW[1], LOW[2], LOW[3], LOW[4], LOW[5], LOW[6], LOW[7], LOW[8], LOW[9],
            LOW[10], LOW[11], LOW[12], LOW[13], LOW[14], LOW[15],
        ));
        let nibble = _mm256_set1_epi8(0x0F);
        let zero = _mm256_setzero_si256();
        let class = |x: __m256i| {
            // Bytes from 0x80 have a high nibble of 8 or more, which `HIGH` leaves empty.
            let high = _mm256_and_si256(_mm256_srli_epi16::<4>(x), nibble);
            let low = _mm256_and_si256(x, nibble);
            let both = _mm256_and_si256(
                _mm256_shuffle_epi8(high_table, high),
                _mm256_shuffle_epi8(low_table, low),
            );
            // All-ones where the two share no bit: inverted below.
            _mm256_cmpeq_epi8(both, zero)
        };
        let percent = |x: __m256i| _mm256_cmpeq_epi8(x, _mm256_set1_epi8(b'%' as i8));
        let [a, b] = halves(block);
        (!bits([class(a), class(b)]), bits([percent(a), percent(b)]))
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn digits_avx2(block: &[u8; BLOCK]) -> (u64, u64) {
        let zero_digit = _mm256_set1_epi8(b'0' as i8);
        let nine = _mm256_set1_epi8(9);
        let digit = |x: __m256i| {
            // `x - '0'` wraps below `'0'` to a large value, which `max` exposes.
            let offset = _mm256_sub_epi8(x, zero_digit);
            _mm256_cmpeq_epi8(_mm256_max_epu8(offset, nine), nine)
        };
        let separator = |x: __m256i| {
            let is = |byte: u8| _mm256_cmpeq_epi8(x, _mm256_set1_epi8(byte as i8));
            _mm256_or_si256(_mm256_or_si256(is(b' '), is(b'-')), is(b'.'))
        };
        let [a, b] = halves(block);
        (
            bits([digit(a), digit(b)]),
            bits([separator(a), separator(b)]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block's masks as `visit` sees them, checking that each block's `next` is the
    /// block after it (zeros past the end).
    fn collect<T: Copy + Default + PartialEq + std::fmt::Debug>(
        walk: impl FnOnce(&mut dyn FnMut(usize, T, T)),
    ) -> Vec<T> {
        let mut seen: Vec<(usize, T, T)> = Vec::new();
        walk(&mut |base, this, next| seen.push((base, this, next)));
        for (i, (base, _, next)) in seen.iter().enumerate() {
            assert_eq!(*base, i * BLOCK);
            assert_eq!(*next, seen.get(i + 1).map_or_else(T::default, |s| s.1));
        }
        seen.into_iter().map(|(_, this, _)| this).collect()
    }

    #[test]
    fn masks_agree_with_the_byte_predicates_on_every_byte() {
        // Every byte at every offset of a block (the cycle of 256 shifts by 64 each block),
        // through the vector versions where the CPU has them and the portable ones.
        let bytes: Vec<u8> = (0..=255u8).cycle().take(BLOCK * 20 + 17).collect();
        fn go_on(
            visit: &mut dyn FnMut(usize, (u64, u64), (u64, u64)),
        ) -> impl FnMut(usize, (u64, u64), (u64, u64)) -> ControlFlow<()> + '_ {
            move |base, this, next| {
                visit(base, this, next);
                ControlFlow::Continue(())
            }
        }
        // (base64 and `%` masks, digit and separator masks) per walk.
        type Walk = (Vec<(u64, u64)>, Vec<(u64, u64)>);
        let walks: [Walk; 2] = [
            (
                collect(|visit| each_base64(&bytes, go_on(visit))),
                collect(|visit| each_digits(&bytes, visit)),
            ),
            (
                collect(|visit| each_block(&bytes, base64_portable, &mut go_on(visit))),
                collect(|visit| each_block(&bytes, digits_portable, &mut |b, t, n| visit(b, t, n))),
            ),
        ];
        for (b64, dig) in walks {
            assert_eq!(b64.len(), 21);
            assert_eq!(dig.len(), 21);
            for (i, &b) in bytes.iter().enumerate() {
                let bit = |mask: u64| mask >> (i % BLOCK) & 1 == 1;
                let expect = b.is_ascii_alphanumeric() || b"+/-_".contains(&b);
                assert_eq!(bit(b64[i / BLOCK].0), expect, "byte {b:#x}");
                assert_eq!(bit(b64[i / BLOCK].1), b == b'%', "byte {b:#x}");
                assert_eq!(bit(dig[i / BLOCK].0), b.is_ascii_digit(), "byte {b:#x}");
                assert_eq!(bit(dig[i / BLOCK].1), b" -.".contains(&b), "byte {b:#x}");
            }
            // Padding is in no class.
            assert_eq!(b64[20].0 >> 17, 0);
            assert_eq!(dig[20].0 >> 17, 0);
        }
    }

    #[test]
    fn a_walk_stops_when_its_visitor_says_so() {
        let text = [b'a'; BLOCK * 5];
        let mut visited = 0;
        each_base64(&text, |_, _, _| {
            visited += 1;
            if visited == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(visited, 2);
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

    #[test]
    fn the_first_special_byte_is_found_wherever_it_sits() {
        // One byte from 0x80, or an escape, at every offset of several vector steps, searched
        // for from every start around it: the vector skip and the byte-wise tail must agree.
        // The bytes beside the escape (0x1A, 0x1C) and DEL are not special.
        let len = 3 * 128 + 41;
        for high in [0x80u8, 0xC3, 0xFF, ESCAPE] {
            for at in 0..len {
                let mut text = vec![b'a'; len];
                text[at] = high;
                for from in [0, 1, at.saturating_sub(1), at, at + 1, 127, 128, 129] {
                    let expect = (from <= at).then_some(at);
                    assert_eq!(next_special(&text, from), expect, "at {at} from {from}");
                }
            }
        }
        assert_eq!(next_special(&[b'a'; 300], 0), None);
        assert_eq!(next_special(&[0x1A, 0x1C, 0x7F].repeat(100), 0), None);
        assert_eq!(next_special(b"", 0), None);
        assert_eq!(next_special(b"ab", 5), None);
        assert_eq!(next_special(&[0x80; 300], usize::MAX), None);
        assert_eq!(next_special(&[0x80; 300], usize::MAX - 100), None);
    }
}
