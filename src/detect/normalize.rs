//! Normalisation against evasion, with every span mapped back to the ORIGINAL bytes.
//!
//! Two transformations, both only taken when the input needs them so the plain-ASCII fast path
//! pays nothing but one `is_ascii` pass and one table-driven blob sweep:
//!
//! - [`Folded`]: zero-width and bidi controls dropped, full-width and compatibility forms folded
//!   (NFKC, per character), so `ｓｋ-…` or a key with U+200B inside still matches its rule;
//!   terminal control sequences (`ESC [ 32 m`) dropped too, so a token in coloured output does.
//! - [`find_blobs`]: base64, hex and URL-percent runs long enough to hide a secret, decoded when
//!   the result looks like text. The scanner scans the decoded bytes again (bounded depth and
//!   total size) and reports what it finds at the blob's span.
//!
//! Nothing here may panic on any input: invalid UTF-8 passes through byte for byte.

use std::ops::{ControlFlow, Range};

use unicode_normalization::UnicodeNormalization;

use super::classify;
use super::validators::decode_base64;

/// Input with invisible characters dropped and compatibility forms folded, plus the map from
/// the folded text back to the original bytes.
#[derive(Debug)]
pub struct Folded {
    pub text: Vec<u8>,
    /// Pieces of `text` in order; offsets between pieces map back through [`Piece`].
    pieces: Vec<Piece>,
}

/// `text[out..out + out_len]` came from `input[orig..orig + orig_len]`: byte for byte when
/// `verbatim`, else as one folded character.
#[derive(Debug, Clone, Copy)]
struct Piece {
    out: usize,
    orig: usize,
    out_len: usize,
    orig_len: usize,
    verbatim: bool,
}

/// Characters that render as nothing (or reorder text) and so can hide inside a token.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'                  // soft hyphen
        | '\u{180E}'                // Mongolian vowel separator
        | '\u{200B}'..='\u{200F}'   // zero-width space/joiners, LRM/RLM
        | '\u{202A}'..='\u{202E}'   // bidi embeddings and overrides
        | '\u{2060}'..='\u{2064}'   // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}'   // bidi isolates
        | '\u{FEFF}'                // zero-width no-break space / BOM
    )
}

/// Whether folding changes `c` (dropped, or NFKC maps it to something else).
fn folds(c: char) -> bool {
    if is_invisible(c) {
        return true;
    }
    let mut folded = std::iter::once(c).nfkc();
    !(folded.next() == Some(c) && folded.next().is_none())
}

impl Folded {
    /// The folded input, or `None` when folding would not change it (all ASCII, or only
    /// characters that are already in their folded form: the common case for non-English text).
    pub fn new(input: &[u8]) -> Option<Self> {
        // One pass: nothing is allocated until the first character that folds.
        let mut chars = Specials::new(input)
            .filter_map(|(at, special, len)| match special {
                Special::Char(c) if folds(c) => Some((at, Some(c), len)),
                Special::Char(_) | Special::Invalid => None,
                Special::Control => Some((at, None, len)),
            })
            .peekable();
        chars.peek()?;
        let mut folded = Folded {
            text: Vec::with_capacity(input.len()),
            pieces: Vec::new(),
        };
        let mut verbatim_from = 0;
        for (at, c, len) in chars {
            folded.verbatim(&input[verbatim_from..at], verbatim_from);
            verbatim_from = at + len;
            // Dropped: a control sequence, or a character that renders as nothing.
            let Some(c) = c.filter(|&c| !is_invisible(c)) else {
                continue;
            };
            let out = folded.text.len();
            let mut buf = [0u8; 4];
            for f in std::iter::once(c).nfkc() {
                folded
                    .text
                    .extend_from_slice(f.encode_utf8(&mut buf).as_bytes());
            }
            folded.pieces.push(Piece {
                out,
                orig: at,
                out_len: folded.text.len() - out,
                orig_len: len,
                verbatim: false,
            });
        }
        folded.verbatim(&input[verbatim_from..], verbatim_from);
        Some(folded)
    }

    fn verbatim(&mut self, bytes: &[u8], orig: usize) {
        if bytes.is_empty() {
            return;
        }
        self.pieces.push(Piece {
            out: self.text.len(),
            orig,
            out_len: bytes.len(),
            orig_len: bytes.len(),
            verbatim: true,
        });
        self.text.extend_from_slice(bytes);
    }

    fn piece(&self, at: usize) -> Option<&Piece> {
        let index = self.pieces.partition_point(|p| p.out + p.out_len <= at);
        self.pieces.get(index)
    }

