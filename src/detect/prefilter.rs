//! The keyword prefilter: every occurrence of every rule keyword (case-insensitive).
//!
//! Keywords that overlap each other (`sk-`, `sk-ant-`) are all reported, as the rule engine
//! needs. Single-byte keywords are found with `memchr`, two-byte ones with `memchr` on their
//! rarer byte; every longer keyword is *anchored* on one of its three-byte substrings.
//!
//! Why anchors rather than an automaton: an aho-corasick DFA over ~470 case-insensitive
//! keywords steps through every byte with a table load that depends on the previous one, and
//! its latency bounds the walk (about 0.9 GB/s with eight lanes walked in lockstep). Here each
//! position's next three bytes, case-folded, are hashed into a 256 KiB table that marks the
//! anchors; the positions are independent of each other, so the CPU overlaps their loads.
//! Where the CPU has AVX2, sixteen positions are hashed per step in two vectors and their
//! entries fetched with two gathers (module `simd`; 1.6x the scalar walk, which tests twelve
//! positions per step from two 8-byte reads). Only where the table says "maybe" are the
//! keywords anchored there compared in full.
//!
//! Each keyword's anchor is its rarest trigram in ordinary text, judged by a list of the most
//! common trigrams of code and English (`common_trigrams.txt`, made by
//! `scripts/common-trigrams.py`), so that the table says "maybe" seldom: `secret_key` is
//! anchored on `t_k`, not on `sec`. A keyword occurrence always contains its anchor at a
//! known offset, so nothing is missed whatever the text; a rare anchor only makes it faster.
//!
//! Measured and not taken: the eight-lane automaton (half the speed), aho-corasick's SIMD
//! Teddy searchers (one pass per 64 keywords, 2-4x slower than one automaton), a Teddy-style
//! nibble filter over all anchors (with ~370 anchors it passes one position in seven).

use std::collections::HashMap;
use std::sync::OnceLock;

/// log2 of the anchor table's size: with ~400 anchors, 0.3% of slots are marked, so a
/// position that holds no anchor is rarely sent to the full comparison.
const TABLE_BITS: u32 = 17;
const TABLE_LEN: usize = 1 << TABLE_BITS;
/// Positions tested per step: six trigrams from each of two 8-byte reads.
const STEP: usize = 12;
/// Bytes one step reads: the last trigram starts at `STEP - 1`.
const WINDOW: usize = STEP + 2;

/// Clears bit 5 of a trigram's three bytes (ASCII case) and drops a fourth byte.
const FOLD: u32 = 0x00DF_DFDF;

/// The most common trigrams of ordinary text, most common first (see the module doc).
const COMMON_TRIGRAMS: &str = include_str!("common_trigrams.txt");

pub struct Prefilter {
    /// Single-byte keywords: `(byte, keyword index)`.
    single: Vec<(u8, usize)>,
    /// Two-byte keywords: `(bytes, keyword index)`.
    pairs: Vec<([u8; 2], usize)>,
    /// The bytes one pass looks for: each single-byte keyword's and each pair's probe byte
    /// ([`probe`]), in both cases, without repeats.
    needles: Vec<u8>,
    /// Every longer keyword, anchored on a trigram.
    anchors: Option<Anchors>,
    keywords: usize,
}

/// The anchor table and the keywords behind each of its marks.
struct Anchors {
    /// Hashed folded trigram -> index into `slots` (0: no anchor hashes here). Two bytes
    /// rather than one so that no two table entries share a slot: a common trigram's
    /// comparisons then stop at the keywords really anchored on it (measured: with shared
    /// slots, a fifth of an agent request's scan went to comparing unrelated keywords).
    /// Longer than the table (one entry would do; two keep it a whole number of 4-byte
    /// words): the SIMD walk reads each entry as the low half of a 4-byte word.
    table: Box<[u16; TABLE_LEN + 2]>,
    /// The hash multiplier that keeps common trigrams off the anchors' entries.
    multiplier: u32,
    slots: Vec<Vec<Anchored>>,
    /// How far past its anchor's start a keyword can end: the most any anchored keyword's
    /// length exceeds its anchor's offset.
    reach: usize,
    /// Whether the walk may use the CPU's vector instructions (see `simd`); tests turn this
    /// off to check the scalar walk on machines that have them.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    vectorized: bool,
}

