//! Pseudonymization: a value leaves as a surrogate of the same kind (an email as an
//! email-shaped token, a customer name as `CUSTOMER_3F9A2C`), and the response has the
//! surrogates put back before the user sees it.
//!
//! Surrogates are derived with a keyed hash (HMAC-SHA256 with a key that never leaves this
//! process), so the same value gets the same surrogate in every turn of a conversation while
//! nothing but the running proxy can link the two. The table that restores them lives only as
//! long as the request's response.

use std::collections::HashMap;
use std::ops::Range;

use aho_corasick::{AhoCorasick, MatchKind};
use bytes::Bytes;
use http::{header, response};

use crate::detect::Category;
use crate::inspect::json::{self, Node, Text};
use crate::proxy::gate::ResponseFilter;

/// Makes surrogates. One per process (or per policy), shared by all requests.
pub struct Pseudonymizer {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer")
    }
}

impl Pseudonymizer {
    /// With a key of the caller's choosing (tests, benchmarks).
    pub fn with_key(key: &[u8]) -> Self {
        Self {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        }
    }

    /// With a fresh random key.
    pub fn random() -> Self {
        Self::with_key(&random_key())
    }

    fn tag(&self, detector: &str, value: &str) -> [u8; 32] {
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        ctx.update(detector.as_bytes());
        ctx.update(&[0]);
        ctx.update(value.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// The surrogate for `value` found by `detector`. Only ASCII letters, digits, `_`, `.`,
    /// `@`, `+`: nothing that needs escaping in JSON, a URL or a header.
    pub fn surrogate(&self, detector: &str, category: Category, value: &str) -> String {
        let tag = self.tag(detector, value);
        let hex = hex::encode_upper(&tag[..4]);
        let kind = detector.rsplit('.').next().unwrap_or(detector);
        if kind.contains("email") {
            format!("user.{}@example.invalid", hex.to_ascii_lowercase())
        } else if kind.contains("phone") {
            let digits: String = tag[..6].iter().map(|b| char::from(b'0' + b % 10)).collect();
            format!("+1555{digits}")
        } else if category == Category::Custom || kind.contains("name") {
            format!("CUSTOMER_{hex}")
        } else {
            let mut kind: String = kind
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(24)
                .collect::<String>()
                .to_ascii_uppercase();
            if kind.is_empty() {
                kind = "VALUE".into();
            }
            format!("{kind}_{hex}")
        }
    }
}

/// 32 random bytes from the system's CSPRNG.
pub fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    // The system RNG failing is not something to run on: a fixed key would make surrogates
    // linkable across machines, so fall back to the time-based UUID bits only as a last resort.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key).is_err() {
        key[..16].copy_from_slice(uuid::Uuid::now_v7().as_bytes());
    }
    key
}

/// Surrogate -> original, for one request's response.
#[derive(Debug, Clone, Default)]
pub struct RestoreTable {
    pairs: Vec<(String, String)>,
}

impl RestoreTable {
    pub fn insert(&mut self, surrogate: String, original: String) {
        if !self.pairs.iter().any(|(s, _)| *s == surrogate) {
            self.pairs.push((surrogate, original));
        }
    }

    /// Adds `other`'s pairs (a WebSocket connection gathers its messages' surrogates).
    pub fn merge(&mut self, other: RestoreTable) {
        for (surrogate, original) in other.pairs {
            self.insert(surrogate, original);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }
}

/// How originals are written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escaping {
    /// Inside a JSON document: escaped as a JSON string's content.
    Json,
    /// Plain text.
    None,
}

/// Replaces surrogates in a text stream, holding back only a tail that could begin one.
#[derive(Debug, Clone)]
struct Replacer {
    matcher: AhoCorasick,
    surrogates: Vec<String>,
    originals_raw: Vec<String>,
    originals_json: Vec<String>,
}

