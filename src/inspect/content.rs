//! What a request says, as a list of text [`Segment`]s each with its location (a JSON path) and
//! a map back to the raw body bytes, and the [`Document`] that scans them all in one pass.
//!
//! Adjacent parts of one message share a *group*: they are scanned as one run of text, so a
//! secret split across two content blocks is still found. Different groups are kept apart by a
//! blank line so that unrelated texts never join into a false match. Because groups are scanned
//! apart, a group of plain strings already found clean in this conversation can be left out
//! before it is even decoded ([`SkipClean`]).

use std::ops::Range;

use base64::Engine;

use super::decode::Limits;
use super::json::{Node, Text};
use super::pdf::PdfError;

/// Where a segment's text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Body,
    Query,
    Header,
}

/// One piece of user content, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// JSON path in the body (`messages[2].content[0].text`), `query.<name>`, `header.<name>`,
    /// or `body` for a non-JSON body.
    pub location: String,
    pub text: Text,
    pub group: u32,
    pub place: Place,
}

impl Segment {
    /// True when rewriting the mapped source bytes rewrites exactly this text (body text that
    /// was not base64-decoded or otherwise transformed as a whole).
    pub fn rewritable(&self) -> bool {
        self.place == Place::Body && !matches!(self.text.origin, super::json::Origin::Opaque(_))
    }
}

/// Everything a provider reader extracted from a request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Content {
    pub segments: Vec<Segment>,
    /// The requested model, if the body or path names one.
    pub model: Option<String>,
    /// Locations of image (or other unreadable media) blocks, for the policy's image setting.
    pub media: Vec<String>,
    /// For each group made only of plain JSON strings: its group number and the keyed hash of
    /// its raw bytes, so that a group found clean can be skipped, undecoded, next time.
    pub raw_keys: Vec<(u32, u128)>,
}

/// The keyed hash of a message group's raw bytes: POLYVAL (a universal hash over GF(2^128))
/// under a per-process random key, its output passed through a keyed SipHash.
///
/// Why this and not a faster non-cryptographic hash: a group whose key was recorded clean is
/// skipped unscanned, so whoever could make a text with a secret collide with a clean one would
/// send it out uninspected. With a secret uniformly random key, two different inputs of at most
/// `n` blocks collide with probability at most `n / 2^128` (the difference of their polynomials
/// is non-zero and has at most `n` roots), whatever the inputs; the key and the hashes never
/// leave the process. Against a keyed SipHash it is about twice as fast on long inputs, the
/// largest single cost of a warm 200 KB request.
#[derive(Clone)]
pub struct RawKeyer {
    /// The key expanded (its powers), cloned for each group.
    hash: polyval::Polyval,
    /// A second, independent key for the output: POLYVAL is linear in its key, so a single
    /// (input, hash) pair that ever leaked (a debug print) would give the key away and let
    /// anyone build collisions. Passed through a keyed PRF (SipHash), as Carter-Wegman MACs
    /// encrypt their tag, the keys reveal nothing of it.
    finish: std::hash::RandomState,
}

impl std::fmt::Debug for RawKeyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.write_str("RawKeyer")
    }
}

impl RawKeyer {
    /// First block of every input: non-zero, so that inputs of different lengths never reduce
    /// to the same polynomial (POLYVAL ignores leading zero blocks).
    const DOMAIN: [u8; 16] = *b"egress-guard/raw";

    /// A keyer with a fresh random key, or `None` when the system has no randomness to give
    /// (the caller then skips nothing: every group is decoded and scanned).
    pub fn random() -> Option<Self> {
        use ring::rand::SecureRandom;
        let mut key = [0u8; 16];
        ring::rand::SystemRandom::new().fill(&mut key).ok()?;
        Self::with_key(key)
    }

    /// A keyer with this key; `None` for the all-zero key, under which everything collides.
    pub fn with_key(key: [u8; 16]) -> Option<Self> {
        if key == [0u8; 16] {
            return None;
        }
        Some(Self {
            hash: polyval::Polyval::new(&key.into()),
            finish: std::hash::RandomState::new(),
        })
    }