/// A keyword whose anchor starts `offset` bytes into it.
struct Anchored {
    id: usize,
    /// The anchor, folded as [`slot_of`] folds it: a cheap first test.
    anchor: u32,
    offset: usize,
    keyword: Box<[u8]>,
    /// The keyword's first eight bytes (fewer: zero-padded) as one word, and the bits of them
    /// that must match: all of a byte, or all but ASCII case for a letter. One load and
    /// compare rejects a near miss, so that text made of one anchor repeated (`sk-sk-sk-`)
    /// costs one word per keyword anchored there, not a byte-wise comparison.
    head: u64,
    head_mask: u64,
}

impl Anchored {
    fn new(id: usize, keyword: &[u8], offset: usize) -> Self {
        let (mut head, mut head_mask) = (0u64, 0u64);
        for (i, &byte) in keyword.iter().take(8).enumerate() {
            let mask: u8 = if byte.is_ascii_alphabetic() {
                0xDF
            } else {
                0xFF
            };
            head |= u64::from(byte & mask) << (8 * i);
            head_mask |= u64::from(mask) << (8 * i);
        }
        Anchored {
            id,
            anchor: trigram_at(keyword, offset) & FOLD,
            offset,
            keyword: keyword.into(),
            head,
            head_mask,
        }
    }

    /// Whether the keyword occurs at `start` of `text`, ASCII case ignored.
    #[inline(always)]
    fn is_at(&self, text: &[u8], start: usize) -> bool {
        let end = start + self.keyword.len();
        if let Some(word) = text.get(start..start + 8) {
            let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
            if word & self.head_mask != self.head {
                return false;
            }
            if self.keyword.len() <= 8 {
                return true;
            }
        }
        text.get(start..end)
            .is_some_and(|found| found.eq_ignore_ascii_case(&self.keyword))
    }
}

impl std::fmt::Debug for Prefilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefilter")
            .field("keywords", &self.keywords)
            .finish()
    }
}

impl Prefilter {
    /// `keywords` must be lower-case ASCII-folded; their index is what `for_each` reports.
    pub fn new(keywords: &[Vec<u8>]) -> Self {
        let mut single = Vec::new();
        let mut pairs = Vec::new();
        let mut long = Vec::new();
        for (id, keyword) in keywords.iter().enumerate() {
            match keyword.as_slice() {
                [] => {}
                [byte] => single.push((*byte, id)),
                [first, second] => pairs.push(([*first, *second], id)),
                _ => long.push((id, keyword.as_slice())),
            }
        }
        let anchors = (!long.is_empty()).then(|| Anchors::new(&long));
        let mut needles: Vec<u8> = single
            .iter()
            .map(|&(byte, _)| byte)
            .chain(pairs.iter().map(|&(pair, _)| probe(pair).0))
            .flat_map(|byte| [byte, byte.to_ascii_uppercase()])
            .collect();
        needles.sort_unstable();
        needles.dedup();
        Prefilter {
            single,
            pairs,
            needles,
            anchors,
            keywords: keywords.len(),
        }
    }