impl Replacer {
    fn new(table: &RestoreTable) -> Option<Replacer> {
        let surrogates: Vec<String> = table.pairs.iter().map(|(s, _)| s.clone()).collect();
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&surrogates)
            .ok()?;
        Some(Replacer {
            matcher,
            originals_raw: table.pairs.iter().map(|(_, o)| o.clone()).collect(),
            originals_json: table
                .pairs
                .iter()
                .map(|(_, o)| json::escape_str(o))
                .collect(),
            surrogates,
        })
    }

    /// Replaces every whole surrogate in `text`; returns the result and whether anything
    /// changed.
    fn replace_all(&self, text: &[u8], escaping: Escaping) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(text.len());
        let mut at = 0;
        let mut changed = false;
        for m in self.matcher.find_iter(text) {
            out.extend_from_slice(&text[at..m.start()]);
            let i = m.pattern().as_usize();
            let original = match escaping {
                Escaping::Json => &self.originals_json[i],
                Escaping::None => &self.originals_raw[i],
            };
            out.extend_from_slice(original.as_bytes());
            at = m.end();
            changed = true;
        }
        out.extend_from_slice(&text[at..]);
        (out, changed)
    }

    /// Length of the longest suffix of `text` that is a proper prefix of some surrogate.
    fn holdback(&self, text: &[u8]) -> usize {
        let mut best = 0;
        for s in &self.surrogates {
            let s = s.as_bytes();
            let max = (s.len() - 1).min(text.len());
            for k in (best + 1..=max).rev() {
                if text.ends_with(&s[..k]) {
                    best = k;
                    break;
                }
            }
        }
        best
    }

    /// Streams `input` after `carry`: returns what can be sent now, leaves in `carry` what
    /// could still become a surrogate.
    fn stream(&self, carry: &mut Vec<u8>, input: &[u8], escaping: Escaping) -> (Vec<u8>, bool) {
        carry.extend_from_slice(input);
        let text = std::mem::take(carry);
        // Matches are found first so that a surrogate completed by this input is replaced
        // whole; only the tail after the last match can be held back.
        let last_end = self.matcher.find_iter(&text).last().map_or(0, |m| m.end());
        let hold = self.holdback(&text[last_end..]);
        let (ready, rest) = text.split_at(text.len() - hold);
        *carry = rest.to_vec();
        self.replace_all(ready, escaping)
    }
}

/// Keys whose string values arrive in pieces across SSE events (text deltas, streamed tool
/// arguments); only these may have a tail held back.
const DELTA_KEYS: &[&str] = &[
    "text",
    "content",
    "delta",
    "partial_json",
    "thinking",
    "arguments",
    "output",
    "refusal",
];

/// Keys whose values are JSON text themselves (originals escaped once more inside them).
const JSON_TEXT_KEYS: &[&str] = &["partial_json", "arguments"];

/// Puts originals back in a response as it streams: JSON, SSE or plain text.
pub struct RestoreFilter {
    replacer: Option<std::sync::Arc<Replacer>>,
    mode: Mode,
    /// Raw bytes not yet sent: a partial SSE event, or a tail that could begin a surrogate.
    pending: Vec<u8>,
    /// Per JSON path of a streamed string in SSE data: the held-back tail, and the last event
    /// that carried it (to re-emit the tail in if no later event continues it).
    carries: HashMap<String, Carry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bytes(Escaping),
    Sse,
}

struct Carry {
    tail: Vec<u8>,
    /// The event it came from: its lines before `data:`, its data, and the string's range.
    template: (Vec<u8>, Vec<u8>, Range<usize>),
    json_text: bool,
}

impl RestoreFilter {
    pub fn new(table: &RestoreTable) -> Self {
        Self {
            replacer: Replacer::new(table).map(std::sync::Arc::new),
            mode: Mode::Bytes(Escaping::Json),
            pending: Vec::new(),
            carries: HashMap::new(),
        }
    }

    fn sse_data(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some((end, sep)) = event_end(&self.pending) {
            let event: Vec<u8> = self.pending.drain(..end + sep).collect();
            self.sse_event(&event[..end], &event[end..], &mut out);
        }
        out
    }