    /// The key of `pieces` under the policy `digest`.
    ///
    /// The input is encoded so that distinct (digest, pieces) never give the same blocks: each
    /// item is a block holding its length, then its bytes padded with zeros to a whole block.
    pub fn key<'b>(&self, digest: &str, pieces: impl IntoIterator<Item = &'b [u8]>) -> u128 {
        use polyval::universal_hash::UniversalHash;
        let mut hash = self.hash.clone();
        let item = |hash: &mut polyval::Polyval, bytes: &[u8]| {
            let mut len = [0u8; 16];
            len[..8].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            hash.update_padded(&len);
            hash.update_padded(bytes);
        };
        hash.update_padded(&Self::DOMAIN);
        item(&mut hash, digest.as_bytes());
        for piece in pieces {
            item(&mut hash, piece);
        }
        let tag = u128::from_le_bytes(hash.finalize().into());
        let half = |lane: u8| std::hash::BuildHasher::hash_one(&self.finish, (lane, tag));
        u128::from(half(0)) << 64 | u128::from(half(1))
    }
}

/// Recognises, before decoding it, a group of plain JSON strings already scanned under this
/// policy and found clean: an agent re-sends its whole history with every request.
///
/// The key covers the exact raw bytes of every string in the group and the policy digest; the
/// decoded text is a function of those bytes alone, so a group with the same key has the same
/// text and, scanned group by group, the same (no) findings.
pub struct SkipClean<'s> {
    /// Keyed per process, so nobody can craft a text with the key of another.
    pub keyer: &'s RawKeyer,
    pub digest: &'s str,
    pub is_clean: &'s dyn Fn(u128) -> bool,
}

/// Collects segments while a provider reader walks the JSON tree.
pub struct Collector<'a> {
    pub body: &'a [u8],
    /// The body as text, when it is UTF-8 (always, once it parsed as JSON): strings are then
    /// decoded without being validated again.
    text: Option<&'a str>,
    pub content: Content,
    group: u32,
    /// Bounds on what reading may decompress (a PDF's streams): the body's own limits.
    limits: Limits,
    /// The first part that could not be read, which makes the whole request unreadable.
    failure: Option<UnreadablePart>,
    /// Set: plain strings wait for their group to end, and a group known clean is dropped.
    skip: Option<SkipClean<'a>>,
    /// The current group's plain strings, not decoded yet (only with `skip`).
    pending: Vec<(String, Range<usize>)>,
    /// The current group holds text that is not a plain string (decoded base64, JSON in a
    /// string): it is never skipped, since its key would not cover all of its text.
    mixed: bool,
}

/// A part of a request that could not be inspected, and why: the request must not leave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the PDF document at {location} could not be inspected: {reason}")]
pub struct UnreadablePart {
    pub location: String,
    pub reason: PdfError,
}

/// Keys that never carry user content in any API: identifiers, enums, hashes (a short string
/// under one is skipped; see [`skipped_member`]).
const STRUCTURAL_KEYS: &[&str] = &[
    "type",
    "id",
    "role",
    "tool_use_id",
    "tool_call_id",
    "call_id",
    "media_type",
    "mime_type",
    "mimeType",
    "cache_control",
    "status",
    "detail",
    "format",
];

/// Opaque blobs by API design (reasoning signatures, encrypted reasoning): never text.
const OPAQUE_KEYS: &[&str] = &["signature", "encrypted_content"];

/// Longest value of a structural key that is taken for an identifier or enum and skipped.
const MAX_STRUCTURAL_VALUE: usize = 256;

/// Whether the generic walk skips `key: value`: an opaque blob, or a structural key holding a
/// short string. Anything else under a structural key (an object, an array, a long string) is
/// walked: the key alone does not make what is under it safe.
fn skipped_member(key: &str, value: &Node) -> bool {
    OPAQUE_KEYS.contains(&key)
        || STRUCTURAL_KEYS.contains(&key)
            && matches!(value, Node::Str(range) if range.len() <= MAX_STRUCTURAL_VALUE)
}

impl<'a> Collector<'a> {
    pub fn new(body: &'a [u8]) -> Self {
        Self::with_limits(body, Limits::default())
    }