    /// Calls `found(keyword index, start, end)` for every occurrence in `text`, overlapping ones
    /// included: single-byte keywords first, in order of position, then the others in order
    /// of their end.
    pub fn for_each(&self, text: &[u8], mut found: impl FnMut(usize, usize, usize)) {
        // Multi-byte hits go out in order of their end: the rule engine merges each rule's
        // windows as hits arrive and would have to sort them otherwise. Two-byte keywords'
        // hits are few: collected, sorted, and merged into the anchors' ordered stream.
        let mut pairs = Vec::new();
        let mut at_needle = |at: usize| {
            let byte = text[at];
            for &(single, id) in &self.single {
                if byte.eq_ignore_ascii_case(&single) {
                    found(id, at, at + 1);
                }
            }
            for &(pair, id) in &self.pairs {
                let (probe, back) = probe(pair);
                if !byte.eq_ignore_ascii_case(&probe) {
                    continue;
                }
                let Some(start) = at.checked_sub(back) else {
                    continue;
                };
                if text
                    .get(start..start + 2)
                    .is_some_and(|bytes| bytes.eq_ignore_ascii_case(&pair))
                {
                    pairs.push((start + 2, start, id));
                }
            }
        };
        // One pass for every single-byte keyword and every pair's probe while memchr can
        // take their bytes at once (the shipped rules look for `@`, `+` and `~`).
        match self.needles[..] {
            [] => {}
            [a] => memchr::memchr_iter(a, text).for_each(&mut at_needle),
            [a, b] => memchr::memchr2_iter(a, b, text).for_each(&mut at_needle),
            [a, b, c] => memchr::memchr3_iter(a, b, c, text).for_each(&mut at_needle),
            _ => {
                let mut wanted = [false; 256];
                for &byte in &self.needles {
                    wanted[usize::from(byte)] = true;
                }
                for (at, &byte) in text.iter().enumerate() {
                    if wanted[usize::from(byte)] {
                        at_needle(at);
                    }
                }
            }
        }
        // Each keyword's hits are in order already: a stable sort merges the runs.
        pairs.sort();
        let mut pairs = pairs.into_iter().peekable();
        let mut emit = |end: usize, start: usize, id: usize| {
            while let Some((pair_end, pair_start, pair_id)) = pairs.next_if(|p| p.0 <= end) {
                found(pair_id, pair_start, pair_end);
            }
            found(id, start, end);
        };
        if let Some(anchors) = &self.anchors {
            anchors.find(text, &mut emit);
        }
        for (end, start, id) in pairs {
            found(id, start, end);
        }
    }
}

/// The byte of a two-byte keyword to look for, and its offset in the keyword: the rarer of the
/// two, punctuation rather than a letter (`~` of `q~`).
fn probe([first, second]: [u8; 2]) -> (u8, usize) {
    if first.is_ascii_alphanumeric() && !second.is_ascii_alphanumeric() {
        (second, 1)
    } else {
        (first, 0)
    }
}

/// The anchor-table slot of the trigram in the low three bytes of `bytes` (the fourth is
/// ignored), ASCII case folded: `& 0xDF` maps both cases of a letter to one value, and any
/// two bytes equal but for case to the same value.
/// `multiplier` is the table's own (see [`choose_multiplier`]).
#[inline(always)]
fn slot_of(bytes: u32, multiplier: u32) -> usize {
    ((bytes & FOLD).wrapping_mul(multiplier) >> (32 - TABLE_BITS)) as usize
}

/// Picks the hash multiplier under which the fewest common trigrams share a table entry with
/// an anchor, weighing each by how common it is. A common trigram that lands on an anchor's
/// entry marks positions for nothing: with the first fixed multiplier, `mit` and `lik` did,
/// and were half of all marked positions in English prose.
fn choose_multiplier(anchors: &[u32]) -> u32 {
    let ranks = common_trigrams();
    let common: Vec<(u32, usize)> = ranks
        .iter()
        .map(|(gram, &rank)| {
            let folded = u32::from_le_bytes([gram[0], gram[1], gram[2], 0]) & FOLD;
            (folded, ranks.len() - rank)
        })
        .filter(|(folded, _)| !anchors.contains(folded))
        .collect();
    // One bit per table entry: 16 KiB, refilled per candidate.
    let mut occupied = vec![0u64; TABLE_LEN / 64];
    let is_set = |bits: &[u64], slot: usize| bits[slot / 64] >> (slot % 64) & 1 == 1;
    let mut best = (usize::MAX, 0x9E37_79B1);
    // A fixed sequence of odd multipliers (SplitMix64's), so every build picks the same one.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..32 {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let multiplier = (z >> 32) as u32 | 1;
        occupied.fill(0);
        for &anchor in anchors {
            let slot = slot_of(anchor, multiplier);
            occupied[slot / 64] |= 1 << (slot % 64);
        }
        let cost: usize = common
            .iter()
            .filter(|&&(gram, _)| is_set(&occupied, slot_of(gram, multiplier)))
            .map(|&(_, weight)| weight)
            .sum();
        if cost < best.0 {
            best = (cost, multiplier);
            if cost == 0 {
                break;
            }
        }
    }
    best.1
}