    /// One complete SSE event (without its blank-line terminator `sep`).
    fn sse_event(&mut self, event: &[u8], sep: &[u8], out: &mut Vec<u8>) {
        let Some(replacer) = self.replacer.clone() else {
            out.extend_from_slice(event);
            out.extend_from_slice(sep);
            return;
        };
        // Split into the lines before the data, and the data (one `data:` line; multi-line
        // data is passed through with plain replacement).
        let lines: Vec<&[u8]> = split_lines(event);
        let data_lines: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].starts_with(b"data:"))
            .collect();
        let json_data = match data_lines.as_slice() {
            [i] => {
                let data = strip_data(lines[*i]);
                json::parse(data).ok().map(|node| (*i, data, node))
            }
            _ => None,
        };
        if data_lines.is_empty() {
            // Comments and keep-alives carry no text: they neither flush nor change.
            out.extend_from_slice(event);
            out.extend_from_slice(sep);
            return;
        }
        let Some((data_index, data, node)) = json_data else {
            // Not JSON ([DONE], pings): flush every carry before it, replace whole surrogates.
            self.flush_carries(out);
            let (text, _) = replacer.replace_all(event, Escaping::None);
            out.extend_from_slice(&text);
            out.extend_from_slice(sep);
            return;
        };
        let mut leaves = Vec::new();
        collect_leaves(&node, String::new(), &mut leaves);
        let prefix: Vec<u8> = lines[..data_index]
            .iter()
            .flat_map(|l| l.iter().copied().chain(*b"\n"))
            .collect();
        // Carries whose string does not continue in this event are flushed first, in events of
        // their own, so text is never lost or moved to another field.
        let present: std::collections::HashSet<&str> =
            leaves.iter().map(|(p, _)| p.as_str()).collect();
        let stale: Vec<String> = self
            .carries
            .keys()
            .filter(|k| !present.contains(k.as_str()))
            .cloned()
            .collect();
        for key in stale {
            if let Some(carry) = self.carries.remove(&key) {
                emit_carry(carry, out);
            }
        }
        let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
        for (path, range) in leaves {
            let key = path.rsplit('.').next().unwrap_or(&path);
            let streamed = DELTA_KEYS.contains(&key);
            let json_text = JSON_TEXT_KEYS.contains(&key);
            let Ok(value) = Text::from_json_string(data, range.clone(), false) else {
                continue;
            };
            let escaping = if json_text {
                Escaping::Json
            } else {
                Escaping::None
            };
            let (new_value, changed, tail) = if streamed {
                let mut tail = self
                    .carries
                    .remove(&path)
                    .map(|c| c.tail)
                    .unwrap_or_default();
                let had_tail = !tail.is_empty();
                let (ready, changed) = replacer.stream(&mut tail, value.text.as_bytes(), escaping);
                let changed = changed || had_tail || !tail.is_empty();
                (ready, changed, tail)
            } else {
                let (v, changed) = replacer.replace_all(value.text.as_bytes(), escaping);
                (v, changed, Vec::new())
            };
            if !tail.is_empty() {
                self.carries.insert(
                    path.clone(),
                    Carry {
                        tail,
                        template: (prefix.clone(), data.to_vec(), range.clone()),
                        json_text,
                    },
                );
            }
            if changed {
                let text = String::from_utf8_lossy(&new_value);
                edits.push((range, json::escape_str(&text).into_bytes()));
            }
        }
        if edits.is_empty() {
            out.extend_from_slice(event);
        } else {
            out.extend_from_slice(&prefix);
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&splice(data, edits));
            for line in &lines[data_index + 1..] {
                out.extend_from_slice(b"\n");
                out.extend_from_slice(line);
            }
        }
        out.extend_from_slice(sep);
    }

    fn flush_carries(&mut self, out: &mut Vec<u8>) {
        let mut keys: Vec<String> = self.carries.keys().cloned().collect();
        keys.sort();
        for key in keys {
            if let Some(carry) = self.carries.remove(&key) {
                emit_carry(carry, out);
            }
        }
    }
}

