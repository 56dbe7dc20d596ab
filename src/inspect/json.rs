//! A JSON reader that remembers where every string sits in the body, byte for byte.
//!
//! `serde_json` forgets positions; redaction needs them, because a value found in a decoded
//! string (`\u0041KIA...`) must be replaced in the raw body at exactly the bytes that spelled it,
//! leaving everything else untouched. This reader builds a small tree of [`Node`]s whose strings
//! are raw byte ranges; [`Text::from_json_string`] decodes one on demand with a map back to the
//! raw bytes.
//!
//! It must never panic, whatever the bytes: depth is bounded, every index is checked.

use std::ops::Range;

/// How deep arrays and objects may nest before the body is refused. Real API bodies nest a
/// dozen levels; thousands only come from an attempt to exhaust the stack.
const MAX_DEPTH: usize = 128;

/// Where the string text starting at `pos` stops: the first quote, backslash or control
/// character (not allowed raw in a JSON string), or the end of the input.
///
/// This loop sees almost every byte of a body, and escapes are dense in code sent as JSON (a
/// `\\n` every line), so it tests eight bytes per step in a register rather than calling a
/// search per run between escapes. For each test, the lowest flagged byte is exact (a false
/// flag can only follow a true one), which is the one used. A run that goes on past
/// [`SHORT_RUN`] bytes (prose, a long message without a newline) is handed to
/// [`long_run_stop`], which is about twice as fast per byte.
fn string_stop(input: &[u8], mut pos: usize) -> usize {
    let run_start = pos;
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let equal = |word: u64, byte: u8| {
        let x = word ^ (ONES * u64::from(byte));
        x.wrapping_sub(ONES) & !x & HIGH
    };
    while let Some(chunk) = input.get(pos..pos + 8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let word = u64::from_le_bytes(bytes);
        let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
        let stops = equal(word, b'"') | equal(word, b'\\') | below_space;
        if stops != 0 {
            return pos + (stops.trailing_zeros() / 8) as usize;
        }
        pos += 8;
        if pos - run_start >= SHORT_RUN {
            return long_run_stop(input, pos);
        }
    }
    while let Some(&b) = input.get(pos) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return pos;
        }
        pos += 1;
    }
    pos
}

/// How far [`string_stop`] tests word by word before it takes the run for a long one. Below
/// about 64 bytes the search's fixed cost shows on code (a line between two `\\n` escapes);
/// at 128, code reads as fast as before and a long run of prose twice as fast.
const SHORT_RUN: usize = 128;

/// [`string_stop`] for a long run: the quote or backslash found by `memchr` (SIMD, 32 bytes a
/// step), then the run up to it checked for control characters in blocks the compiler
/// vectorises. Two passes over bytes already in cache beat one pass of eight-byte words.
fn long_run_stop(input: &[u8], pos: usize) -> usize {
    let rest = input.get(pos..).unwrap_or_default();
    let end = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
    let run = rest.get(..end).unwrap_or_default();
    let mut offset = pos;
    for block in run.chunks(64) {
        // `fold`, not `any`: no early exit, so the block is tested in vector registers.
        if block.iter().fold(false, |seen, &b| seen | (b < 0x20)) {
            if let Some(at) = block.iter().position(|&b| b < 0x20) {
                return offset + at;
            }
        }
        offset += block.len();
    }
    pos + end
}

/// Where the next backslash at or after `pos` is (or the end): eight bytes per step, as in
/// [`string_stop`], because the runs between escapes are short.
fn next_backslash(input: &[u8], mut pos: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = input.get(pos..pos + 8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(bytes) ^ (ONES * u64::from(b'\\'));
        let stops = x.wrapping_sub(ONES) & !x & HIGH;
        if stops != 0 {
            return pos + (stops.trailing_zeros() / 8) as usize;
        }
        pos += 8;
    }
    pos + input
        .get(pos..)
        .unwrap_or_default()
        .iter()
        .position(|&b| b == b'\\')
        .unwrap_or(input.len().saturating_sub(pos))
}

/// An object key, decoded. The keys every API repeats in every block (`type`, `text`,
/// `content`, ...) are shared constants rather than one allocation each: a long conversation
/// has thousands of them.
pub type Key = std::borrow::Cow<'static, str>;