/// The trigram starting at `at`, read as the low bytes of a `u32`; zero past the end.
#[inline(always)]
fn trigram_at(text: &[u8], at: usize) -> u32 {
    let byte = |i: usize| u32::from(text.get(at + i).copied().unwrap_or(0));
    byte(0) | byte(1) << 8 | byte(2) << 16
}

/// Trigram -> rank in [`COMMON_TRIGRAMS`] (0: the most common), lower-case.
fn common_trigrams() -> &'static HashMap<[u8; 3], usize> {
    static RANKS: OnceLock<HashMap<[u8; 3], usize>> = OnceLock::new();
    RANKS.get_or_init(|| {
        COMMON_TRIGRAMS
            .lines()
            .filter_map(|line| {
                let byte = |i: usize| u8::from_str_radix(line.get(2 * i..2 * i + 2)?, 16).ok();
                Some([byte(0)?, byte(1)?, byte(2)?])
            })
            .enumerate()
            .map(|(rank, gram)| (gram, rank))
            .collect()
    })
}

/// Where `keyword` (three bytes or more) is anchored: its least common trigram, and among
/// trigrams absent from the list, the one with fewest letters (digits and punctuation are
/// rarer in a row than letters), then the first.
fn anchor_offset(keyword: &[u8]) -> usize {
    let ranks = common_trigrams();
    (0..=keyword.len().saturating_sub(3))
        .min_by_key(|&at| {
            let gram: [u8; 3] = std::array::from_fn(|i| keyword[at + i].to_ascii_lowercase());
            let commonness = ranks.get(&gram).map_or(0, |rank| ranks.len() - rank);
            let letters = gram.iter().filter(|b| b.is_ascii_alphabetic()).count();
            (commonness, letters, at)
        })
        .unwrap_or(0)
}

impl Anchors {
    /// `keywords`: `(index, keyword)`, each at least three bytes long.
    fn new(keywords: &[(usize, &[u8])]) -> Self {
        let mut table: Box<[u16; TABLE_LEN + 2]> = vec![0u16; TABLE_LEN + 2]
            .into_boxed_slice()
            .try_into()
            .unwrap_or_else(|_| unreachable!("a vector of TABLE_LEN + 2 entries"));
        let mut slots: Vec<Vec<Anchored>> = vec![Vec::new()];
        let mut reach = 0;
        let anchored: Vec<Anchored> = keywords
            .iter()
            .map(|&(id, keyword)| Anchored::new(id, keyword, anchor_offset(keyword)))
            .collect();
        let mut folded: Vec<u32> = anchored.iter().map(|a| a.anchor).collect();
        folded.sort_unstable();
        folded.dedup();
        let multiplier = choose_multiplier(&folded);
        for anchored in anchored {
            reach = reach.max(anchored.keyword.len() - anchored.offset);
            let slot = slot_of(anchored.anchor, multiplier);
            if table[slot] == 0 {
                // At most one slot per table entry, so fewer than 2^17 of them: with more
                // than 65,535, later ones share the last (each keyword is still compared).
                table[slot] = u16::try_from(slots.len()).unwrap_or(u16::MAX);
                if slots.len() <= usize::from(u16::MAX) {
                    slots.push(Vec::new());
                }
            }
            slots[usize::from(table[slot])].push(anchored);
        }
        Anchors {
            table,
            multiplier,
            slots,
            reach,
            vectorized: true,
        }
    }

    /// Calls `emit(end, start, index)` for every keyword occurrence in `text`, in order of end.
    fn find(&self, text: &[u8], emit: &mut impl FnMut(usize, usize, usize)) {
        let mut hits = InOrder::new(self.reach, emit);
        let hits = &mut hits;
        let table = &*self.table;
        let multiplier = self.multiplier;
        let mut at = 0;
        #[cfg(target_arch = "x86_64")]
        if self.vectorized {
            at = simd::walk(self, text, hits);
        }
        while let Some(window) = text.get(at..).and_then(|rest| rest.first_chunk::<WINDOW>()) {
            let near = u64::from_le_bytes(window[..8].try_into().unwrap_or_default());
            let far = u64::from_le_bytes(window[6..].try_into().unwrap_or_default());
            let mut marked = 0;
            for k in 0..6 {
                marked |= table[slot_of((near >> (8 * k)) as u32, multiplier)]
                    | table[slot_of((far >> (8 * k)) as u32, multiplier)];
            }
            if marked != 0 {
                self.confirm_step(text, at, [near, far], hits);
            }
            at += STEP;
        }
        for start in at..text.len().saturating_sub(2) {
            self.confirm(text, start, trigram_at(text, start), hits);
        }
        hits.flush(usize::MAX);
    }

