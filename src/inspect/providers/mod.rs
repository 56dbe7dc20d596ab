//! Provider readers: each walks exactly the fields of its API that carry user content, and
//! names every piece by its JSON path. Anything they do not recognise falls back to the generic
//! reader, which scans every string leaf, so an unknown field is scanned rather than skipped.

pub mod anthropic;
pub mod bedrock;
pub mod gemini;
pub mod generic;
pub mod openai;

use http::{header, request};

use super::content::{index, Collector, Content, Place, Segment, SkipClean, UnreadablePart};
use super::decode::Limits;
use super::json::{self, JsonError, Node, Text};
use super::Provider;

/// Why a body the policy says to inspect could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the request body is not valid JSON ({0})")]
    InvalidJson(#[from] JsonError),
    #[error("{0}")]
    UnreadablePart(#[from] UnreadablePart),
}

/// Reads a decoded request body the way `provider`'s API means it, plus the query string and
/// the headers that may carry content.
pub fn read(provider: Provider, parts: &request::Parts, body: &[u8]) -> Result<Content, ReadError> {
    read_within(provider, parts, body, &Limits::default())
}

/// [`read`], decompressing what the body embeds (a PDF's streams) only within `limits`.
pub fn read_within(
    provider: Provider,
    parts: &request::Parts,
    body: &[u8],
    limits: &Limits,
) -> Result<Content, ReadError> {
    read_inner(provider, parts, body, limits, None)
}

/// [`read_within`], leaving out the groups of plain strings `skip` knows to be clean (see
/// [`SkipClean`]): they are neither decoded nor scanned again.
pub fn read_skipping_clean(
    provider: Provider,
    parts: &request::Parts,
    body: &[u8],
    limits: &Limits,
    skip: SkipClean,
) -> Result<Content, ReadError> {
    read_inner(provider, parts, body, limits, Some(skip))
}

fn read_inner(
    provider: Provider,
    parts: &request::Parts,
    body: &[u8],
    limits: &Limits,
    skip: Option<SkipClean>,
) -> Result<Content, ReadError> {
    let mut content = if body.trim_ascii().is_empty() {
        Content::default()
    } else if is_json(parts, body) {
        let text = json::utf8(body)?;
        let node = json::parse_str(text)?;
        let mut collector = Collector::for_text(text, *limits);
        if let Some(skip) = skip {
            collector = collector.skipping(skip);
        }
        let path = parts.uri.path();
        match provider {
            Provider::Anthropic => anthropic::read(&mut collector, &node),
            Provider::OpenAi => openai::read(&mut collector, &node),
            Provider::Gemini => gemini::read(&mut collector, &node, path),
            Provider::Bedrock => bedrock::read(&mut collector, &node, path),
            Provider::Generic => generic::read_json(&mut collector, &node),
        }
        if let Some(read) = read_fields(provider, &node, path) {
            read_rest(&mut collector, &node, read);
        }
        if collector.content.model.is_none() {
            collector.content.model = node.get("model").and_then(|m| m.as_str(body));
        }
        collector.finish()?
    } else {
        generic::read_text(parts, body)
    };
    let mut group = content.segments.last().map_or(0, |s| s.group) + 1;
    content.segments.extend(query_segments(parts, &mut group));
    content.segments.extend(header_segments(parts, &mut group));
    Ok(content)
}

/// The top-level fields the provider's reader walks in its own way, or `None` when it walked
/// the whole body (the generic reader).
fn read_fields(provider: Provider, root: &Node, path: &str) -> Option<&'static [&'static str]> {
    match provider {
        Provider::Anthropic => Some(&["system", "messages"]),
        Provider::OpenAi => Some(&["instructions", "messages", "input", "prompt"]),
        Provider::Gemini => Some(&["systemInstruction", "system_instruction", "contents"]),
        Provider::Bedrock => {
            bedrock::reads_as_messages(root, path).then_some(&["system", "messages"])
        }
        Provider::Generic => None,
    }
}