    /// A collector that decompresses embedded documents only within `limits`.
    pub fn with_limits(body: &'a [u8], limits: Limits) -> Self {
        Self {
            text: std::str::from_utf8(body).ok(),
            ..Self::with_limits_unchecked(body, limits)
        }
    }

    /// A collector for a body already validated as UTF-8 (by [`super::json::utf8`]).
    pub fn for_text(body: &'a str, limits: Limits) -> Self {
        Self {
            text: Some(body),
            ..Self::with_limits_unchecked(body.as_bytes(), limits)
        }
    }

    fn with_limits_unchecked(body: &'a [u8], limits: Limits) -> Self {
        Self {
            body,
            text: None,
            content: Content::default(),
            group: 0,
            limits,
            failure: None,
            skip: None,
            pending: Vec::new(),
            mixed: false,
        }
    }

    /// Skips the groups `skip` knows to be clean (see [`SkipClean`]).
    pub fn skipping(mut self, skip: SkipClean<'a>) -> Self {
        self.skip = Some(skip);
        self
    }

    /// What was collected, or the first part that could not be read.
    pub fn finish(mut self) -> Result<Content, UnreadablePart> {
        self.end_group();
        match self.failure {
            Some(failure) => Err(failure),
            None => Ok(self.content),
        }
    }

    /// Starts a new group: the next text is not joined to the previous one.
    pub fn group(&mut self) {
        self.end_group();
        self.group += 1;
    }

    /// Decodes the current group's pending strings, unless the group is known clean.
    fn end_group(&mut self) {
        self.flush(true);
        self.mixed = false;
    }

    /// Decodes the pending strings into segments; with `may_skip`, first drops them if the
    /// whole group is plain strings known clean, else remembers its key.
    fn flush(&mut self, may_skip: bool) {
        if self.pending.is_empty() {
            return;
        }
        let key = match &self.skip {
            Some(skip) if may_skip && !self.mixed => {
                let body = self.body;
                let key = skip.keyer.key(
                    skip.digest,
                    self.pending
                        .iter()
                        .map(|(_, range)| body.get(range.clone()).unwrap_or_default()),
                );
                if (skip.is_clean)(key) {
                    self.pending.clear();
                    return;
                }
                Some(key)
            }
            _ => None,
        };
        let count = self.content.segments.len();
        for (location, range) in std::mem::take(&mut self.pending) {
            self.decode_and_push(location, range);
        }
        if let Some(key) = key {
            if self.content.segments.len() > count {
                self.content.raw_keys.push((self.group, key));
            }
        }
    }

    fn decode_and_push(&mut self, location: String, range: Range<usize>) {
        let text = match self.text {
            Some(body) => Text::from_json_str(body, range, true),
            None => Text::from_json_string(self.body, range, true),
        };
        if let Ok(text) = text {
            self.push_segment(location, text);
        }
    }

    /// Adds text that is not a plain string of the body: its group is never skipped.
    fn push(&mut self, location: String, text: Text) {
        self.flush(false);
        self.mixed = true;
        self.push_segment(location, text);
    }

    fn push_segment(&mut self, location: String, text: Text) {
        if !text.text.is_empty() {
            self.content.segments.push(Segment {
                location,
                text,
                group: self.group,
                place: Place::Body,
            });
        }
    }

    /// Adds `node` if it is a string (in the current group). Returns whether it was.
    pub fn string(&mut self, node: Option<&Node>, path: &str) -> bool {
        if let Some(Node::Str(range)) = node {
            if self.skip.is_some() {
                self.pending.push((path.to_owned(), range.clone()));
            } else {
                self.decode_and_push(path.to_owned(), range.clone());
            }
            true
        } else {
            false
        }
    }