    /// The slow path of one step of [`Anchors::find`], out of line so that the fast one keeps
    /// its registers: confirms each of the step's positions that the table marks.
    #[inline(never)]
    fn confirm_step<F: FnMut(usize, usize, usize)>(
        &self,
        text: &[u8],
        at: usize,
        words: [u64; 2],
        hits: &mut InOrder<'_, F>,
    ) {
        let bytes = |k: usize| (words[k / 6] >> (8 * (k % 6))) as u32;
        // The marked positions as bits first, then one branch per mark rather than one per
        // position.
        let mut marks = 0u32;
        for k in 0..STEP {
            marks |= u32::from(self.table[slot_of(bytes(k), self.multiplier)] != 0) << k;
        }
        self.confirm_marked(text, at, marks, hits);
    }

    /// Confirms the positions `at + k` for each bit `k` set in `marks`, in order: the slow
    /// path of both walks, out of line so that their loops keep their registers.
    #[inline(never)]
    fn confirm_marked<F: FnMut(usize, usize, usize)>(
        &self,
        text: &[u8],
        at: usize,
        mut marks: u32,
        hits: &mut InOrder<'_, F>,
    ) {
        while marks != 0 {
            let start = at + marks.trailing_zeros() as usize;
            self.confirm(text, start, trigram_at(text, start), hits);
            marks &= marks - 1;
        }
    }

    /// Compares the keywords anchored on the trigram at `at` (the low three bytes of `bytes`)
    /// with the text around it.
    #[inline(always)]
    fn confirm<F: FnMut(usize, usize, usize)>(
        &self,
        text: &[u8],
        at: usize,
        bytes: u32,
        hits: &mut InOrder<'_, F>,
    ) {
        let slot = self.table[slot_of(bytes, self.multiplier)];
        if slot == 0 {
            return;
        }
        hits.flush(at + 3);
        let trigram = bytes & FOLD;
        for anchored in &self.slots[usize::from(slot)] {
            if anchored.anchor != trigram {
                continue;
            }
            let Some(start) = at.checked_sub(anchored.offset) else {
                continue;
            };
            if anchored.is_at(text, start) {
                hits.push(start + anchored.keyword.len(), start, anchored.id);
            }
        }
    }
}