    /// The original byte range that `span` of the folded text came from.
    pub fn original(&self, span: Range<usize>) -> Range<usize> {
        let start = match self.piece(span.start) {
            Some(p) if p.verbatim => p.orig + (span.start - p.out),
            Some(p) => p.orig,
            None => return 0..0,
        };
        let last = span.end.saturating_sub(1).max(span.start);
        let end = match self.piece(last) {
            Some(p) if p.verbatim => p.orig + (last - p.out) + 1,
            Some(p) => p.orig + p.orig_len,
            None => start,
        };
        start..end.max(start)
    }
}

/// What folding finds at a byte [`classify::is_special`] marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    /// A character outside ASCII.
    Char(char),
    /// A byte from `0x80` that starts no valid UTF-8 character, or an escape that starts no
    /// control sequence: left as it is.
    Invalid,
    /// A terminal control sequence (`ESC [ 1 ; 32 m`: colours, cursor moves): it renders as
    /// nothing, so it is dropped like an invisible character. Terminal output an agent sends
    /// is full of them, and one glued to a token (`\x1b[32mghp_...`) hid the token from
    /// every rule that opens with `\b` (the sequence's final `m` is a word byte).
    Control,
}

/// The length of the control sequence (CSI: `ESC [`, parameter bytes `0x30-0x3F`,
/// intermediate bytes `0x20-0x2F`, a final byte `0x40-0x7E`) at the start of `bytes`, if one
/// is there. Parameters are bounded (a real sequence holds a few numbers), so that an escape
/// followed by a long run of digits is not taken for one. Without parameters, only the finals
/// that programs write that way (`ESC [ m` reset, `K` and `J` erase, `H` home) end one: any
/// letter is a final byte, and `ESC [` straight before `AKIA...` must not eat the `A`.
fn control_sequence(bytes: &[u8]) -> Option<usize> {
    const MAX_PARAMETERS: usize = 32;
    let rest = bytes.strip_prefix(&[classify::ESCAPE, b'['])?;
    let parameters = rest
        .iter()
        .take(MAX_PARAMETERS + 1)
        .take_while(|b| (0x30..=0x3F).contains(*b))
        .count();
    let intermediates = rest[parameters..]
        .iter()
        .take(4)
        .take_while(|b| (0x20..=0x2F).contains(*b))
        .count();
    let last = 2 + parameters + intermediates;
    let end = *bytes.get(last)?;
    let ends = match parameters + intermediates {
        0 => b"mKJH".contains(&end),
        _ => (0x40..=0x7E).contains(&end),
    };
    (parameters <= MAX_PARAMETERS && ends).then_some(last + 1)
}

/// Every byte of the input folding must look at ([`classify::is_special`]), as
/// `(offset, what, length)`. Skips plain ASCII a vector step at a time
/// ([`classify::next_special`]), so mostly-ASCII text costs little more than a memory read.
struct Specials<'a> {
    input: &'a [u8],
    at: usize,
}

impl<'a> Specials<'a> {
    fn new(input: &'a [u8]) -> Self {
        Specials { input, at: 0 }
    }
}

impl Iterator for Specials<'_> {
    type Item = (usize, Special, usize);

    fn next(&mut self) -> Option<Self::Item> {
        let input = self.input;
        let at = classify::next_special(input, self.at)?;
        let (special, len) = if input[at] == classify::ESCAPE {
            match control_sequence(&input[at..]) {
                Some(len) => (Special::Control, len),
                None => (Special::Invalid, 1),
            }
        } else {
            let head = &input[at..input.len().min(at + 4)];
            let c = head
                .utf8_chunks()
                .next()
                .and_then(|chunk| chunk.valid().chars().next());
            c.map_or((Special::Invalid, 1), |c| (Special::Char(c), c.len_utf8()))
        };
        self.at = at + len;
        Some((at, special, len))
    }
}

/// An encoded run and what it decodes to.
#[derive(Debug)]
pub struct Blob {
    pub span: Range<usize>,
    pub decoded: Vec<u8>,
}

/// Shortest base64 run worth decoding: 32 chars = 24 bytes, shorter than most secrets'
/// surroundings (`KEY=...`) plus the secret itself.
const MIN_BASE64: usize = 32;
/// Shortest hex run worth decoding (20 bytes of text).
const MIN_HEX: usize = 40;
/// A percent-encoded run needs this many escapes to be worth decoding.
const MIN_ESCAPES: usize = 3;