/// The shared constant for a common key spelled without escapes, if it is one.
fn common_key(raw: &[u8]) -> Option<&'static str> {
    const COMMON: &[&str] = &[
        "type",
        "text",
        "role",
        "content",
        "id",
        "name",
        "input",
        "tool_use_id",
        "source",
        "data",
        "media_type",
        "cache_control",
        "is_error",
        "parts",
        "arguments",
        "function",
        "tool_calls",
        "tool_call_id",
        "thinking",
        "signature",
        "file_path",
        "command",
        "description",
        "model",
        "messages",
        "system",
        "tools",
        "properties",
        "required",
        "input_schema",
        "parameters",
        "call_id",
        "output",
        "status",
        "delta",
        "index",
        "usage",
    ];
    COMMON.iter().copied().find(|k| k.as_bytes() == raw)
}

/// A parsed JSON value; strings stay as raw byte ranges (inside the quotes) of the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Str(Range<usize>),
    Number,
    /// `true` or `false` (two variants rather than a `bool` payload: a byte-sized payload
    /// made every node move through the parser with misaligned copies).
    True,
    False,
    Null,
    Array(Vec<Node>),
    /// Members in body order; keys decoded.
    Object(Vec<(Key, Node)>),
}

impl Node {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Node]> {
        match self {
            Node::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn members(&self) -> Option<&[(Key, Node)]> {
        match self {
            Node::Object(members) => Some(members),
            _ => None,
        }
    }

    /// The decoded string value, if this is a string (no normalisation).
    pub fn as_str(&self, input: &[u8]) -> Option<String> {
        match self {
            Node::Str(raw) => Text::from_json_string(input, raw.clone(), false)
                .ok()
                .map(|t| t.text),
            _ => None,
        }
    }
}

/// Why a body is not the JSON it claims to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {offset}: {reason}")]
pub struct JsonError {
    pub offset: usize,
    pub reason: &'static str,
}

/// Parses a whole JSON document (leading/trailing whitespace allowed).
pub fn parse(input: &[u8]) -> Result<Node, JsonError> {
    parse_str(utf8(input)?)
}

/// `input` as UTF-8, which JSON must be.
pub fn utf8(input: &[u8]) -> Result<&str, JsonError> {
    // SIMD-validated: this sees every byte of every body.
    simdutf8::compat::from_utf8(input).map_err(|e| JsonError {
        offset: e.valid_up_to(),
        reason: "not valid UTF-8",
    })
}

/// Parses a whole JSON document already known to be UTF-8: validated once for the whole body
/// rather than string by string, which saves a pass over every byte of content.
pub fn parse_str(input: &str) -> Result<Node, JsonError> {
    let input = input.as_bytes();
    let mut parser = Parser { input, pos: 0 };
    parser.skip_ws();
    let node = parser.value(0)?;
    parser.skip_ws();
    if parser.pos != input.len() {
        return Err(parser.error("trailing data after the JSON value"));
    }
    Ok(node)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &'static str) -> JsonError {
        JsonError {
            offset: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect_literal(&mut self, literal: &[u8], node: Node) -> Result<Node, JsonError> {
        if self.input[self.pos..].starts_with(literal) {
            self.pos += literal.len();
            Ok(node)
        } else {
            Err(self.error("unexpected token"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        match self.peek() {
            Some(b'"') => self.string().map(Node::Str),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b't') => self.expect_literal(b"true", Node::True),
            Some(b'f') => self.expect_literal(b"false", Node::False),
            Some(b'n') => self.expect_literal(b"null", Node::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end of input")),
        }
    }

    fn number(&mut self) -> Result<Node, JsonError> {
        let start = self.pos;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        // Validate with the standard grammar rather than re-implementing it.
        let text = std::str::from_utf8(&self.input[start..self.pos]).unwrap_or("x");
        if serde_json::from_str::<serde_json::Number>(text).is_err() {
            return Err(JsonError {
                offset: start,
                reason: "invalid number",
            });
        }
        Ok(Node::Number)
    }

    /// Returns the raw range inside the quotes; checks escapes on the way (UTF-8 was checked
    /// for the whole input).
    fn string(&mut self) -> Result<Range<usize>, JsonError> {
        self.pos += 1; // opening quote
        let start = self.pos;
        loop {
            self.pos = string_stop(self.input, self.pos);
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    let range = start..self.pos;
                    self.pos += 1;
                    return Ok(range);
                }
                Some(b'\\') => match self.input.get(self.pos + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 2,
                    Some(b'u') => {
                        let hex = self.input.get(self.pos + 2..self.pos + 6);
                        if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                            return Err(self.error("invalid \\u escape"));
                        }
                        self.pos += 6;
                    }
                    _ => return Err(self.error("invalid escape")),
                },
                Some(_) => return Err(self.error("control character in string")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Node, JsonError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Node::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Node::Array(items));
                }
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Node, JsonError> {
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Node::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let key_range = self.string()?;
            let key = match common_key(&self.input[key_range.clone()]) {
                Some(common) => Key::Borrowed(common),
                None => Key::Owned(
                    Text::from_json_string(self.input, key_range, false)
                        .map(|t| t.text)
                        .map_err(|_| self.error("invalid key"))?,
                ),
            };
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error("expected `:`"));
            }
            self.pos += 1;
            self.skip_ws();
            let value = self.value(depth + 1)?;
            members.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Node::Object(members));
                }
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }
}