/// The anchor walk with the trigrams of sixteen positions hashed and looked up per step,
/// eight per vector.
///
/// A gather is bound by its loads (about one lane per cycle here), not by the hashing: a
/// 16 KiB bitmap in the L1 cache instead of the 256 KiB table measured no faster, nor did
/// AVX-512's sixteen-lane gathers (an isolated walk over 8 MiB of code: scalar 2.1 GB/s,
/// AVX2 3.5, bitmap 3.4, AVX-512 3.6). Marked lanes come back as a bit mask, so only they
/// are confirmed: confirming every position of a marked step cost two thirds of the walk
/// again on prose.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    use std::arch::x86_64::*;

    use super::{Anchors, InOrder, FOLD, TABLE_BITS};

    /// Positions per step: two vectors of eight.
    const STEP: usize = 16;
    /// Bytes one step reads: two 16-byte loads, the second eight bytes on.
    const READ: usize = 24;

    /// The SIMD walk where the CPU has it (see [`walk_avx2`]), else nothing walked: returns
    /// where the scalar walk must start.
    pub(super) fn walk<F: FnMut(usize, usize, usize)>(
        anchors: &Anchors,
        text: &[u8],
        hits: &mut InOrder<'_, F>,
    ) -> usize {
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, just checked.
            unsafe { walk_avx2(anchors, text, hits) }
        } else {
            0
        }
    }

    /// Walks `text` sixteen positions per step while a step's bytes are all inside it, and
    /// returns where it stopped; the caller walks the rest. The marked positions of a step
    /// are confirmed in order, as the scalar walk confirms them.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn walk_avx2<F: FnMut(usize, usize, usize)>(
        anchors: &Anchors,
        text: &[u8],
        hits: &mut InOrder<'_, F>,
    ) -> usize {
        let mut at = 0;
        loop {
            // SAFETY: this function runs only where the CPU has AVX2.
            match unsafe { next_marked(anchors, text, at) } {
                (step, 0) => return step,
                (step, marks) => {
                    anchors.confirm_marked(text, step, marks, hits);
                    at = step + STEP;
                }
            }
        }
    }

    /// From `at`, the first step that holds a marked position and its marks (one bit per
    /// position), or where the walk stopped and no mark. Out of line and without a call in
    /// its loop, so that its constants stay in registers: with the confirming call inside
    /// the loop, they were reloaded from the stack every step, two loads beside the
    /// gathers' sixteen.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    unsafe fn next_marked(anchors: &Anchors, text: &[u8], mut at: usize) -> (usize, u32) {
        // Lane j of a vector takes bytes j..j+4 of the 16 loaded: its trigram and one more
        // byte, which the fold clears.
        let spread = _mm256_setr_epi8(
            0, 1, 2, 3, 1, 2, 3, 4, 2, 3, 4, 5, 3, 4, 5, 6, //
            4, 5, 6, 7, 5, 6, 7, 8, 6, 7, 8, 9, 7, 8, 9, 10,
        );
        let fold = _mm256_set1_epi32(FOLD as i32);
        let multiplier = _mm256_set1_epi32(anchors.multiplier as i32);
        let entry = _mm256_set1_epi32(0xFFFF);
        let table = anchors.table.as_ptr().cast::<i32>();
        let entries = |at: usize| {
            // SAFETY: the loop keeps `at + READ <= text.len()`, and a 16-byte load at
            // `at + 8` ends there.
            let bytes = unsafe { _mm_loadu_si128(text.as_ptr().add(at).cast()) };
            let lanes = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(bytes), spread);
            let hashed = _mm256_mullo_epi32(_mm256_and_si256(lanes, fold), multiplier);
            let slot = _mm256_srli_epi32::<{ 32 - TABLE_BITS as i32 }>(hashed);
            // SAFETY: a slot is below 2^TABLE_BITS (a 32-bit value shifted right by
            // 32 - TABLE_BITS), and the table holds two entries more, so the 4-byte read
            // at entry `slot` (scale 2) stays inside it.
            let words = unsafe { _mm256_i32gather_epi32::<2>(table, slot) };
            _mm256_and_si256(words, entry)
        };
        // One bit per lane whose entry is set.
        let marks = |entries: __m256i| {
            let unset = _mm256_cmpeq_epi32(entries, _mm256_setzero_si256());
            !_mm256_movemask_ps(_mm256_castsi256_ps(unset)) as u32 & 0xFF
        };
        while at + READ <= text.len() {
            let (near, far) = (entries(at), entries(at + 8));
            let any = _mm256_or_si256(near, far);
            if _mm256_testz_si256(any, any) == 0 {
                return (at, marks(near) | marks(far) << 8);
            }
            at += STEP;
        }
        (at, 0)
    }
}

/// Anchor hits put back in order of their end, as they are found, in memory bounded by the
/// longest keyword rather than by the number of hits.
///
/// Positions are confirmed in increasing order, and a hit confirmed at `at` ends within
/// `at + 3..=at + reach`: once the walk is at `at`, every hit that ends before `at + 3` is
/// final. Pending hits sit in a ring of buckets by end. (Collecting every hit and sorting
/// them measured 12x slower on text that is one keyword repeated, and held them all.)
struct InOrder<'a, F: FnMut(usize, usize, usize)> {
    /// `buckets[end & mask]`: `(start, keyword index)` of pending hits; a power of two long,
    /// so that finding a bucket is a mask, not a division.
    buckets: Vec<Vec<(usize, usize)>>,
    mask: usize,
    /// The least end among pending hits (`usize::MAX` when there are none): a flush goes
    /// straight there rather than through every position in between (with a common word as
    /// keyword, a hit every few dozen bytes, stepping was a sixth of the scan).
    earliest: usize,
    pending: usize,
    emit: &'a mut F,
}