const B64: u8 = 1;
const HEX: u8 = 2;
/// Byte classes for the blob sweep: one table lookup per byte, no allocation. A `static`, not a
/// `const`, so that indexing it never copies the table.
static CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'-' || c == b'_' {
            table[b] |= B64;
        }
        if c.is_ascii_hexdigit() {
            table[b] |= HEX;
        }
        b += 1;
    }
    table
};

fn is_b64(b: u8) -> bool {
    CLASS[b as usize] & B64 != 0
}

/// Encoded-looking runs in `input` that decode to text, at most `budget` decoded bytes in all.
pub fn find_blobs(input: &[u8], budget: &mut usize) -> Vec<Blob> {
    let mut blobs = Vec::new();
    let n = input.len();
    let mut percents = Vec::new();
    base64_runs(input, &mut percents, |Range { start, end }| {
        if *budget == 0 {
            return ControlFlow::Break(());
        }
        let run = &input[start..end];
        let mut padded = end;
        while padded < n && padded - end < 2 && input[padded] == b'=' {
            padded += 1;
        }
        let all_hex = run.iter().all(|&b| CLASS[b as usize] & HEX != 0);
        let decoded = if all_hex && run.len() >= MIN_HEX && run.len().is_multiple_of(2) {
            decode_hex(run).filter(|d| looks_like_text(d))
        } else {
            None
        }
        .or_else(|| decode_base64_text(&input[start..padded]));
        if let Some(mut decoded) = decoded {
            decoded.truncate(*budget);
            *budget -= decoded.len();
            blobs.push(Blob {
                span: start..padded,
                decoded,
            });
        }
        ControlFlow::Continue(())
    });
    find_percent_runs(input, percents, budget, &mut blobs);
    blobs
}

/// Calls `found` with every maximal run of at least `MIN_BASE64` base64 bytes, in order,
/// until it breaks; meanwhile collects, for every block it passes that holds a `%`, the
/// block's offset and the `%` signs' bits into `percents` (a sixteenth of the text at most).
///
/// Found 64 bytes at a time from byte-class bitmasks ([`classify`]): in ordinary text a block
/// holds no such run and costs a few instructions.
fn base64_runs(
    input: &[u8],
    percents: &mut Vec<(usize, u64)>,
    mut found: impl FnMut(Range<usize>) -> ControlFlow<()>,
) {
    // Everything before `floor` belongs to a run already reported.
    let mut floor = 0usize;
    classify::each_base64(input, |base, (mask, percent), (next, _)| {
        if percent != 0 {
            percents.push((base, percent));
        }
        let starts = classify::run_starts(u128::from(mask) | u128::from(next) << 64, MIN_BASE64);
        // Starts inside a run already reported are dropped all at once (a megabyte image is
        // one run: one start per byte of it).
        match classify::starts_from(starts, base, floor) {
            // Most blocks: no run starts here.
            0 => ControlFlow::Continue(()),
            starts => runs_from(input, base, starts, &mut floor, &mut found),
        }
    });
}