/// Re-emits a held-back tail as its own event, shaped like the event it came from.
fn emit_carry(carry: Carry, out: &mut Vec<u8>) {
    let (prefix, data, range) = carry.template;
    let text = String::from_utf8_lossy(&carry.tail);
    let _ = carry.json_text;
    out.extend_from_slice(&prefix);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&splice(
        &data,
        vec![(range, json::escape_str(&text).into_bytes())],
    ));
    out.extend_from_slice(b"\n\n");
}

fn splice(data: &[u8], mut edits: Vec<(Range<usize>, Vec<u8>)>) -> Vec<u8> {
    edits.sort_by_key(|(r, _)| r.start);
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut at = 0;
    for (range, replacement) in edits {
        if range.start < at {
            continue;
        }
        out.extend_from_slice(&data[at..range.start]);
        out.extend_from_slice(&replacement);
        at = range.end;
    }
    out.extend_from_slice(&data[at..]);
    out
}

/// Where the first complete event ends, and the length of its blank-line terminator.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' && buf[i + 1] == b'\n' {
            return Some((i, 2));
        }
        if buf[i..].starts_with(b"\r\n\r\n") {
            return Some((i, 4));
        }
        i += 1;
    }
    None
}

fn split_lines(event: &[u8]) -> Vec<&[u8]> {
    event
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect()
}

fn strip_data(line: &[u8]) -> &[u8] {
    let rest = &line[5..];
    rest.strip_prefix(b" ").unwrap_or(rest)
}

/// Every string leaf with its path (`choices.0.delta.content`).
fn collect_leaves(node: &Node, path: String, out: &mut Vec<(String, Range<usize>)>) {
    match node {
        Node::Str(range) => out.push((path, range.clone())),
        Node::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_leaves(item, format!("{path}.{i}"), out);
            }
        }
        Node::Object(members) => {
            for (key, value) in members {
                let child = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                collect_leaves(value, child, out);
            }
        }
        _ => {}
    }
}

impl ResponseFilter for RestoreFilter {
    fn head(&mut self, parts: &mut response::Parts) {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        self.mode = if content_type.starts_with("text/event-stream") {
            Mode::Sse
        } else if content_type.contains("json") {
            Mode::Bytes(Escaping::Json)
        } else {
            Mode::Bytes(Escaping::None)
        };
        parts.headers.remove(header::CONTENT_LENGTH);
    }

    fn data(&mut self, chunk: Bytes) -> Bytes {
        let Some(replacer) = &self.replacer else {
            return chunk;
        };
        match self.mode {
            Mode::Bytes(escaping) => {
                let mut carry = std::mem::take(&mut self.pending);
                let (out, _) = replacer.stream(&mut carry, &chunk, escaping);
                self.pending = carry;
                Bytes::from(out)
            }
            Mode::Sse => Bytes::from(self.sse_data(&chunk)),
        }
    }