/// Every other top-level field (tool definitions, `metadata`, a field added to the API after
/// this reader was written), walked like any JSON: a value is never left unscanned only because
/// the reader does not know its field. Each field is a group of its own.
fn read_rest(c: &mut Collector, root: &Node, read: &[&str]) {
    for (key, value) in root.members().unwrap_or_default() {
        if !read.contains(&key.as_ref()) {
            c.group();
            c.strings(Some(value), key);
        }
    }
}

/// A body is read as JSON when it says so, or (when it does not say) when it looks like it.
fn is_json(parts: &request::Parts, body: &[u8]) -> bool {
    match parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        Some(ct) => {
            let ct = ct.to_ascii_lowercase();
            ct.contains("json")
                || (!ct.starts_with("text/")
                    && !ct.starts_with("multipart/")
                    && !ct.contains("x-www-form-urlencoded")
                    && starts_like_json(body))
        }
        None => starts_like_json(body),
    }
}

fn starts_like_json(body: &[u8]) -> bool {
    matches!(body.trim_ascii_start().first(), Some(b'{' | b'['))
}

/// Percent-decodes `raw` (`+` as space when `plus_is_space`), keeping a map to its bytes.
pub(crate) fn percent_decoded(raw: &[u8], base: usize, plus_is_space: bool) -> Text {
    if !raw
        .iter()
        .any(|&b| b == b'%' || (plus_is_space && b == b'+'))
    {
        return Text::from_plain(raw, 0..raw.len(), true).rebase(base);
    }
    let mut bytes = Vec::with_capacity(raw.len());
    let mut starts = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match raw[i] {
            b'%' if i + 2 < raw.len() => match (hex(raw[i + 1]), hex(raw[i + 2])) {
                (Some(h), Some(l)) => {
                    bytes.push((h * 16 + l) as u8);
                    starts.push(i);
                    i += 3;
                    continue;
                }
                _ => {
                    bytes.push(b'%');
                    starts.push(i);
                }
            },
            b'+' if plus_is_space => {
                bytes.push(b' ');
                starts.push(i);
            }
            b => {
                bytes.push(b);
                starts.push(i);
            }
        }
        i += 1;
    }
    // Decode the bytes as text, then compose: text byte -> decoded byte -> raw byte.
    let text = Text::from_plain(&bytes, 0..bytes.len(), true);
    let table: Vec<u32> = (0..=text.text.len())
        .map(|k| {
            let d = text.source_range(k..k).0.start;
            (base + starts.get(d).copied().unwrap_or(raw.len())) as u32
        })
        .collect();
    Text {
        text: text.text,
        origin: super::json::Origin::Table(table),
    }
}

/// The query string's values, each its own segment.
fn query_segments(parts: &request::Parts, group: &mut u32) -> Vec<Segment> {
    let Some(query) = parts.uri.query() else {
        return Vec::new();
    };
    let mut segments = Vec::new();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or(("", pair));
        // The API key some providers take in the query is checked as a key, not as content.
        if value.is_empty() || name.eq_ignore_ascii_case("key") {
            continue;
        }
        let text = percent_decoded(value.as_bytes(), 0, true);
        *group += 1;
        segments.push(Segment {
            location: format!("query.{name}"),
            text,
            group: *group,
            place: Place::Query,
        });
    }
    segments
}

/// Headers that carry credentials (checked separately as keys, never scanned as content) or
/// protocol details that never hold user data.
const UNSCANNED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "host",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "accept",
    "accept-encoding",
    "accept-language",
    "connection",
    "te",
    "user-agent",
    "anthropic-version",
    "anthropic-beta",
    "openai-beta",
    "x-amz-date",
    "x-amz-content-sha256",
    "x-amz-security-token",
];

/// Headers that may carry user content (custom metadata, session titles, ...).
fn header_segments(parts: &request::Parts, group: &mut u32) -> Vec<Segment> {
    let mut segments = Vec::new();
    for (name, value) in &parts.headers {
        let name = name.as_str();
        if UNSCANNED_HEADERS.contains(&name)
            || name.starts_with("x-stainless-")
            || name.starts_with("sec-")
        {
            continue;
        }
        let raw = value.as_bytes();
        *group += 1;
        segments.push(Segment {
            location: format!("header.{name}"),
            text: Text::from_plain(raw, 0..raw.len(), true),
            group: *group,
            place: Place::Header,
        });
    }
    segments
}