/// Where the bytes of a [`Text`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Byte `i` of the text is byte `base + i` of the source (no escapes, nothing folded).
    Shifted(usize),
    /// Breakpoints, in text order: from a breakpoint on, text bytes are consecutive source
    /// bytes until the next breakpoint. Only an escape, a folded or dropped character or a
    /// lossy replacement starts one, so a file sent as a JSON string with an escaped newline
    /// per line costs a few bytes per line rather than four per byte. A byte inside a
    /// multi-byte character maps to where that character starts; the text's end to the
    /// source's end.
    Pieces(Vec<Breakpoint>),
    /// Byte `i` of the text started at source byte `table[i]`; `table[len]` is the end.
    Table(Vec<u32>),
    /// Derived in a way that cannot be mapped back (e.g. base64-decoded): every span maps to
    /// the whole source range, and it cannot be rewritten in place.
    Opaque(Range<usize>),
}

/// Text byte `text` came from source byte `source`; see [`Origin::Pieces`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breakpoint {
    text: u32,
    source: u32,
}

/// Decoded text ready to scan, with a map from its bytes back to the source bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub text: String,
    pub origin: Origin,
}

/// Characters an evasion inserts to break a match without changing what a reader (or a model)
/// sees: zero-width space/joiners, word joiner, BOM, soft hyphen.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
    )
}

/// Full-width ASCII variants (`ＡＫＩＡ`) folded to ASCII so detectors see `AKIA`.
fn fold(c: char) -> Option<char> {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0),
        '\u{3000}' => Some(' '),
        _ => None,
    }
}

fn needs_normalising(c: char) -> bool {
    is_invisible(c) || fold(c).is_some()
}

/// The UTF-8 lead bytes of every character [`needs_normalising`] accepts (U+00AD, U+2000
/// block, U+3000, U+FExx/U+FFxx): any other byte starts a character that is kept as it is.
fn may_need_normalising(lead: u8) -> bool {
    matches!(lead, 0xC2 | 0xE2 | 0xE3 | 0xEF)
}

/// Builds a text and its [`Origin::Pieces`] map, adding a breakpoint only where the source
/// stops running in step with the text.
struct PieceBuilder {
    text: String,
    /// Where the text starts in the source; the first breakpoint.
    first: Breakpoint,
    /// Every breakpoint, the first included, once there is a second: most strings have no
    /// escape and are mapped by `first` alone, without allocating.
    pieces: Vec<Breakpoint>,
    normalise: bool,
}

impl PieceBuilder {
    fn new(capacity: usize, source_start: usize, normalise: bool) -> Self {
        Self {
            text: String::with_capacity(capacity),
            first: Breakpoint {
                text: 0,
                source: source_start as u32,
            },
            pieces: Vec::new(),
            normalise,
        }
    }

    /// The next text byte comes from source byte `source`.
    fn at(&mut self, source: usize) {
        let here = self.text.len();
        let last = self.pieces.last().unwrap_or(&self.first);
        if last.source as usize + (here - last.text as usize) == source {
            return;
        }
        if self.pieces.is_empty() {
            // About one breakpoint per escaped newline of source code, so growing is rare.
            self.pieces.reserve(self.text.capacity() / 16 + 2);
            self.pieces.push(self.first);
        }
        self.pieces.push(Breakpoint {
            text: here as u32,
            source: source as u32,
        });
    }

    /// Text copied as it is from `source` on.
    fn push_verbatim(&mut self, run: &str, source: usize) {
        if !run.is_empty() {
            self.at(source);
            self.text.push_str(run);
        }
    }

