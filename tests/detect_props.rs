//! Properties of `Scanner::scan` on arbitrary and adversarial input: it never panics, every span
//! lies inside the input, and evasion (invisible characters, full-width forms, base64) neither
//! hides a secret nor moves its span off the original bytes.

use std::sync::OnceLock;

use base64::Engine;
use egress_guard::detect::Scanner;
use proptest::prelude::*;

fn scanner() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(|| Scanner::builtin().expect("shipped rules load"))
}

/// Passes when the scanner reports an AWS access key id over exactly `span` of `input`.
fn aws_key_found_at(input: &str, span: std::ops::Range<usize>) -> Result<(), TestCaseError> {
    let found = scanner().scan(input.as_bytes());
    prop_assert!(
        found
            .iter()
            .any(|f| &*f.detector == "secret.aws_access_key_id" && f.span == span),
        "{input:?}: {found:?}"
    );
    Ok(())
}

fn assert_spans_inside(input: &[u8]) {
    for finding in scanner().scan(input) {
        assert!(
            finding.span.start <= finding.span.end && finding.span.end <= input.len(),
            "{:?} outside 0..{}",
            finding.span,
            input.len()
        );
    }
}

/// A made-up AWS access key id of the documented shape, with the variety of a real one (16
/// distinct characters: the rule rightly drops low-entropy values like `AKIAAAA22A2A...`).
fn aws_key() -> impl Strategy<Value = String> {
    Just(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".to_vec())
        .prop_shuffle()
        .prop_map(|alphabet| format!("AKIA{}", String::from_utf8_lossy(&alphabet[..16])))
}

const INVISIBLE: [char; 6] = [
    '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{202E}',
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_spans_stay_inside(input in proptest::collection::vec(any::<u8>(), 0..4096)) {
        assert_spans_inside(&input);
    }

    #[test]
    fn keyword_laden_noise_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("ghp_".to_string()), Just("AKIA".to_string()), Just("@".to_string()),
                Just("+44 ".to_string()), Just("\u{200B}".to_string()), Just("ｓｋ-".to_string()),
                Just("%3D%41".to_string()), Just("eyJ".to_string()), Just("=".to_string()),
                Just("\x1b[".to_string()), Just("\x1b[1;3".to_string()), Just("m".to_string()),
                "[A-Za-z0-9+/]{0,64}", "[0-9 -]{0,24}", any::<String>(),
            ],
            0..48,
        )
    ) {
        let input = parts.concat();
        assert_spans_inside(input.as_bytes());
    }

    #[test]
    fn a_key_with_invisible_characters_inside_is_found_over_its_original_bytes(
        key in aws_key(),
        cuts in proptest::collection::vec((1usize..19, 0usize..INVISIBLE.len()), 1..5),
        prefix in "[a-z ]{0,20}",
    ) {
        let mut obfuscated: Vec<char> = key.chars().collect();
        let mut cuts = cuts;
        cuts.sort_unstable_by_key(|cut| std::cmp::Reverse(cut.0));
        for (at, which) in cuts {
            obfuscated.insert(at, INVISIBLE[which]);
        }
        let obfuscated: String = obfuscated.into_iter().collect();
        let input = format!("{prefix}aws_key = \"{obfuscated}\"\n");
        let start = input.find(&obfuscated).expect("embedded");
        aws_key_found_at(&input, start..start + obfuscated.len())?;
    }

    #[test]
    fn a_key_in_coloured_terminal_output_is_found_over_its_original_bytes(
        key in aws_key(),
        colour in "\\x1b\\[(?:[0-9]{1,3}(?:;[0-9]{1,3}){0,4})?m",
        reset in prop_oneof![Just(""), Just("\x1b[0m"), Just("\x1b[K")],
        prefix in "[a-z ]{0,20}",
    ) {
        // The sequence's final `m` is a word byte: glued to the key, it hid it from the rule's
        // leading `\b` until folding dropped such sequences.
        let input = format!("{prefix}$ env\n{colour}{key}{reset}\n");
        let start = input.find(&key).expect("embedded");
        aws_key_found_at(&input, start..start + key.len())?;
    }

    #[test]
    fn a_full_width_key_is_found_over_its_original_bytes(key in aws_key()) {
        let wide: String = key
            .chars()
            .map(|c| char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap_or(c))
            .collect();
        let input = format!("creds: {wide} ok");
        aws_key_found_at(&input, 7..7 + wide.len())?;
    }

    #[test]
    fn a_key_inside_base64_is_reported_at_the_blob(key in aws_key(), pad in "[a-z]{0,3}") {
        let blob = base64::engine::general_purpose::STANDARD
            .encode(format!("export AWS_ACCESS_KEY_ID={key}\n# {pad}\n"));
        let input = format!("{{\"env\":\"{blob}\"}}");
        let start = input.find(&blob).expect("embedded");
        aws_key_found_at(&input, start..start + blob.len())?;
    }
}

#[test]
fn a_key_inside_percent_encoding_and_hex_is_found() {
    let key = "AKIAQ3EGRTYU7IOPZXCV";
    let percent = format!("GET /upload?cfg=aws%5Fkey%3D{key}%26region%3Deu HTTP/1.1");
    let found = scanner().scan(percent.as_bytes());
    assert!(
        found
            .iter()
            .any(|f| &*f.detector == "secret.aws_access_key_id"),
        "{found:?}"
    );
    let hex: String = format!("aws_access_key_id = {key}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    let input = format!("payload={hex};");
    let found = scanner().scan(input.as_bytes());
    assert!(
        found
            .iter()
            .any(|f| &*f.detector == "secret.aws_access_key_id" && f.span == (8..8 + hex.len())),
        "{found:?}"
    );
}

#[test]
fn nested_encodings_are_bounded_and_do_not_panic() {
    let mut layer = String::from("AKIAQ3EGRTYU7IOPZXCV");
    for _ in 0..12 {
        layer = base64::engine::general_purpose::STANDARD.encode(format!("v={layer}"));
    }
    assert_spans_inside(layer.as_bytes());
}
