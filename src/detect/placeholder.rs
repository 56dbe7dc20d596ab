//! Global placeholder suppression: values that only stand in for a secret (documentation
//! examples, `xxxx`, `your-api-key-here`, template variables) are never reported, whatever the
//! rule. Applied to every candidate before the rule's own allowlist.
//!
//! Kept deliberately conservative: each check is something a random credential would match
//! with negligible probability, so a real key is never hidden by it.

/// Whether `value` is a placeholder rather than a real value.
pub fn is_placeholder(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    if is_template(value) {
        return true;
    }
    let lower = value.to_ascii_lowercase();
    const MARKERS: &[&[u8]] = &[
        b"example",
        b"xxxx",
        b"your_",
        b"your-",
        b"yourapi",
        b"placeholder",
        b"changeme",
        b"change_me",
        b"replace_me",
        b"replace-me",
        b"replaceme",
        b"insert_",
        b"insert-",
        b"dummy",
        b"redacted",
        b"<your",
        b"...",
        b"***",
        b"123456789",
        b"abcdefghij",
        b"_here",
        b"-here",
    ];
    if MARKERS.iter().any(|m| contains(&lower, m)) {
        return true;
    }
    // One character repeated over at least half the value (`ghp_0000...`). Not any long run:
    // some real formats carry one (Dropbox and Twitter tokens have `AAAAAAAAAAA` inside).
    let run = longest_run(value);
    if run >= 8.min(value.len()) && run * 2 >= value.len() {
        return true;
    }
    // Very low variety: e.g. `abababababab`, `0101010101`.
    value.len() >= 12 && distinct(value) <= 3
}

/// `${VAR}`, `$VAR`-only, `{{ var }}`, `<token>`, `%VAR%`.
fn is_template(value: &[u8]) -> bool {
    contains(value, b"${")
        || contains(value, b"{{")
        || contains(value, b"}}")
        || value.first() == Some(&b'<') && value.last() == Some(&b'>')
        || value.first() == Some(&b'%') && value.last() == Some(&b'%') && value.len() > 2
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn longest_run(value: &[u8]) -> usize {
    let (mut best, mut run) = (0, 0);
    let mut prev = None;
    for &b in value {
        run = if Some(b) == prev { run + 1 } else { 1 };
        prev = Some(b);
        best = best.max(run);
    }
    best
}

fn distinct(value: &[u8]) -> usize {
    let mut seen = [false; 256];
    value
        .iter()
        .filter(|&&b| !std::mem::replace(&mut seen[b as usize], true))
        .count()
}

#[cfg(test)]
mod tests {
    use super::is_placeholder;

    #[test]
    fn documented_and_template_values_are_placeholders() {
        for value in [
            "AKIAIOSFODNN7EXAMPLE",
            "sk-xxxxxxxxxxxxxxxxxxxxxxxx",
            "your-api-key-here",
            "${OPENAI_API_KEY}",
            "{{ api_key }}",
            "<token>",
            "aaaaaaaaaaaaaaaaaaaa",
            "ghp_000000000000000000000000000000000000",
            "sk-1234567890abcdef",
        ] {
            assert!(is_placeholder(value.as_bytes()), "{value}");
        }
    }

    #[test]
    fn random_values_are_not() {
        for value in [
            "AKIA4TQ2ZK7PLM3XRV9B",
            "ghp_9fQ2mZ7LpX4vB8nR1sT6wY3cK5hJ0dGaQeR2",
            "4556 7375 8689 9855",
        ] {
            assert!(!is_placeholder(value.as_bytes()), "{value}");
        }
    }
}