/// Reports the runs at `starts` (bits of the block at `base`), moving `floor` past each.
/// Past `floor`, a run's first start is where it begins, since its earlier bytes would have
/// started it.
#[inline(never)]
fn runs_from(
    input: &[u8],
    base: usize,
    mut starts: u64,
    floor: &mut usize,
    found: &mut impl FnMut(Range<usize>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    loop {
        starts = classify::starts_from(starts, base, *floor);
        if starts == 0 {
            return ControlFlow::Continue(());
        }
        let start = base + starts.trailing_zeros() as usize;
        starts &= starts - 1;
        let mut end = start + MIN_BASE64;
        while end < input.len() && is_b64(input[end]) {
            end += 1;
        }
        *floor = end;
        found(start..end)?;
    }
}

/// Base64 that decodes to text. Tries a short head first so that a large image or archive is
/// rejected after decoding 1 KiB rather than all of it.
fn decode_base64_text(run: &[u8]) -> Option<Vec<u8>> {
    let head = &run[..run.len().min(1024) / 4 * 4];
    if head.len() < run.len() {
        let sample = decode_base64(head)?;
        if !looks_like_text(&sample) {
            return None;
        }
    }
    decode_base64(run).filter(|d| looks_like_text(d))
}

fn decode_hex(run: &[u8]) -> Option<Vec<u8>> {
    fn nibble(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    run.chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// Mostly printable: UTF-8 text or ASCII with at most a few control bytes.
fn looks_like_text(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        return false;
    }
    let printable = bytes
        .iter()
        .filter(|&&b| (0x20..0x7f).contains(&b) || b == b'\n' || b == b'\r' || b == b'\t')
        .count();
    printable * 100 >= bytes.len() * 90
        || std::str::from_utf8(bytes).is_ok_and(|s| !s.contains('\0'))
}

/// URL-percent runs (`a%3Db%26c...`) with at least [`MIN_ESCAPES`] escapes, around the `%`
/// signs the base64 pass marked (`percents`: a block's offset and its `%` bits, in order).
fn find_percent_runs(
    input: &[u8],
    percents: Vec<(usize, u64)>,
    budget: &mut usize,
    blobs: &mut Vec<Blob>,
) {
    let is_url_byte =
        |b: u8| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'<' | b'>' | b'`');
    let mut from = 0;
    let signs = percents.into_iter().flat_map(|(base, mut bits)| {
        std::iter::from_fn(move || {
            let bit = (bits != 0).then(|| bits.trailing_zeros() as usize)?;
            bits &= bits - 1;
            Some(base + bit)
        })
    });
    for pos in signs {
        if pos < from {
            continue;
        }
        let mut start = pos;
        while start > 0 && is_url_byte(input[start - 1]) {
            start -= 1;
        }
        let mut end = pos;
        while end < input.len() && is_url_byte(input[end]) {
            end += 1;
        }
        from = end.max(pos + 1);
        let run = &input[start..end];
        let escapes = run
            .windows(3)
            .filter(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
            .count();
        if escapes < MIN_ESCAPES || *budget == 0 {
            continue;
        }
        let mut decoded = percent_decode(run);
        decoded.truncate(*budget);
        *budget -= decoded.len();
        blobs.push(Blob {
            span: start..end,
            decoded,
        });
    }
}

fn percent_decode(run: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(run.len());
    let mut i = 0;
    while i < run.len() {
        if run[i] == b'%' && i + 2 < run.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(run[i + 1]), hex(run[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if run[i] == b'+' { b' ' } else { run[i] });
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_runs_are_the_maximal_runs_of_base64_bytes_long_enough() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for round in 0..300 {
            // Mostly base64 bytes, so runs of every length around the minimum, across blocks.
            let len = 1 + (round * 7) % 400;
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    if state.is_multiple_of(2 + round as u64 % 60) {
                        b' '
                    } else {
                        b"aZ9+/-_"[(state % 7) as usize]
                    }
                })
                .collect();
            let mut naive = Vec::new();
            let mut at = 0;
            while at < text.len() {
                let end = at + text[at..].iter().take_while(|&&b| is_b64(b)).count();
                if end - at >= MIN_BASE64 {
                    naive.push(at..end);
                }
                at = end + 1;
            }
            let mut runs = Vec::new();
            base64_runs(&text, &mut Vec::new(), |run| {
                runs.push(run);
                ControlFlow::Continue(())
            });
            assert_eq!(runs, naive, "{:?}", String::from_utf8_lossy(&text));
        }
    }

    #[test]
    fn the_sweep_finds_every_blob_whatever_its_offset_and_neighbours() {
        use base64::Engine;
        let blob =
            base64::engine::general_purpose::STANDARD.encode("aws_secret = wJalrXUtnFEMI/K7MDENG");
        // Words of every length up to one short of a blob, and punctuation, before it.
        let words: Vec<String> = (1..MIN_BASE64).map(|n| "w".repeat(n)).collect();
        for lead in 0..80 {
            for word in [&words[0], &words[7], &words[MIN_BASE64 - 2]] {
                let text = format!("{}{word} {blob} {word}.", "x,".repeat(lead / 2));
                let at = text.find(&blob).expect("blob is in the text");
                let mut budget = 1 << 20;
                let spans: Vec<_> = find_blobs(text.as_bytes(), &mut budget)
                    .into_iter()
                    .map(|b| b.span)
                    .collect();
                assert_eq!(spans, vec![at..at + blob.len()], "{text:?}");
            }
        }
    }

    #[test]
    fn zero_width_chars_are_dropped_and_map_back() {
        let input = "key=AB\u{200B}CD end".as_bytes();
        let folded = Folded::new(input).expect("needs folding");
        assert_eq!(folded.text, b"key=ABCD end");
        assert_eq!(folded.original(4..8), 4..11);
    }

    #[test]
    fn terminal_control_sequences_are_dropped_and_map_back() {
        let input = b"\x1b[1;32mghp_AB\x1b[0m CD\x1b[2K";
        let folded = Folded::new(input).expect("needs folding");
        assert_eq!(folded.text, b"ghp_AB CD");
        assert_eq!(folded.original(0..6), 7..13);
        assert_eq!(folded.original(7..9), 18..20);
        // An escape that opens no sequence, or one with a parameter run too long to be one,
        // is left alone.
        for plain in [&b"a\x1b b"[..], b"a\x1b[", b"\x1b[12", b"\x1b]8;;x\x07"] {
            assert!(Folded::new(plain).is_none(), "{plain:?}");
        }
        let long = [&b"\x1b["[..], &[b'1'; 40], b"m"].concat();
        assert!(Folded::new(&long).is_none());
        assert_eq!(control_sequence(b"\x1b[m"), Some(3));
        assert_eq!(control_sequence(b"\x1b[K"), Some(3));
        assert_eq!(control_sequence(b"\x1b[AKIA"), None);
        assert_eq!(control_sequence(b"\x1b[1A"), Some(4));
        assert_eq!(control_sequence(b"\x1b[?25h"), Some(6));
        assert_eq!(control_sequence(b"\x1b[1 q"), Some(5));
    }

    #[test]
    fn full_width_letters_fold_to_ascii() {
        let input = "ＡＫＩＡ".as_bytes();
        let folded = Folded::new(input).expect("needs folding");
        assert_eq!(folded.text, b"AKIA");
        assert_eq!(folded.original(0..4), 0..input.len());
    }

    #[test]
    fn text_already_folded_is_left_alone() {
        assert!(Folded::new("naïve café, 東京".as_bytes()).is_none());
        assert!(Folded::new(b"plain").is_none());
        let mixed = ["é\u{200B}x".as_bytes(), &[0xFF]].concat();
        let folded = Folded::new(&mixed).expect("zero-width space");
        assert_eq!(folded.text, ["éx".as_bytes(), &[0xFF]].concat());
        assert_eq!(folded.original(0..folded.text.len()), 0..mixed.len());
        assert_eq!(folded.original(2..3), 5..6);
    }

    #[test]
    fn base64_text_is_decoded_binary_is_not() {
        let mut budget = 1 << 20;
        let text = b"x = \"dGhpcyBpcyBhIHNlY3JldCBtZXNzYWdlIGhpZGRlbiBoZXJl\"";
        let blobs = find_blobs(text, &mut budget);
        assert_eq!(blobs.len(), 1);
        assert_eq!(blobs[0].decoded, b"this is a secret message hidden here");
        // A git SHA decodes (as hex) to binary: not a blob.
        let sha = b"commit 3f786850e387550fdab836ed7e6dc881de23001b";
        assert!(find_blobs(sha, &mut budget).is_empty());
    }

    #[test]
    fn percent_runs_decode() {
        let mut budget = 1 << 20;
        let blobs = find_blobs(b"GET /?q=a%3Db%26c%3Dd", &mut budget);
        assert_eq!(blobs.len(), 1);
        assert_eq!(blobs[0].decoded, b"/?q=a=b&c=d");
        // Wherever the run sits against the 64-byte blocks the sweep reads, after a base64
        // blob or not, each run is found once.
        let b64 = "c2VjcmV0IHRleHQgdGhhdCBpcyBsb25nIGVub3VnaA==";
        for lead in 0..140 {
            for before in ["", b64] {
                let text = format!(
                    "{}{before} /?q=a%3Db%26c%3Dd and /x%2Fy%2Fz%3F {}",
                    " ".repeat(lead),
                    "%".repeat(lead % 3)
                );
                let blobs = find_blobs(text.as_bytes(), &mut budget.clone());
                let decoded: Vec<&[u8]> = blobs.iter().map(|b| b.decoded.as_slice()).collect();
                let from_base64 = usize::from(!before.is_empty());
                assert_eq!(decoded.len(), 2 + from_base64, "{text:?}");
                assert_eq!(decoded[from_base64], b"/?q=a=b&c=d", "{text:?}");
                assert_eq!(decoded[from_base64 + 1], b"/x/y/z?", "{text:?}");
            }
        }
        // One escape per block: each `%` is the only one its block holds.
        let spread = format!("/{0}%2F{0}%2F{0}%3F{0}", "a".repeat(70));
        let blobs = find_blobs(spread.as_bytes(), &mut budget.clone());
        assert_eq!(blobs.len(), 1);
        assert_eq!(
            blobs[0].decoded,
            spread.replace("%2F", "/").replace("%3F", "?").as_bytes()
        );
    }
}