    /// Adds every string leaf under `node`, each in its own group, skipping structural keys.
    pub fn strings(&mut self, node: Option<&Node>, path: &str) {
        let Some(node) = node else { return };
        match node {
            Node::Str(_) => {
                self.group();
                self.string(Some(node), path);
            }
            Node::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.strings(Some(item), &index(path, i));
                }
            }
            Node::Object(members) => {
                for (key, value) in members {
                    if !skipped_member(key, value) {
                        self.strings(Some(value), &join(path, key));
                    }
                }
            }
            _ => {}
        }
    }

    /// A string that holds JSON (tool-call arguments): its leaves are scanned as JSON with
    /// paths continuing inside it; if it is not JSON, it is scanned as text.
    pub fn json_string(&mut self, node: Option<&Node>, path: &str) {
        let Some(Node::Str(range)) = node else {
            // Some APIs send arguments as an object already.
            self.strings(node, path);
            return;
        };
        let Ok(outer) = Text::from_json_string(self.body, range.clone(), false) else {
            return;
        };
        // Its segments are added below with group numbers of their own.
        self.end_group();
        let inner_body = outer.text.as_bytes();
        match super::json::parse(inner_body) {
            Ok(inner) => {
                let mut inner_collector = Collector::for_text(&outer.text, self.limits);
                inner_collector.group = self.group;
                inner_collector.strings(Some(&inner), path);
                self.group = inner_collector.group + 1;
                for segment in inner_collector.content.segments {
                    let text = segment.text.through(&outer);
                    self.content.segments.push(Segment { text, ..segment });
                }
                self.mixed = false;
            }
            Err(_) => {
                self.group();
                self.string(node, path);
            }
        }
    }

    /// Base64 data of a document: decoded and scanned when its type is text; a PDF is also
    /// scanned for the text its (possibly compressed) content streams show. A finding in it
    /// cannot be redacted in place, so the policy blocks instead.
    pub fn base64(&mut self, node: Option<&Node>, path: &str, media_type: &str) {
        let Some(Node::Str(range)) = node else { return };
        let mut raw = self.body[range.clone()].trim_ascii();
        // A data URL (`data:application/pdf;base64,JVBER...`) names its own type.
        let mut media_type = media_type.to_owned();
        if raw.starts_with(b"data:") {
            if let Some(comma) = raw.iter().position(|&b| b == b',') {
                let header = String::from_utf8_lossy(&raw[5..comma]).into_owned();
                if media_type.is_empty() {
                    media_type = header.split(';').next().unwrap_or("").to_owned();
                }
                raw = &raw[comma + 1..];
            }
        }
        let media_type = media_type.as_str();
        let textual = media_type.starts_with("text/")
            || media_type.contains("json")
            || media_type.contains("xml")
            || media_type.contains("yaml")
            || media_type == "application/pdf"
            || media_type.is_empty();
        if !textual {
            self.media(path);
            return;
        }
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(raw) else {
            // Not base64 after all: scan it as the text it is.
            self.group();
            self.string(node, path);
            return;
        };
        let decoded = Text::from_plain(&bytes, 0..bytes.len(), true).text;
        self.group();
        self.push(path.to_owned(), Text::opaque(decoded, range.clone()));
        self.group();
        if media_type == "application/pdf" || bytes.starts_with(b"%PDF-") {
            // What the pages say sits in compressed streams the raw bytes do not show.
            match super::pdf::text(&bytes, &self.limits) {
                Ok(text) => {
                    let text = Text::from_plain(text.as_bytes(), 0..text.len(), true).text;
                    self.push(path.to_owned(), Text::opaque(text, range.clone()));
                    self.group();
                }
                Err(reason) => {
                    self.failure.get_or_insert(UnreadablePart {
                        location: path.to_owned(),
                        reason,
                    });
                }
            }
        }
    }

    /// Records an image (or other media) block at `path`.
    pub fn media(&mut self, path: &str) {
        self.content.media.push(path.to_owned());
    }
}

/// `path.key`, or `key` at the root.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        return key.to_owned();
    }
    // Built by hand rather than with `format!`: a long conversation names thousands of
    // blocks, and the formatting machinery was a tenth of the time spent reading one.
    let mut joined = String::with_capacity(path.len() + 1 + key.len());
    joined.push_str(path);
    joined.push('.');
    joined.push_str(key);
    joined
}

/// `path[i]`.
pub fn index(path: &str, i: usize) -> String {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut n = i;
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = std::str::from_utf8(&digits[start..]).unwrap_or("?");
    let mut indexed = String::with_capacity(path.len() + digits.len() + 2);
    indexed.push_str(path);
    indexed.push('[');
    indexed.push_str(digits);
    indexed.push(']');
    indexed
}

