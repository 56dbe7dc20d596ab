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

/// A parsed JSON value; strings stay as raw byte ranges (inside the quotes) of the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Str(Range<usize>),
    Number,
    Bool(bool),
    Null,
    Array(Vec<Node>),
    /// Members in body order; keys decoded.
    Object(Vec<(String, Node)>),
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

    pub fn members(&self) -> Option<&[(String, Node)]> {
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
            Some(b't') => self.expect_literal(b"true", Node::Bool(true)),
            Some(b'f') => self.expect_literal(b"false", Node::Bool(false)),
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

    /// Returns the raw range inside the quotes; checks escapes and UTF-8 on the way.
    fn string(&mut self) -> Result<Range<usize>, JsonError> {
        self.pos += 1; // opening quote
        let start = self.pos;
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    let range = start..self.pos;
                    self.pos += 1;
                    if std::str::from_utf8(&self.input[range.clone()]).is_err() {
                        return Err(JsonError {
                            offset: start,
                            reason: "string is not valid UTF-8",
                        });
                    }
                    return Ok(range);
                }
                Some(b'\\') => {
                    match self.input.get(self.pos + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 2
                        }
                        Some(b'u') => {
                            let hex = self.input.get(self.pos + 2..self.pos + 6);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.error("invalid \\u escape"));
                            }
                            self.pos += 6;
                        }
                        _ => return Err(self.error("invalid escape")),
                    };
                }
                Some(0..=0x1f) => return Err(self.error("control character in string")),
                Some(_) => self.pos += 1,
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
            let key = Text::from_json_string(self.input, key_range, false)
                .map(|t| t.text)
                .map_err(|_| self.error("invalid key"))?;
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
    /// Byte `i` of the text started at source byte `table[i]`; `table[len]` is the end.
    Table(Vec<u32>),
    /// Derived in a way that cannot be mapped back (e.g. base64-decoded): every span maps to
    /// the whole source range, and it cannot be rewritten in place.
    Opaque(Range<usize>),
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

/// Builds a [`Text::Table`] char by char.
struct TableBuilder {
    text: String,
    table: Vec<u32>,
    normalise: bool,
}

impl TableBuilder {
    fn with_capacity(n: usize, normalise: bool) -> Self {
        Self {
            text: String::with_capacity(n),
            table: Vec::with_capacity(n + 1),
            normalise,
        }
    }

    fn push(&mut self, c: char, source_start: usize) {
        let c = if self.normalise {
            if is_invisible(c) {
                return;
            }
            fold(c).unwrap_or(c)
        } else {
            c
        };
        let start = source_start as u32;
        for _ in 0..c.len_utf8() {
            self.table.push(start);
        }
        self.text.push(c);
    }

    /// A run of ASCII starting at `source_start`, byte for byte.
    fn push_ascii(&mut self, run: &str, source_start: usize) {
        let start = source_start as u32;
        self.table.extend(start..start + run.len() as u32);
        self.text.push_str(run);
    }

    fn finish(mut self, source_end: usize) -> Text {
        self.table.push(source_end as u32);
        Text {
            text: self.text,
            origin: Origin::Table(self.table),
        }
    }
}

impl Text {
    /// Plain text taken as-is from `source[range]` (UTF-8 checked by the caller's parse or
    /// decoded lossily), normalised when `normalise` is set.
    pub fn from_plain(source: &[u8], range: Range<usize>, normalise: bool) -> Text {
        let raw = &source[range.clone()];
        match std::str::from_utf8(raw) {
            Ok(s) if !normalise || raw.is_ascii() || !s.chars().any(needs_normalising) => Text {
                text: s.to_owned(),
                origin: Origin::Shifted(range.start),
            },
            Ok(s) => {
                let mut builder = TableBuilder::with_capacity(s.len(), normalise);
                for (i, c) in s.char_indices() {
                    builder.push(c, range.start + i);
                }
                builder.finish(range.end)
            }
            Err(_) => {
                // Not UTF-8 (binary, or a legacy charset we were not told about): scan the
                // lossy decoding, each replacement char mapped to the bytes it replaced.
                let mut builder = TableBuilder::with_capacity(raw.len(), normalise);
                let mut offset = 0;
                for chunk in raw.utf8_chunks() {
                    for (i, c) in chunk.valid().char_indices() {
                        builder.push(c, range.start + offset + i);
                    }
                    offset += chunk.valid().len();
                    if !chunk.invalid().is_empty() {
                        builder.push(char::REPLACEMENT_CHARACTER, range.start + offset);
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
        if !raw.contains(&b'\\') {
            return Ok(Text::from_plain(source, range, normalise));
        }
        let bad = |offset, reason| JsonError { offset, reason };
        let s = std::str::from_utf8(raw).map_err(|_| bad(range.start, "not UTF-8"))?;
        let bytes = s.as_bytes();
        let hex4 = |at: usize| -> Option<u32> {
            let digits = bytes.get(at..at + 4)?;
            let text = std::str::from_utf8(digits).ok()?;
            u32::from_str_radix(text, 16).ok()
        };
        let mut builder = TableBuilder::with_capacity(raw.len(), normalise);
        let mut i = 0;
        while i < bytes.len() {
            // Runs of plain ASCII (most of any body) are copied with their offsets in bulk;
            // normalisation never touches ASCII.
            let run = bytes[i..]
                .iter()
                .position(|&b| b == b'\\' || b >= 0x80)
                .unwrap_or(bytes.len() - i);
            if run > 0 {
                builder.push_ascii(&s[i..i + run], range.start + i);
                i += run;
                continue;
            }
            let at = range.start + i;
            if bytes[i] != b'\\' {
                let c = s[i..].chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
                builder.push(c, at);
                i += c.len_utf8();
                continue;
            }
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
            builder.push(decoded, at);
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
            Origin::Table(table) => {
                let s = table.get(start).copied().unwrap_or(0) as usize;
                let e = table.get(end).copied().unwrap_or(0) as usize;
                (s..e.max(s), true)
            }
            Origin::Opaque(range) => (range.clone(), false),
        }
    }

    /// The same text with its source offsets moved by `base` (its source was a slice that
    /// starts at `base` of the real source).
    pub fn rebase(self, base: usize) -> Text {
        let origin = match self.origin {
            Origin::Shifted(b) => Origin::Shifted(b + base),
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
            (Origin::Shifted(base), Origin::Table(_)) => Origin::Table(
                (0..=self.text.len())
                    .map(|i| outer.source_range(base + i..base + i).0.start as u32)
                    .collect(),
            ),
            (Origin::Table(table), _) => Origin::Table(
                table
                    .iter()
                    .map(|&i| outer.source_range(i as usize..i as usize).0.start as u32)
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

    #[test]
    fn escaping_round_trips() {
        assert_eq!(escape_str("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
        assert_eq!(escape_str("plain@example.com"), "plain@example.com");
    }
}