    /// One character that stands for the source bytes starting at `source` (an escape, a
    /// replacement), normalised when asked.
    fn push_char(&mut self, c: char, source: usize) {
        let c = if self.normalise {
            if is_invisible(c) {
                return;
            }
            fold(c).unwrap_or(c)
        } else {
            c
        };
        self.at(source);
        self.text.push(c);
    }

    /// Text taken from `source` on, normalised character by character where it must be.
    fn push_text(&mut self, run: &str, source: usize) {
        if !self.normalise || run.is_ascii() {
            self.push_verbatim(run, source);
            return;
        }
        let bytes = run.as_bytes();
        let mut kept = 0;
        let mut i = 0;
        while let Some(k) = bytes[i..].iter().position(|&b| may_need_normalising(b)) {
            i += k;
            let c = run[i..]
                .chars()
                .next()
                .unwrap_or(char::REPLACEMENT_CHARACTER);
            if needs_normalising(c) {
                self.push_verbatim(&run[kept..i], source + kept);
                self.push_char(c, source + i);
                kept = i + c.len_utf8();
            }
            i += c.len_utf8();
        }
        self.push_verbatim(&run[kept..], source + kept);
    }

    fn finish(mut self, source_end: usize) -> Text {
        self.at(source_end);
        let origin = if self.pieces.is_empty() {
            Origin::Shifted(self.first.source as usize)
        } else {
            Origin::Pieces(self.pieces)
        };
        Text {
            text: self.text,
            origin,
        }
    }
}

impl Text {
    /// Plain text taken as-is from `source[range]` (UTF-8 checked by the caller's parse or
    /// decoded lossily), normalised when `normalise` is set.
    pub fn from_plain(source: &[u8], range: Range<usize>, normalise: bool) -> Text {
        let raw = &source[range.clone()];
        match std::str::from_utf8(raw) {
            Ok(s) if !normalise || raw.is_ascii() => Text {
                text: s.to_owned(),
                origin: Origin::Shifted(range.start),
            },
            Ok(s) => {
                let mut builder = PieceBuilder::new(s.len(), range.start, normalise);
                builder.push_text(s, range.start);
                builder.finish(range.end)
            }
            Err(_) => {
                // Not UTF-8 (binary, or a legacy charset we were not told about): scan the
                // lossy decoding, each replacement char mapped to the bytes it replaced.
                let mut builder = PieceBuilder::new(raw.len(), range.start, normalise);
                let mut offset = 0;
                for chunk in raw.utf8_chunks() {
                    builder.push_text(chunk.valid(), range.start + offset);
                    offset += chunk.valid().len();
                    if !chunk.invalid().is_empty() {
                        builder.push_char(char::REPLACEMENT_CHARACTER, range.start + offset);
                        offset += chunk.invalid().len();
                    }
                }
                builder.finish(range.end)
            }
        }
    }

    /// Decodes the JSON string whose raw content (inside the quotes) is `source[range]`.
    pub fn from_json_string(
        source: &[u8],
        range: Range<usize>,
        normalise: bool,
    ) -> Result<Text, JsonError> {
        let raw = &source[range.clone()];
        if memchr::memchr(b'\\', raw).is_none() {
            return Ok(Text::from_plain(source, range, normalise));
        }
        let s = std::str::from_utf8(raw).map_err(|_| JsonError {
            offset: range.start,
            reason: "not UTF-8",
        })?;
        Text::decode_json(s, range.start, normalise)
    }

    /// [`Text::from_json_string`] for a source already known to be UTF-8 (a parsed body):
    /// nothing is validated again, and the text is copied in one pass.
    pub fn from_json_str(
        source: &str,
        range: Range<usize>,
        normalise: bool,
    ) -> Result<Text, JsonError> {
        match source.get(range.clone()) {
            Some(raw) => Text::decode_json(raw, range.start, normalise),
            None => Text::from_json_string(source.as_bytes(), range, normalise),
        }
    }