    fn finish(&mut self) -> Bytes {
        let mut out = Vec::new();
        if self.mode == Mode::Sse {
            self.flush_carries(&mut out);
        }
        let rest = std::mem::take(&mut self.pending);
        match &self.replacer {
            Some(r) => out.extend_from_slice(&r.replace_all(&rest, Escaping::None).0),
            None => out.extend_from_slice(&rest),
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RestoreTable {
        let mut t = RestoreTable::default();
        t.insert("CUSTOMER_3F9A2C11".into(), "Ada \"Q\" Lovelace".into());
        t.insert(
            "user.ab12cd34@example.invalid".into(),
            "ada@corp.example".into(),
        );
        t
    }

    fn head(filter: &mut RestoreFilter, content_type: &'static str) {
        let (mut parts, _) = http::Response::builder()
            .header("content-type", content_type)
            .header("content-length", "10")
            .body(())
            .unwrap()
            .into_parts();
        filter.head(&mut parts);
        assert!(parts.headers.get("content-length").is_none());
    }

    fn run(filter: &mut RestoreFilter, chunks: &[&str]) -> String {
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&filter.data(Bytes::from(c.to_string())));
        }
        out.extend_from_slice(&filter.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn surrogates_have_the_shape_of_what_they_replace_and_are_stable() {
        let p = Pseudonymizer::with_key(b"k");
        let email = p.surrogate("pii.email", Category::Pii, "ada@corp.example");
        assert!(
            email.starts_with("user.") && email.ends_with("@example.invalid"),
            "{email}"
        );
        assert_eq!(
            email,
            p.surrogate("pii.email", Category::Pii, "ada@corp.example")
        );
        assert_ne!(
            email,
            p.surrogate("pii.email", Category::Pii, "bob@corp.example")
        );
        assert!(p
            .surrogate("custom.customers", Category::Custom, "Acme")
            .starts_with("CUSTOMER_"));
        let phone = p.surrogate("pii.phone_number", Category::Pii, "+44 20 7946 0000");
        assert!(phone.starts_with("+1555") && phone.len() == 11, "{phone}");
        let other = p.surrogate("pii.iban", Category::Pii, "GB82...");
        assert!(other.starts_with("IBAN_"), "{other}");
        assert_ne!(
            Pseudonymizer::with_key(b"other").surrogate(
                "pii.email",
                Category::Pii,
                "ada@corp.example"
            ),
            email
        );
    }

    #[test]
    fn json_responses_get_originals_back_escaped_even_across_chunks() {
        let mut f = RestoreFilter::new(&table());
        head(&mut f, "application/json");
        let out = run(
            &mut f,
            &[
                r#"{"text":"Dear CUSTOM"#,
                r#"ER_3F9A2C11, mail user.ab12"#,
                r#"cd34@example.invalid"}"#,
            ],
        );
        assert_eq!(
            out,
            r#"{"text":"Dear Ada \"Q\" Lovelace, mail ada@corp.example"}"#
        );
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
    }

    #[test]
    fn text_that_only_looks_like_the_start_of_a_surrogate_is_released() {
        let mut f = RestoreFilter::new(&table());
        head(&mut f, "text/plain");
        assert_eq!(&f.data(Bytes::from_static(b"CUSTOMER_3")), &b""[..]);
        assert_eq!(&f.data(Bytes::from_static(b"x")), &b"CUSTOMER_3x"[..]);
        assert_eq!(&f.finish(), &b""[..]);
    }

    #[test]
    fn a_surrogate_split_across_two_sse_deltas_is_restored() {
        let mut f = RestoreFilter::new(&table());
        head(&mut f, "text/event-stream");
        let out = run(
            &mut f,
            &[
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi CUSTOMER_3F\"}}\n\n",
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"9A2C11!\"}}\n\nevent: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            ],
        );
        let text: String = out
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(text, "Hi Ada \"Q\" Lovelace!");
        assert!(out.contains("content_block_stop"));
    }

    #[test]
    fn a_held_back_tail_is_re_emitted_when_the_stream_moves_on() {
        let mut f = RestoreFilter::new(&table());
        head(&mut f, "text/event-stream");
        let out = run(
            &mut f,
            &[
                "data: {\"choices\":[{\"delta\":{\"content\":\"ends with CUST\"}}]}\n\n",
                "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
            ],
        );
        let text: String = out
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(text, "ends with CUST");
        assert!(out.ends_with("data: [DONE]\n\n"));
        assert!(out.find("CUST\"").unwrap() < out.find("finish_reason").unwrap());
    }

    #[test]
    fn events_without_surrogates_pass_byte_for_byte() {
        let mut f = RestoreFilter::new(&table());
        head(&mut f, "text/event-stream");
        let input = "event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\ndata: {\"a\":\"b\"}\n\n";
        assert_eq!(run(&mut f, &[input]), input);
    }
}