impl<'a, F: FnMut(usize, usize, usize)> InOrder<'a, F> {
    fn new(reach: usize, emit: &'a mut F) -> Self {
        let len = (reach + 1).next_power_of_two();
        InOrder {
            buckets: vec![Vec::new(); len],
            mask: len - 1,
            earliest: usize::MAX,
            pending: 0,
            emit,
        }
    }

    /// Emits, in order, every pending hit that ends before `limit`.
    fn flush(&mut self, limit: usize) {
        while self.earliest < limit {
            let end = self.earliest;
            let bucket = &mut self.buckets[end & self.mask];
            self.pending -= bucket.len();
            for (start, id) in bucket.drain(..) {
                (self.emit)(end, start, id);
            }
            // Pending hits end within one turn of the ring past `end`.
            self.earliest = if self.pending == 0 {
                usize::MAX
            } else {
                (end + 1..=end + self.buckets.len())
                    .find(|&at| !self.buckets[at & self.mask].is_empty())
                    .unwrap_or(usize::MAX)
            };
        }
    }

    /// A hit confirmed at position `at` (`end` within `at + 3..=at + reach`).
    fn push(&mut self, end: usize, start: usize, id: usize) {
        self.buckets[end & self.mask].push((start, id));
        self.pending += 1;
        self.earliest = self.earliest.min(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(keywords: &[&str], text: &str) -> Vec<(usize, usize, usize)> {
        let keywords: Vec<Vec<u8>> = keywords.iter().map(|k| k.as_bytes().to_vec()).collect();
        let mut out = Vec::new();
        for prefilter in both_walks(&keywords) {
            let mut found = Vec::new();
            prefilter.for_each(text.as_bytes(), |id, start, end| {
                found.push((id, start, end))
            });
            found.sort_unstable();
            if !out.is_empty() {
                assert_eq!(found, out, "the vector and scalar walks disagree");
            }
            out = found;
        }
        out
    }

    /// The prefilter twice: walking with the CPU's vector instructions where it has them,
    /// and walking without.
    fn both_walks(keywords: &[Vec<u8>]) -> [Prefilter; 2] {
        let mut scalar = Prefilter::new(keywords);
        if let Some(anchors) = &mut scalar.anchors {
            anchors.vectorized = false;
        }
        [Prefilter::new(keywords), scalar]
    }

    /// Every (keyword, start, end) a byte-by-byte search finds, overlapping ones included.
    fn naive(keywords: &[&str], text: &str) -> Vec<(usize, usize, usize)> {
        let lower = text.to_ascii_lowercase();
        let mut out = Vec::new();
        for (id, keyword) in keywords.iter().enumerate() {
            for at in 0..lower.len() {
                if lower.as_bytes()[at..].starts_with(keyword.as_bytes()) {
                    out.push((id, at, at + keyword.len()));
                }
            }
        }
        out.sort_unstable();
        out
    }

    #[test]
    fn overlapping_and_case_folded_keywords_are_all_found() {
        let text = "xx SK-ANT-api03 and sk- plus a@b, then Github_Token here and more padding";
        assert_eq!(
            hits(&["sk-", "sk-ant-", "@", "github", "token"], text),
            [
                (0, 3, 6),
                (0, 20, 23),
                (1, 3, 10),
                (2, 30, 31),
                (3, 39, 45),
                (4, 46, 51)
            ]
        );
    }

    #[test]
    fn hundreds_of_keywords_are_all_found() {
        let keywords: Vec<String> = (0..300).map(|i| format!("kw{i:03}_")).collect();
        let refs: Vec<&str> = keywords.iter().map(String::as_str).collect();
        let text = "a kw299_ b KW007_ c kw150_kw151_ d".repeat(3);
        let found = hits(&refs, &text);
        assert_eq!(found.len(), 12, "{found:?}");
    }

    #[test]
    fn every_occurrence_is_found_once_whatever_the_keywords_and_text() {
        // Few distinct bytes, so keywords overlap and share anchors; bytes that fold together
        // under `FOLD` but are not the same byte (`-` and CR, `@` and a backtick, `_` and DEL,
        // space and NUL) and non-ASCII ones; texts of every length around a step, so the tail
        // is covered too.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound) as usize
        };
        for round in 0..60 {
            let (count, alphabet): (usize, &[u8]) = match round % 3 {
                0 => (600, b"abcdAB_-0123"),
                1 => (1 + next(40), b"abcAB_-9"),
                _ => (1 + next(80), b"aA-\r@`_\x7f \0\xc3\xe3"),
            };
            let mut pick = |n: Option<usize>| -> Vec<u8> {
                let n = n.unwrap_or_else(|| 1 + next(12));
                (0..n)
                    .map(|_| alphabet[next(alphabet.len() as u64)])
                    .collect()
            };
            let keywords: Vec<Vec<u8>> = (0..count)
                .map(|_| pick(None).to_ascii_lowercase())
                .collect();
            let walks = both_walks(&keywords);
            for (len, prefilter) in [0, 1, 2, 3, 13, 14, 15, 23, 24, 25, 26, 27, 40, 300]
                .into_iter()
                .flat_map(|len| walks.iter().map(move |walk| (len, walk)))
            {
                let text = pick(Some(len));
                let mut found = Vec::new();
                prefilter.for_each(&text, |id, start, end| found.push((id, start, end)));
                // Multi-byte hits in order of their end.
                let ends: Vec<usize> = found
                    .iter()
                    .filter(|&&(id, _, _)| keywords[id].len() > 1)
                    .map(|&(_, _, end)| end)
                    .collect();
                assert!(ends.is_sorted(), "out of order: {found:?}");
                found.sort_unstable();
                let lower = text.to_ascii_lowercase();
                let mut expect = Vec::new();
                for (id, keyword) in keywords.iter().enumerate() {
                    for at in 0..lower.len() {
                        if lower[at..].starts_with(keyword) {
                            expect.push((id, at, at + keyword.len()));
                        }
                    }
                }
                expect.sort_unstable();
                assert_eq!(found, expect, "{keywords:?} in {text:?}");
            }
        }
    }

    #[test]
    fn text_of_one_keyword_repeated_is_reported_in_order() {
        // Every position a hit of two keywords; hits must come out in order of end, each
        // once, without collecting and sorting them all.
        let keywords = [b"a".repeat(10), b"a".repeat(20), b"sk-".to_vec()];
        let text = b"a".repeat(10_000);
        for prefilter in both_walks(&keywords) {
            let mut ends = Vec::new();
            prefilter.for_each(&text, |id, start, end| {
                assert_eq!(end - start, keywords[id].len());
                ends.push(end);
            });
            assert_eq!(ends.len(), (10_000 - 9) + (10_000 - 19));
            assert!(ends.is_sorted());
        }
    }

    #[test]
    fn the_common_trigram_list_is_read_whole() {
        assert_eq!(common_trigrams().len(), COMMON_TRIGRAMS.lines().count());
        assert!(common_trigrams().contains_key(b"the"));
        // A keyword is anchored away from its common trigrams.
        assert_eq!(anchor_offset(b"secret_key"), 5, "t_k");
    }

    #[test]
    fn keywords_across_steps_are_found_once() {
        // Keywords at every offset around each step of the table walk, including the
        // longest one.
        let keywords = [
            "sk-ant-",
            "key",
            "ghp_",
            "a-very-long-keyword-of-thirty-bytes",
            "q~",
        ];
        let unit = "xx sk-ant-Key ghp_ A-VERY-LONG-KEYWORD-OF-THIRTY-BYTES q~ ";
        for pad in 0..unit.len() {
            let text = format!("{}{}", "-".repeat(pad), unit.repeat(200));
            assert_eq!(hits(&keywords, &text), naive(&keywords, &text), "pad {pad}");
        }
        // And in order of their end, as one walk would report them.
        let text = unit.repeat(200);
        let owned: Vec<Vec<u8>> = keywords.iter().map(|k| k.as_bytes().to_vec()).collect();
        for prefilter in both_walks(&owned) {
            let mut ends = Vec::new();
            prefilter.for_each(text.as_bytes(), |id, _, end| {
                if keywords[id].len() > 1 {
                    ends.push(end);
                }
            });
            assert!(ends.windows(2).all(|w| w[0] <= w[1]), "hits out of order");
        }
    }
}