/// All segments joined for one scan, with the way back to each segment.
#[derive(Debug, Clone)]
pub struct Document {
    pub text: String,
    /// Start offset in `text` of each segment, in segment order.
    starts: Vec<usize>,
    /// The range of `text` each group occupies: the units that can be scanned apart.
    pub groups: Vec<Range<usize>>,
    /// The group number ([`Segment::group`]) of each of `groups`.
    pub group_ids: Vec<u32>,
}

/// Between groups: nothing a detector could take as part of a value.
const GROUP_SEPARATOR: &str = "\n\n";

impl Document {
    pub fn build(segments: &[Segment]) -> Document {
        let total: usize = segments.iter().map(|s| s.text.text.len() + 2).sum();
        let mut text = String::with_capacity(total);
        let mut starts = Vec::with_capacity(segments.len());
        let mut groups: Vec<Range<usize>> = Vec::new();
        let mut group_ids = Vec::new();
        let mut previous_group = None;
        for segment in segments {
            if previous_group != Some(segment.group) {
                if previous_group.is_some() {
                    text.push_str(GROUP_SEPARATOR);
                }
                groups.push(text.len()..text.len());
                group_ids.push(segment.group);
            }
            previous_group = Some(segment.group);
            starts.push(text.len());
            text.push_str(&segment.text.text);
            if let Some(last) = groups.last_mut() {
                last.end = text.len();
            }
        }
        Document {
            text,
            starts,
            groups,
            group_ids,
        }
    }

