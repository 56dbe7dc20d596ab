//! Rewriting a body in place: each edit replaces a raw byte range; everything else stays byte
//! for byte. Placeholders and surrogates are made only of characters that need no escaping in
//! JSON (at any nesting depth), so a replacement inside a JSON string keeps it valid.

use std::ops::Range;

/// Replace `range` of the body with `replacement`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub range: Range<usize>,
    pub replacement: String,
}

/// The text that stands in for a redacted value.
pub fn placeholder(detector: &str) -> String {
    format!("[REDACTED:{detector}]")
}

/// Applies `edits` to `body`. Overlapping edits (two detectors on one value) merge into one
/// covering both, keeping the first one's replacement; out-of-range edits are clamped.
pub fn apply(body: &[u8], mut edits: Vec<Edit>) -> Vec<u8> {
    edits.sort_by(|a, b| {
        a.range
            .start
            .cmp(&b.range.start)
            .then(b.range.end.cmp(&a.range.end))
    });
    let mut merged: Vec<Edit> = Vec::with_capacity(edits.len());
    for edit in edits {
        let range = edit.range.start.min(body.len())..edit.range.end.min(body.len());
        match merged.last_mut() {
            Some(last) if range.start < last.range.end => {
                last.range.end = last.range.end.max(range.end);
            }
            _ => merged.push(Edit {
                range,
                replacement: edit.replacement,
            }),
        }
    }
    let extra: usize = merged.iter().map(|e| e.replacement.len()).sum();
    let mut out = Vec::with_capacity(body.len() + extra);
    let mut at = 0;
    for edit in merged {
        out.extend_from_slice(&body[at..edit.range.start.max(at)]);
        out.extend_from_slice(edit.replacement.as_bytes());
        at = edit.range.end.max(at);
    }
    out.extend_from_slice(&body[at.min(body.len())..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_ranges_and_merges_overlaps() {
        let body = br#"{"a":"key AKIAXXXX and mail bob@x.io"}"#;
        let edits = vec![
            Edit {
                range: 10..18,
                replacement: placeholder("secret.aws"),
            },
            Edit {
                range: 12..16,
                replacement: "ignored".into(),
            },
            Edit {
                range: 28..36,
                replacement: "user@example.invalid".into(),
            },
        ];
        let out = apply(body, edits);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":"key [REDACTED:secret.aws] and mail user@example.invalid"}"#
        );
        assert_eq!(apply(body, Vec::new()), body.to_vec());
    }
}
