//! A generated corpus: realistic random credentials and personal data with valid checksums are
//! found at exactly their offsets; their broken-checksum twins and the look-alikes that fill
//! real code (versions, UUIDs, git SHAs, lockfile hashes, timestamps, `name@version`,
//! placeholders) are not reported at all.

use std::ops::Range;

use egress_guard::detect::Scanner;

#[path = "support/samples.rs"]
mod samples;
use samples::{checksummed_token, Rng, HEX};

const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn luhn_digit(digits: &[u8]) -> u8 {
    // Check digit for `digits` (without it).
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

fn card(rng: &mut Rng, prefix: &str, len: usize, valid: bool) -> String {
    let mut digits: Vec<u8> = prefix.bytes().map(|b| b - b'0').collect();
    while digits.len() < len - 1 {
        digits.push(rng.below(10) as u8);
    }
    let check = luhn_digit(&digits);
    digits.push(if valid { check } else { (check + 1) % 10 });
    let plain: String = digits.iter().map(|d| (b'0' + d) as char).collect();
    if len == 16 && rng.below(2) == 0 {
        plain
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(if rng.below(2) == 0 { " " } else { "-" })
    } else {
        plain
    }
}

fn iban(rng: &mut Rng, country: &str, bban_len: usize, valid: bool) -> String {
    let bban = rng.string(b"0123456789", bban_len);
    let rearranged = format!("{bban}{country}00");
    let mut rem: u32 = 0;
    for c in rearranged.chars() {
        let v = c.to_digit(36).unwrap_or(0);
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    let mut check = 98 - rem;
    if !valid {
        check = if check == 2 { 3 } else { check - 1 };
    }
    format!("{country}{check:02}{bban}")
}

/// The corpus and the findings it must produce: `(detector, span)`.
fn corpus(seed: u64, entries: usize) -> (String, Vec<(String, Range<usize>)>) {
    let mut rng = Rng(seed);
    let mut text = String::new();
    let mut expected = Vec::new();
    let names = ["config", "client", "settings", "deploy", "fixture"];
    for n in 0..entries {
        let name = names[rng.below(names.len())];
        let case = rng.below(22);
        let (value, detector): (String, Option<&str>) = match case {
            0 => (
                checksummed_token(&mut rng, "ghp_", true),
                Some("secret.github_pat_classic"),
            ),
            1 => (
                checksummed_token(&mut rng, "npm_", true),
                Some("secret.npm_token"),
            ),
            2 => {
                let issuer = ["4", "51", "2221"][rng.below(3)];
                (card(&mut rng, issuer, 16, true), Some("pii.payment_card"))
            }
            3 => (card(&mut rng, "37", 15, true), Some("pii.payment_card")),
            4 => (
                match rng.below(3) {
                    0 => iban(&mut rng, "DE", 18, true),
                    1 => iban(&mut rng, "GB", 18, true),
                    _ => iban(&mut rng, "FR", 23, true),
                },
                Some("pii.iban"),
            ),
            5 => (
                format!(
                    "{}.{}@{}.com",
                    rng.string(b"abcdefghijklmnopqrstuvwxyz", 5),
                    rng.string(b"abcdefghijklmnopqrstuvwxyz", 7),
                    rng.string(b"abcdefghijklmnopqrstuvwxyz", 6)
                ),
                Some("pii.email"),
            ),
            6 => (
                format!(
                    "AKIA{}",
                    rng.string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
                ),
                Some("secret.aws_access_key_id"),
            ),
            // Look-alikes and broken twins: never reported.
            7 => (checksummed_token(&mut rng, "ghp_", false), None),
            8 => (checksummed_token(&mut rng, "npm_", false), None),
            9 => (card(&mut rng, "4", 16, false), None),
            10 => (iban(&mut rng, "DE", 18, false), None),
            11 => (
                format!("{}.{}.{}", rng.below(20), rng.below(40), rng.below(200)),
                None,
            ),
            12 => (
                format!(
                    "{}-{}-4{}-a{}-{}",
                    rng.string(HEX, 8),
                    rng.string(HEX, 4),
                    rng.string(HEX, 3),
                    rng.string(HEX, 3),
                    rng.string(HEX, 12)
                ),
                None,
            ),
            13 => (rng.string(HEX, 40), None),
            14 => (format!("sha512-{}==", rng.string(BASE64, 86)), None),
            15 => (format!("{}", 1_600_000_000 + rng.below(200_000_000)), None),
            16 => (
                format!("{}", 1_600_000_000_000u64 + rng.next() % 200_000_000_000),
                None,
            ),
            17 => (
                format!(
                    "{}@{}.{}.{}",
                    ["lodash", "react", "@types/node", "left-pad"][rng.below(4)],
                    rng.below(20),
                    rng.below(30),
                    rng.below(10)
                ),
                None,
            ),
            18 => ("AKIAIOSFODNN7EXAMPLE".into(), None),
            19 => (format!("ghp_{}", "x".repeat(36)), None),
            20 => ("${GITHUB_TOKEN}".into(), None),
            _ => ("your-api-key-here".into(), None),
        };
        if matches!(case, 2 | 3 | 9) {
            // Bare digit runs count as a card only where the text says it is one.
            text.push_str(&format!("    let pay_{n} = Card {{ number: \""));
        } else {
            text.push_str(&format!("    let {name}_{n} = \""));
        }
        let start = text.len();
        text.push_str(&value);
        let end = text.len();
        text.push_str("\";\n");
        if let Some(detector) = detector {
            expected.push((detector.to_string(), start..end));
        }
        if n % 7 == 0 {
            text.push_str("    // the quick brown fox reads the config and deploys it\n");
        }
    }
    (text, expected)
}

#[test]
fn generated_credentials_are_found_at_their_offsets_and_look_alikes_are_not() {
    let scanner = Scanner::builtin().expect("shipped rules load");
    for seed in [0x9E37_79B9_7F4A_7C15, 0xD1B5_4A32_D192_ED03, 42] {
        let (text, expected) = corpus(seed, 400);
        let found: Vec<(String, Range<usize>)> = scanner
            .scan(text.as_bytes())
            .into_iter()
            .map(|f| (f.detector.to_string(), f.span))
            .collect();
        let missing: Vec<_> = expected
            .iter()
            .filter(|e| !found.contains(e))
            .map(|(d, s)| format!("{d} {:?}", &text[s.clone()]))
            .collect();
        let unexpected: Vec<_> = found
            .iter()
            .filter(|f| !expected.contains(f))
            .map(|(d, s)| format!("{d} {:?}", &text[s.clone()]))
            .collect();
        assert!(
            missing.is_empty() && unexpected.is_empty(),
            "seed {seed:#x}: {} expected, {} found\nmissing: {missing:#?}\nunexpected: {unexpected:#?}",
            expected.len(),
            found.len()
        );
        assert!(expected.len() > 100, "corpus too thin: {}", expected.len());
    }
}

#[test]
fn a_broken_checksum_can_be_reported_as_low_severity_when_asked() {
    let mut rng = Rng(7);
    let broken = checksummed_token(&mut rng, "ghp_", false);
    let input = format!("token = \"{broken}\"");
    let strict = Scanner::builtin().expect("rules load");
    assert!(strict.scan(input.as_bytes()).is_empty());
    let lenient = Scanner::builtin()
        .expect("rules load")
        .with_invalid_severity(Some(egress_guard::detect::Severity::Low));
    let findings = lenient.scan(input.as_bytes());
    assert_eq!(findings.len(), 1);
    assert_eq!(&*findings[0].detector, "secret.github_pat_classic");
    assert_eq!(findings[0].severity, egress_guard::detect::Severity::Low);
    assert_eq!(&input[findings[0].span.clone()], broken);
}
