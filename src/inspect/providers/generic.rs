//! The fallback for any other destination or body: every string leaf of a JSON body, the
//! percent-decoded values of a form, or the raw text of anything else (multipart, plain).

use http::{header, request};

use super::super::content::{Collector, Content, Place, Segment};
use super::super::json::{Node, Text};

pub fn read_json(c: &mut Collector, root: &Node) {
    c.strings(Some(root), "");
}

pub fn read_text(parts: &request::Parts, body: &[u8]) -> Content {
    let form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("x-www-form-urlencoded"));
    let mut content = Content::default();
    if form {
        let mut offset = 0;
        for (group, pair) in body.split(|&b| b == b'&').enumerate() {
            let (name, value_start) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (String::from_utf8_lossy(&pair[..eq]).into_owned(), eq + 1),
                None => (String::new(), 0),
            };
            let value = &pair[value_start..];
            let text = super::percent_decoded(value, offset + value_start, true);
            if !text.text.is_empty() {
                content.segments.push(Segment {
                    location: format!("body.{name}"),
                    text,
                    group: group as u32,
                    place: Place::Body,
                });
            }
            offset += pair.len() + 1;
        }
    } else {
        content.segments.push(Segment {
            location: "body".to_owned(),
            text: Text::from_plain(body, 0..body.len(), true),
            group: 0,
            place: Place::Body,
        });
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_a_structural_key_only_a_short_string_is_skipped() {
        let body = r#"{"type":"conversation.item.create","id":"evt_1",
            "item":{"status":{"note":"AKIAQYLPMN5HHHFPZAM2"},"detail":["keep me"],
            "signature":"opaque"}}"#;
        let read = crate::inspect::providers::segments_read_by(read_json, body);
        let texts: Vec<&str> = read.iter().map(|(_, text)| text.as_str()).collect();
        assert_eq!(texts, ["AKIAQYLPMN5HHHFPZAM2", "keep me"], "{read:?}");
    }

    #[test]
    fn form_values_are_decoded_and_map_back() {
        let parts = http::Request::builder()
            .header("content-type", "application/x-www-form-urlencoded")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let body = b"a=1&email=bob%40example.com";
        let content = read_text(&parts, body);
        assert_eq!(content.segments[1].location, "body.email");
        assert_eq!(content.segments[1].text.text, "bob@example.com");
        let (raw, exact) = content.segments[1].text.source_range(0..15);
        assert!(exact);
        assert_eq!(&body[raw], b"bob%40example.com");
    }
}