/// Reads a list of blocks or a plain string at `path` with `block` for each element.
pub(crate) fn string_or_blocks(
    c: &mut Collector,
    node: Option<&Node>,
    path: &str,
    mut block: impl FnMut(&mut Collector, &Node, &str),
) {
    if c.string(node, path) {
        return;
    }
    if let Some(items) = node.and_then(Node::as_array) {
        for (i, item) in items.iter().enumerate() {
            block(c, item, &index(path, i));
        }
    }
}

/// The (location, text) pairs a provider reader collects from `body`: what its unit tests assert.
#[cfg(test)]
pub(crate) fn segments_read_by(
    read: fn(&mut super::content::Collector, &super::json::Node),
    body: &str,
) -> Vec<(String, String)> {
    let node = super::json::parse(body.as_bytes()).expect("test body is JSON");
    let mut collector = super::content::Collector::new(body.as_bytes());
    read(&mut collector, &node);
    collector
        .content
        .segments
        .into_iter()
        .map(|s| (s.location, s.text.text))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str) -> request::Parts {
        http::Request::builder()
            .uri(uri)
            .header("content-type", "application/json")
            .header("x-api-key", "sk-secret")
            .header("x-custom-note", "ticket for bob@example.com")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn query_values_and_content_headers_are_scanned_but_keys_are_not() {
        let content = read(
            Provider::Generic,
            &parts("/v1/x?q=hello%20world&key=AIzaSECRET"),
            b"",
        )
        .unwrap();
        let locations: Vec<_> = content
            .segments
            .iter()
            .map(|s| s.location.as_str())
            .collect();
        assert_eq!(locations, vec!["query.q", "header.x-custom-note"]);
        assert_eq!(content.segments[0].text.text, "hello world");
    }

    /// `(location, text)` of the body segments a provider's read gives (query and headers
    /// left out).
    fn body_segments(provider: Provider, uri: &str, body: &str) -> Vec<(String, String)> {
        read(provider, &parts(uri), body.as_bytes())
            .unwrap()
            .segments
            .into_iter()
            .filter(|s| s.place == Place::Body)
            .map(|s| (s.location, s.text.text))
            .collect()
    }

    #[test]
    fn fields_a_reader_does_not_know_are_read_too_and_its_own_only_once() {
        let body = r#"{"model":"gpt-5","input":"hello","metadata":{"ticket":"AKIAQYLPMN5HHHFPZAM2"},
            "tools":[{"type":"function","name":"lookup","description":"find a customer"}],
            "temperature":0.2}"#;
        assert_eq!(
            body_segments(Provider::OpenAi, "/v1/responses", body),
            [
                ("input".to_owned(), "hello".to_owned()),
                ("model".to_owned(), "gpt-5".to_owned()),
                (
                    "metadata.ticket".to_owned(),
                    "AKIAQYLPMN5HHHFPZAM2".to_owned()
                ),
                ("tools[0].name".to_owned(), "lookup".to_owned()),
                (
                    "tools[0].description".to_owned(),
                    "find a customer".to_owned()
                ),
            ]
        );
        let body = r#"{"system":"be brief","messages":[{"role":"user","content":"hi"}],
            "metadata":{"user_id":"bob@example.com"}}"#;
        let read = body_segments(Provider::Anthropic, "/v1/messages", body);
        let texts: Vec<&str> = read.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, ["be brief", "hi", "bob@example.com"], "{read:?}");
    }

    #[test]
    fn invalid_json_for_a_known_provider_is_an_error() {
        let err = read(
            Provider::Anthropic,
            &parts("/v1/messages"),
            b"{\"messages\": [",
        )
        .unwrap_err();
        assert!(err.to_string().contains("not valid JSON"));
    }

    #[test]
    fn percent_decoding_maps_back_to_the_raw_bytes() {
        let raw = b"a%40b+c";
        let text = percent_decoded(raw, 10, true);
        assert_eq!(text.text, "a@b c");
        assert_eq!(text.source_range(1..2).0, 11..14);
        assert_eq!(text.source_range(0..5).0, 10..17);
    }
}
