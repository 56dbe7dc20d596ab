//! Normalisation against evasion, with every span mapped back to the ORIGINAL bytes.
//!
//! Two transformations, both only taken when the input needs them so the plain-ASCII fast path
//! pays nothing but one `is_ascii` pass and one table-driven blob sweep:
//!
//! - [`Folded`]: zero-width and bidi controls dropped, full-width and compatibility forms folded
//!   (NFKC, per character), so `ｓｋ-…` or a key with U+200B inside still matches its rule.
//! - [`find_blobs`]: base64, hex and URL-percent runs long enough to hide a secret, decoded when
//!   the result looks like text. The scanner scans the decoded bytes again (bounded depth and
//!   total size) and reports what it finds at the blob's span.
//!
//! Nothing here may panic on any input: invalid UTF-8 passes through byte for byte.

use std::ops::Range;

use unicode_normalization::UnicodeNormalization;

use super::validators::decode_base64;

/// Input with invisible characters dropped and compatibility forms folded, plus the map from
/// each output byte back to the original character it came from.
#[derive(Debug)]
pub struct Folded {
    pub text: Vec<u8>,
    /// `origin[i]` is the original byte range of the character that produced `text[i]`.
    origin: Vec<(usize, usize)>,
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

impl Folded {
    /// Whether folding could change `input` at all.
    pub fn needed(input: &[u8]) -> bool {
        !input.is_ascii()
    }

    pub fn new(input: &[u8]) -> Self {
        let mut text = Vec::with_capacity(input.len());
        let mut origin = Vec::with_capacity(input.len());
        let mut offset = 0;
        for chunk in input.utf8_chunks() {
            let valid = chunk.valid();
            for (i, c) in valid.char_indices() {
                let start = offset + i;
                let end = start + c.len_utf8();
                if c.is_ascii() {
                    text.push(c as u8);
                    origin.push((start, end));
                } else if !is_invisible(c) {
                    let mut buf = [0u8; 4];
                    for folded in std::iter::once(c).nfkc() {
                        for &b in folded.encode_utf8(&mut buf).as_bytes() {
                            text.push(b);
                            origin.push((start, end));
                        }
                    }
                }
            }
            offset += valid.len();
            for (i, &b) in chunk.invalid().iter().enumerate() {
                text.push(b);
                origin.push((offset + i, offset + i + 1));
            }
            offset += chunk.invalid().len();
        }
        Folded { text, origin }
    }

    /// The original byte range that `span` of the folded text came from.
    pub fn original(&self, span: Range<usize>) -> Range<usize> {
        if self.origin.is_empty() {
            return 0..0;
        }
        let last = self.origin.len() - 1;
        let start = self.origin[span.start.min(last)].0;
        let end = self.origin[span.end.saturating_sub(1).min(last)].1;
        start..end.max(start)
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
/// Byte classes for the blob sweep: one table lookup per byte, no allocation.
const CLASS: [u8; 256] = {
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

/// Encoded-looking runs in `input` that decode to text, at most `budget` decoded bytes in all.
pub fn find_blobs(input: &[u8], budget: &mut usize) -> Vec<Blob> {
    let mut blobs = Vec::new();
    let mut i = 0;
    let n = input.len();
    while i < n {
        if CLASS[input[i] as usize] & B64 == 0 {
            i += 1;
            continue;
        }
        let start = i;
        let mut all_hex = true;
        while i < n {
            let class = CLASS[input[i] as usize];
            if class & B64 == 0 {
                break;
            }
            all_hex &= class & HEX != 0;
            i += 1;
        }
        let mut end = i;
        if end - start < MIN_BASE64 || *budget == 0 {
            continue;
        }
        while end < n && end - i < 2 && input[end] == b'=' {
            end += 1;
        }
        let run = &input[start..i];
        let decoded = if all_hex && run.len() >= MIN_HEX && run.len() % 2 == 0 {
            decode_hex(run).filter(|d| looks_like_text(d))
        } else {
            None
        }
        .or_else(|| decode_base64_text(&input[start..end]));
        if let Some(mut decoded) = decoded {
            decoded.truncate(*budget);
            *budget -= decoded.len();
            blobs.push(Blob {
                span: start..end,
                decoded,
            });
        }
        i = end;
    }
    find_percent_runs(input, budget, &mut blobs);
    blobs
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

/// URL-percent runs (`a%3Db%26c...`) with at least [`MIN_ESCAPES`] escapes.
fn find_percent_runs(input: &[u8], budget: &mut usize, blobs: &mut Vec<Blob>) {
    let is_url_byte =
        |b: u8| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'<' | b'>' | b'`');
    let mut from = 0;
    while let Some(pos) = input[from..].iter().position(|&b| b == b'%') {
        let pos = from + pos;
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
    fn zero_width_chars_are_dropped_and_map_back() {
        let input = "key=AB\u{200B}CD end".as_bytes();
        let folded = Folded::new(input);
        assert_eq!(folded.text, b"key=ABCD end");
        assert_eq!(folded.original(4..8), 4..11);
    }

    #[test]
    fn full_width_letters_fold_to_ascii() {
        let input = "ＡＫＩＡ".as_bytes();
        let folded = Folded::new(input);
        assert_eq!(folded.text, b"AKIA");
        assert_eq!(folded.original(0..4), 0..input.len());
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
    }
}