    /// Decodes the raw content `s` of a JSON string that starts at `base` of its source.
    fn decode_json(s: &str, base: usize, normalise: bool) -> Result<Text, JsonError> {
        let range = base..base + s.len();
        let bad = |offset, reason| JsonError { offset, reason };
        let raw = s.as_bytes();
        let bytes = s.as_bytes();
        let hex4 = |at: usize| -> Option<u32> {
            let digits = bytes.get(at..at + 4)?;
            let text = std::str::from_utf8(digits).ok()?;
            u32::from_str_radix(text, 16).ok()
        };
        let mut builder = PieceBuilder::new(raw.len(), range.start, normalise);
        let mut i = 0;
        while i < bytes.len() {
            // Text between escapes (most of any body) is copied in bulk, and maps back by
            // addition from the breakpoint its run starts at.
            let run = next_backslash(bytes, i) - i;
            if run > 0 {
                builder.push_text(&s[i..i + run], range.start + i);
                i += run;
                continue;
            }
            let at = range.start + i;
            let Some(&escape) = bytes.get(i + 1) else {
                return Err(bad(at, "dangling escape"));
            };
            let decoded = match escape {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let hi = hex4(i + 2).ok_or(bad(at, "invalid \\u escape"))?;
                    i += 4;
                    if (0xD800..0xDC00).contains(&hi) {
                        // A surrogate pair spans two escapes: `\uD83D\uDE00`.
                        let lo = if bytes.get(i + 2..i + 4) == Some(b"\\u".as_slice()) {
                            hex4(i + 4).filter(|lo| (0xDC00..0xE000).contains(lo))
                        } else {
                            None
                        };
                        match lo {
                            Some(lo) => {
                                i += 6;
                                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                    .unwrap_or(char::REPLACEMENT_CHARACTER)
                            }
                            None => char::REPLACEMENT_CHARACTER,
                        }
                    } else {
                        char::from_u32(hi).unwrap_or(char::REPLACEMENT_CHARACTER)
                    }
                }
                _ => return Err(bad(at, "invalid escape")),
            };
            builder.push_char(decoded, at);
            i += 2;
        }
        Ok(builder.finish(range.end))
    }

    /// Text that cannot be mapped back byte by byte (decoded base64, a charset conversion of a
    /// whole document): any span in it stands for all of `source_range`.
    pub fn opaque(text: String, source_range: Range<usize>) -> Text {
        Text {
            text,
            origin: Origin::Opaque(source_range),
        }
    }

    /// The source byte range that produced `span` of this text, and whether rewriting that
    /// range rewrites exactly the span (false for opaque text).
    pub fn source_range(&self, span: Range<usize>) -> (Range<usize>, bool) {
        let end = span.end.min(self.text.len());
        let start = span.start.min(end);
        match &self.origin {
            Origin::Shifted(base) => (base + start..base + end, true),
            Origin::Pieces(pieces) => {
                let s = self.through_pieces(pieces, start);
                let e = self.through_pieces(pieces, end);
                (s..e.max(s), true)
            }
            Origin::Table(table) => {
                let s = table.get(start).copied().unwrap_or(0) as usize;
                let e = table.get(end).copied().unwrap_or(0) as usize;
                (s..e.max(s), true)
            }
            Origin::Opaque(range) => (range.clone(), false),
        }
    }

    /// Where the character holding text byte `at` starts in the source.
    fn through_pieces(&self, pieces: &[Breakpoint], at: usize) -> usize {
        // The start of the character holding `at` (the crate's MSRV predates
        // `floor_char_boundary`); a character is at most four bytes.
        let at = (at.saturating_sub(3)..=at)
            .rev()
            .find(|&i| self.text.is_char_boundary(i))
            .unwrap_or(0);
        let index = pieces
            .partition_point(|p| p.text as usize <= at)
            .saturating_sub(1);
        pieces
            .get(index)
            .map_or(0, |p| p.source as usize + (at - p.text as usize))
    }

    /// The same text with its source offsets moved by `base` (its source was a slice that
    /// starts at `base` of the real source).
    pub fn rebase(self, base: usize) -> Text {
        let origin = match self.origin {
            Origin::Shifted(b) => Origin::Shifted(b + base),
            Origin::Pieces(pieces) => Origin::Pieces(
                pieces
                    .into_iter()
                    .map(|p| Breakpoint {
                        text: p.text,
                        source: p.source + base as u32,
                    })
                    .collect(),
            ),
            Origin::Table(table) => {
                Origin::Table(table.into_iter().map(|i| i + base as u32).collect())
            }
            Origin::Opaque(r) => Origin::Opaque(r.start + base..r.end + base),
        };
        Text {
            text: self.text,
            origin,
        }
    }

    /// Re-bases this text (whose source is `outer.text`) onto `outer`'s source: used for JSON
    /// found inside a JSON string (tool-call arguments).
    pub fn through(self, outer: &Text) -> Text {
        let origin = match (&self.origin, &outer.origin) {
            (_, Origin::Opaque(range)) => Origin::Opaque(range.clone()),
            (Origin::Opaque(inner), _) => Origin::Opaque(outer.source_range(inner.clone()).0),
            (Origin::Shifted(base), Origin::Shifted(outer_base)) => {
                Origin::Shifted(base + outer_base)
            }
            // Tool-call arguments are small: one entry per byte keeps the composition simple.
            _ => Origin::Table(
                (0..=self.text.len())
                    .map(|i| {
                        let inner = self.source_range(i..i).0.start;
                        outer.source_range(inner..inner).0.start as u32
                    })
                    .collect(),
            ),
        };
        Text {
            text: self.text,
            origin,
        }
    }
}