    /// The segments (index and range within the segment's text) that `span` of the document
    /// covers; more than one when a value runs across adjacent parts.
    pub fn pieces(&self, segments: &[Segment], span: Range<usize>) -> Vec<(usize, Range<usize>)> {
        let first = self
            .starts
            .partition_point(|&s| s <= span.start)
            .saturating_sub(1);
        let mut pieces = Vec::new();
        for (index, &start) in self.starts.iter().enumerate().skip(first) {
            if start >= span.end {
                break;
            }
            let end = start + segments.get(index).map_or(0, |s| s.text.text.len());
            if end > span.start {
                pieces.push((
                    index,
                    span.start.max(start) - start..span.end.min(end) - start,
                ));
            }
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(body: &[u8], f: impl FnOnce(&mut Collector, &Node)) -> Content {
        let node = super::super::json::parse(body).unwrap();
        let mut c = Collector::new(body);
        f(&mut c, &node);
        c.content
    }

    #[test]
    fn only_groups_of_plain_strings_known_clean_are_skipped() {
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD.encode("doc text");
        let body =
            format!(r#"{{"a":"plain one","b":"plain two","doc":"{data}","c":"plain \u0033"}}"#);
        let node = super::super::json::parse(body.as_bytes()).unwrap();
        let read = |clean: &dyn Fn(u128) -> bool| {
            let keyer = RawKeyer::random().expect("randomness");
            let skip = SkipClean {
                keyer: &keyer,
                digest: "d",
                is_clean: clean,
            };
            let mut c = Collector::new(body.as_bytes()).skipping(skip);
            c.string(node.get("a"), "a");
            c.string(node.get("b"), "b");
            c.group();
            c.base64(node.get("doc"), "doc", "text/plain");
            c.group();
            c.string(node.get("c"), "c");
            c.finish().unwrap()
        };
        let all = read(&|_| false);
        let texts: Vec<&str> = all.segments.iter().map(|s| s.text.text.as_str()).collect();
        assert_eq!(texts, ["plain one", "plain two", "doc text", "plain 3"]);
        assert_eq!(all.raw_keys.len(), 2, "the decoded document is never keyed");
        let skipped = read(&|_| true);
        let texts: Vec<&str> = skipped
            .segments
            .iter()
            .map(|s| s.text.text.as_str())
            .collect();
        assert_eq!(texts, ["doc text"]);
    }

    #[test]
    fn the_raw_key_covers_every_byte_and_where_the_pieces_split() {
        let keyer = RawKeyer::random().expect("randomness");
        let key = |digest: &str, pieces: &[&[u8]]| keyer.key(digest, pieces.iter().copied());
        let base = key("d", &[b"ab", b"c"]);
        assert_eq!(
            base,
            key("d", &[b"ab", b"c"]),
            "the same input, the same key"
        );
        for (why, other) in [
            ("another split", key("d", &[b"a", b"bc"])),
            ("one piece", key("d", &[b"abc"])),
            ("a trailing zero byte", key("d", &[b"ab", b"c\0"])),
            ("an empty piece more", key("d", &[b"ab", b"c", b""])),
            ("one byte changed", key("d", &[b"ab", b"d"])),
            ("another policy", key("e", &[b"ab", b"c"])),
        ] {
            assert_ne!(base, other, "{why}");
        }
        let long = vec![b'x'; 100_000];
        let mut changed = long.clone();
        changed[54_321] = b'y';
        assert_ne!(key("d", &[&long]), key("d", &[&changed]));
        let other = RawKeyer::random().expect("randomness");
        assert_ne!(
            base,
            other.key("d", [&b"ab"[..], &b"c"[..]]),
            "keyed per process"
        );
        assert!(
            RawKeyer::with_key([0; 16]).is_none(),
            "the zero key collides everything"
        );
    }

    #[test]
    fn paths_name_keys_and_indexes() {
        assert_eq!(join("", "system"), "system");
        assert_eq!(join("messages[3]", "content"), "messages[3].content");
        assert_eq!(index("messages", 0), "messages[0]");
        assert_eq!(index("messages", 1207), "messages[1207]");
        assert_eq!(index("", usize::MAX), format!("[{}]", usize::MAX));
    }

    #[test]
    fn a_value_split_across_two_parts_maps_back_to_both() {
        let body = br#"{"a":"key AKIA1234","b":"5678ABCD end"}"#;
        let content = collect(body, |c, n| {
            c.string(n.get("a"), "a");
            c.string(n.get("b"), "b");
        });
        let doc = Document::build(&content.segments);
        let at = doc.text.find("AKIA").unwrap();
        let pieces = doc.pieces(&content.segments, at..at + 16);
        assert_eq!(pieces, vec![(0, 4..12), (1, 0..8)]);
    }

    #[test]
    fn different_groups_never_join() {
        let body = br#"{"a":"AKIA1234","b":"5678ABCD"}"#;
        let content = collect(body, |c, n| {
            c.string(n.get("a"), "a");
            c.group();
            c.string(n.get("b"), "b");
        });
        let doc = Document::build(&content.segments);
        assert_eq!(doc.text, "AKIA1234\n\n5678ABCD");
        assert_eq!(doc.pieces(&content.segments, 10..14), vec![(1, 0..4)]);
    }

    #[test]
    fn tool_arguments_are_read_as_the_json_they_contain() {
        let body = br#"{"arguments":"{\"cmd\":\"export TOKEN=abc\",\"n\":1}"}"#;
        let content = collect(body, |c, n| c.json_string(n.get("arguments"), "arguments"));
        assert_eq!(content.segments.len(), 1);
        let segment = &content.segments[0];
        assert_eq!(segment.location, "arguments.cmd");
        assert_eq!(segment.text.text, "export TOKEN=abc");
        let (raw, exact) = segment.text.source_range(13..16);
        assert!(exact);
        assert_eq!(&body[raw], b"abc");
    }

    #[test]
    fn base64_text_documents_are_decoded_but_not_rewritable() {
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD.encode("-----BEGIN KEY-----");
        let body = format!(r#"{{"data":"{data}"}}"#);
        let content = collect(body.as_bytes(), |c, n| {
            c.base64(n.get("data"), "data", "text/plain")
        });
        assert_eq!(content.segments[0].text.text, "-----BEGIN KEY-----");
        assert!(!content.segments[0].rewritable());
        let content = collect(body.as_bytes(), |c, n| {
            c.base64(n.get("data"), "data", "image/png")
        });
        assert!(content.segments.is_empty());
        assert_eq!(content.media, vec!["data".to_owned()]);
    }
}