/// Escapes `value` for use inside a JSON string (without the quotes).
pub fn escape_str(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_string(input: &[u8]) -> Range<usize> {
        fn find(node: &Node) -> Option<Range<usize>> {
            match node {
                Node::Str(r) => Some(r.clone()),
                Node::Array(items) => items.iter().find_map(find),
                Node::Object(members) => members.iter().find_map(|(_, v)| find(v)),
                _ => None,
            }
        }
        find(&parse(input).expect("valid json")).expect("a string")
    }

    #[test]
    fn parses_nested_documents_and_keeps_string_ranges() {
        let body = br#"{"a": [1, -2.5e3, true, null, {"b": "hi"}]}"#;
        let node = parse(body).unwrap();
        let items = node.get("a").unwrap().as_array().unwrap();
        assert_eq!(items.len(), 5);
        let range = first_string(body);
        assert_eq!(&body[range], b"hi");
    }

    #[test]
    fn string_ends_are_found_at_every_offset_of_a_word() {
        for stop in [b'"', b'\\', b'\n', 0x00, 0x1f] {
            for at in 0..20 {
                let mut input = vec![b'a'; 24];
                input[at] = stop;
                input[at + 2] = 0xC3; // a UTF-8 lead byte after it is not a stop
                assert_eq!(string_stop(&input, 0), at, "{stop:#x} at {at}");
                assert_eq!(string_stop(&input, at + 1), 24, "{stop:#x} after {at}");
            }
        }
        for at in 0..20 {
            let mut input = vec![b'a'; 24];
            input[at] = b'\\';
            assert_eq!(next_backslash(&input, 0), at);
            assert_eq!(next_backslash(&input, at + 1), 24);
        }
        // Runs long enough to be searched as long ones: every stop, near and far.
        for stop in [b'"', b'\\', b'\n', 0x00, 0x1f] {
            for at in [
                32, 63, 127, 128, 129, 135, 136, 137, 191, 192, 193, 255, 256, 1000, 4095,
            ] {
                let mut input = "é".repeat(2100).into_bytes();
                input[at] = stop;
                assert_eq!(string_stop(&input, 0), at, "{stop:#x} at {at}");
                assert_eq!(string_stop(&input, 1), at, "{stop:#x} at {at}, from 1");
            }
            let mut late = vec![b'a'; 5000];
            late[4990] = b'"';
            late[4000] = stop;
            assert_eq!(string_stop(&late, 0), 4000, "{stop:#x} before a quote");
        }
        assert_eq!(string_stop(&[b'a'; 300], 0), 300);
        assert_eq!(string_stop(b"abc", 3), 3);
        assert_eq!(string_stop(b" !#~\x7f\xff", 0), 6);
    }

    #[test]
    fn rejects_broken_documents_without_panicking() {
        for bad in [
            &b"{"[..],
            b"{\"a\":}",
            b"[1,]",
            b"\"\\x\"",
            b"\"abc",
            b"01x",
            b"{} {}",
            b"\"\\u12\"",
            b"",
            b"[\"\xff\"]",
            b"[\"a\nb\"]",
            b"[\"a\x01\"]",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "[".repeat(10_000);
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn escapes_decode_and_map_back_to_the_exact_raw_bytes() {
        let body = br#"{"k":"key: \u0041KIA\n\"x\" \ud83d\ude00!"}"#;
        let range = first_string(body);
        let text = Text::from_json_string(body, range, true).unwrap();
        assert_eq!(text.text, "key: AKIA\n\"x\" \u{1F600}!");
        let at = text.text.find("AKIA").unwrap();
        let (raw, exact) = text.source_range(at..at + 4);
        assert!(exact);
        assert_eq!(&body[raw], br"\u0041KIA");
        let at = text.text.find('\u{1F600}').unwrap();
        let (raw, _) = text.source_range(at..at + 4);
        assert_eq!(&body[raw], br"\ud83d\ude00");
    }

    #[test]
    fn zero_width_and_full_width_characters_are_normalised_for_scanning() {
        let body = "{\"k\":\"A\u{200B}K\u{FEFF}IA ＡＫＩＡ\"}".as_bytes();
        let range = first_string(body);
        let text = Text::from_json_string(body, range.clone(), true).unwrap();
        assert_eq!(text.text, "AKIA AKIA");
        let (raw, _) = text.source_range(0..4);
        assert_eq!(&body[raw], "A\u{200B}K\u{FEFF}IA".as_bytes());
        let (raw, _) = text.source_range(5..9);
        assert_eq!(&body[raw], "ＡＫＩＡ".as_bytes());
        let plain = Text::from_json_string(body, range, false).unwrap();
        assert!(plain.text.contains('\u{200B}'));
    }

    #[test]
    fn json_inside_a_json_string_maps_through_both_layers() {
        let body = br#"{"arguments":"{\"password\":\"hunter\\u00322\"}"}"#;
        let outer = Text::from_json_string(body, first_string(body), false).unwrap();
        assert_eq!(outer.text, r#"{"password":"hunter\u00322"}"#);
        let inner_range = first_string(outer.text.as_bytes());
        let inner = Text::from_json_string(outer.text.as_bytes(), inner_range, true)
            .unwrap()
            .through(&outer);
        assert_eq!(inner.text, "hunter22");
        let (raw, exact) = inner.source_range(0..inner.text.len());
        assert!(exact);
        assert_eq!(&body[raw], br"hunter\\u00322");
    }

    proptest::proptest! {
        /// Whatever mix of escapes, raw and escaped non-ASCII, invisible and full-width
        /// characters a string holds, each decoded character maps back to source bytes that
        /// decode to exactly that character, and the characters' sources tile the string.
        #[test]
        fn every_character_maps_back_to_the_bytes_that_spelled_it(
            fragments in proptest::collection::vec(0usize..FRAGMENTS.len(), 0..40),
            normalise: bool,
        ) {
            let inner: String = fragments.iter().map(|&i| FRAGMENTS[i]).collect();
            let body = format!("{{\"k\":\"{inner}\"}}");
            let range = 6..6 + inner.len();
            let text = Text::from_json_string(body.as_bytes(), range.clone(), normalise).unwrap();
            let from_str = Text::from_json_str(&body, range.clone(), normalise).unwrap();
            proptest::prop_assert_eq!(&from_str, &text);
            let chars: Vec<(usize, char)> = text.text.char_indices().collect();
            let mut previous_end = None;
            for (n, &(at, c)) in chars.iter().enumerate() {
                let end = chars.get(n + 1).map_or(text.text.len(), |&(next, _)| next);
                let (raw, exact) = text.source_range(at..end);
                proptest::prop_assert!(exact);
                let again = Text::from_json_string(body.as_bytes(), raw.clone(), normalise).unwrap();
                proptest::prop_assert_eq!(again.text, c.to_string(), "{:?}", &body[raw.clone()]);
                if let Some(previous) = previous_end {
                    proptest::prop_assert_eq!(previous, raw.start);
                }
                previous_end = Some(raw.end);
            }
            if chars.is_empty() {
                proptest::prop_assert!(text.text.is_empty());
            } else {
                proptest::prop_assert_eq!(previous_end, Some(range.end));
            }
        }
    }

    /// Pieces of a JSON string's raw content, for the property above.
    const FRAGMENTS: &[&str] = &[
        "abc",
        "x",
        r"\n",
        r"\\",
        r#"\""#,
        r"\u0041",
        r"\u00e9",
        "é",
        "\u{200B}",
        r"\u200b",
        "Ａ",
        r"\uff21",
        r"\ud83d\ude00",
        "😀",
        "中文",
        r"\t",
    ];

    #[test]
    fn escaping_round_trips() {
        assert_eq!(escape_str("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
        assert_eq!(escape_str("plain@example.com"), "plain@example.com");
    }
}
