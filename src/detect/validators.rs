//! Named checks a candidate value must pass (`validator = "..."` in a rule).
//!
//! They run only on regex candidates, never on the whole input, so they may afford a parse or a
//! checksum. Each takes the value's bytes and must never panic, whatever they are.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine};

/// The validators the rule format knows (`FORMAT.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validator {
    Luhn,
    Card,
    Iban,
    UsSsn,
    Phone,
    GithubChecksum,
    PypiMacaroon,
    Jwt,
    Base64,
    UkNino,
}

impl Validator {
    pub const NAMES: &'static [&'static str] = &[
        "luhn",
        "card",
        "iban",
        "us_ssn",
        "phone",
        "github_checksum",
        "pypi_macaroon",
        "jwt",
        "base64",
        "uk_nino",
    ];

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "luhn" => Self::Luhn,
            "card" => Self::Card,
            "iban" => Self::Iban,
            "us_ssn" => Self::UsSsn,
            "phone" => Self::Phone,
            "github_checksum" => Self::GithubChecksum,
            "pypi_macaroon" => Self::PypiMacaroon,
            "jwt" => Self::Jwt,
            "base64" => Self::Base64,
            "uk_nino" => Self::UkNino,
            _ => return None,
        })
    }

    /// Whether `value` passes this check.
    pub fn check(self, value: &[u8]) -> bool {
        match self {
            Self::Luhn => luhn(&digits(value)),
            Self::Card => card(value),
            Self::Iban => iban(value),
            Self::UsSsn => us_ssn(value),
            Self::Phone => phone(value),
            Self::GithubChecksum => github_checksum(value),
            Self::PypiMacaroon => pypi_macaroon(value),
            Self::Jwt => jwt(value),
            Self::Base64 => decode_base64(value).is_some(),
            Self::UkNino => uk_nino(value),
        }
    }
}

/// The digits of `value`, ignoring spaces and dashes; empty if anything else is in it.
fn digits(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for &b in value {
        match b {
            b'0'..=b'9' => out.push(b - b'0'),
            b' ' | b'-' => {}
            _ => return Vec::new(),
        }
    }
    out
}

/// Luhn (mod 10) over digit values (0-9).
pub fn luhn(digits: &[u8]) -> bool {
    if digits.len() < 2 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A payment card number: a known issuer's prefix and length, and Luhn.
fn card(value: &[u8]) -> bool {
    let d = digits(value);
    if !(13..=19).contains(&d.len()) || !luhn(&d) {
        return false;
    }
    let prefix = |n: usize| d[..n].iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x));
    let len = d.len();
    let (p1, p2, p3, p4) = (prefix(1), prefix(2), prefix(3), prefix(4));
    match p1 {
        4 => matches!(len, 13 | 16 | 19),       // Visa
        3 if p2 == 34 || p2 == 37 => len == 15, // American Express
        3 if (3528..=3589).contains(&p4) => (16..=19).contains(&len), // JCB
        3 if (300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39 => {
            (14..=19).contains(&len) // Diners Club
        }
        5 if (51..=55).contains(&p2) => len == 16, // Mastercard
        2 if (2221..=2720).contains(&p4) => len == 16, // Mastercard 2-series
        6 if p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 => (16..=19).contains(&len), // Discover
        6 if p2 == 62 => (16..=19).contains(&len), // UnionPay
        5 | 6 => (12..=19).contains(&len),         // Maestro (50, 56-69)
        _ => false,
    }
}

/// IBAN lengths per country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// An IBAN: known country length and ISO 7064 mod-97 == 1. Spaces are ignored.
pub fn iban(value: &[u8]) -> bool {
    let compact: Vec<u8> = value
        .iter()
        .filter(|&&b| b != b' ')
        .map(u8::to_ascii_uppercase)
        .collect();
    if compact.len() < 15 || !compact.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let country = [compact[0], compact[1]];
    let Some(&(_, len)) = IBAN_LENGTHS.iter().find(|(c, _)| **c == country) else {
        return false;
    };
    if compact.len() != len || !compact[2].is_ascii_digit() || !compact[3].is_ascii_digit() {
        return false;
    }
    iban_mod97(&compact) == 1
}

/// ISO 7064 mod 97-10 of an upper-case alphanumeric IBAN (country and check digits moved last).
pub fn iban_mod97(compact: &[u8]) -> u32 {
    let rotated = compact[4..].iter().chain(&compact[..4]);
    let mut rem: u32 = 0;
    for &b in rotated {
        if b.is_ascii_digit() {
            rem = (rem * 10 + u32::from(b - b'0')) % 97;
        } else {
            let v = u32::from(b - b'A') + 10;
            rem = (rem * 100 + v) % 97;
        }
    }
    rem
}

/// A US SSN as issued: not area 000, 666 or 9xx, group 00 or serial 0000.
fn us_ssn(value: &[u8]) -> bool {
    let d = digits(value);
    if d.len() != 9 {
        return false;
    }
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    let group = u32::from(d[3]) * 10 + u32::from(d[4]);
    let serial = d[5..].iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x));
    // Numbers the SSA voided after they were printed in advertising and sample cards.
    const VOIDED: [(u32, u32, u32); 3] = [(78, 5, 1120), (219, 9, 9999), (123, 45, 6789)];
    area != 0
        && area != 666
        && area < 900
        && group != 0
        && serial != 0
        && !VOIDED.contains(&(area, group, serial))
}

/// Numbering plans: country calling code, then the national significant number's length range.
/// A compact table rather than a full metadata library: it only has to tell a phone number from
/// a version string or an id, on candidates that already look like `+CC ...`.
const PHONE_PLANS: &[(u32, usize, usize)] = &[
    (1, 10, 10),
    (7, 10, 10),
    (20, 9, 10),
    (27, 9, 9),
    (30, 10, 10),
    (31, 9, 9),
    (32, 8, 9),
    (33, 9, 9),
    (34, 9, 9),
    (36, 8, 9),
    (39, 6, 11),
    (40, 9, 9),
    (41, 9, 9),
    (43, 4, 13),
    (44, 9, 10),
    (45, 8, 8),
    (46, 7, 13),
    (47, 8, 8),
    (48, 9, 9),
    (49, 6, 13),
    (51, 8, 11),
    (52, 10, 10),
    (53, 6, 8),
    (54, 10, 11),
    (55, 10, 11),
    (56, 9, 9),
    (57, 8, 10),
    (58, 10, 10),
    (60, 7, 10),
    (61, 9, 9),
    (62, 7, 12),
    (63, 8, 10),
    (64, 8, 10),
    (65, 8, 8),
    (66, 8, 9),
    (81, 9, 10),
    (82, 8, 10),
    (84, 9, 10),
    (86, 10, 11),
    (90, 10, 10),
    (91, 10, 10),
    (92, 9, 10),
    (94, 9, 9),
    (98, 10, 10),
    (212, 9, 9),
    (234, 8, 10),
    (254, 9, 9),
    (351, 9, 9),
    (352, 8, 11),
    (353, 7, 9),
    (354, 7, 9),
    (358, 5, 12),
    (370, 8, 8),
    (371, 8, 8),
    (372, 7, 8),
    (380, 9, 9),
    (420, 9, 9),
    (421, 9, 9),
    (852, 8, 8),
    (886, 8, 9),
    (966, 9, 9),
    (971, 8, 9),
    (972, 8, 9),
];

/// An international number (`+CC ...`) valid for its country's plan. Accepts spaces, dashes,
/// dots, parentheses and the UK-style `(0)` trunk prefix between the digits.
fn phone(value: &[u8]) -> bool {
    let Some(rest) = value.strip_prefix(b"+") else {
        return false;
    };
    let mut d = Vec::with_capacity(rest.len());
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            b'0'..=b'9' => d.push(rest[i] - b'0'),
            b' ' | b'-' | b'.' | b')' => {}
            b'(' => {
                if rest[i..].starts_with(b"(0)") {
                    i += 3;
                    continue;
                }
            }
            _ => return false,
        }
        i += 1;
    }
    for cc_len in 1..=3 {
        if d.len() <= cc_len {
            return false;
        }
        let cc = d[..cc_len]
            .iter()
            .fold(0u32, |acc, &x| acc * 10 + u32::from(x));
        if let Some(&(_, min, max)) = PHONE_PLANS.iter().find(|(code, _, _)| *code == cc) {
            let nsn = &d[cc_len..];
            if !(min..=max).contains(&nsn.len()) || nsn[0] == 0 && cc != 39 {
                return false;
            }
            if nsn.iter().all(|&x| x == nsn[0]) {
                return false;
            }
            // NANP: area code and exchange both start 2-9.
            if cc == 1 && (nsn[0] < 2 || nsn[3] < 2) {
                return false;
            }
            return true;
        }
    }
    false
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The 6-character base62 CRC32 that GitHub (`gh?_`) and npm (`npm_`) tokens end with.
pub fn base62_crc32(body: &[u8]) -> [u8; 6] {
    let mut n = crc32fast::hash(body);
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// `prefix_` + body + 6-char checksum of the body.
fn github_checksum(value: &[u8]) -> bool {
    let Some(underscore) = value.iter().position(|&b| b == b'_') else {
        return false;
    };
    let token = &value[underscore + 1..];
    if token.len() <= 6 || !token.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let (body, checksum) = token.split_at(token.len() - 6);
    base62_crc32(body) == checksum
}

fn pypi_macaroon(value: &[u8]) -> bool {
    let body = value.strip_prefix(b"pypi-").unwrap_or(value);
    // Only the head matters (the location caveat comes first); decode a whole number of quads.
    let head = &body[..body.len().min(64) / 4 * 4];
    decode_base64(head).is_some_and(|bytes| bytes.windows(8).any(|w| w == b"pypi.org"))
}

fn jwt(value: &[u8]) -> bool {
    let mut parts = value.split(|&b| b == b'.');
    let (Some(header), Some(payload)) = (parts.next(), parts.next()) else {
        return false;
    };
    if payload.is_empty() {
        return false;
    }
    let Some(decoded) = decode_base64(header) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&decoded)
        .ok()
        .and_then(|json| json.as_object().map(|o| o.contains_key("alg")))
        .unwrap_or(false)
}

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

/// Decodes standard or URL-safe base64, padded or not.
pub fn decode_base64(value: &[u8]) -> Option<Vec<u8>> {
    if value.is_empty() {
        return None;
    }
    if value.iter().any(|&b| b == b'-' || b == b'_') {
        URL_SAFE.decode(value).ok()
    } else {
        STANDARD.decode(value).ok()
    }
}

/// A UK National Insurance number: valid two-letter prefix, six digits, suffix A-D.
fn uk_nino(value: &[u8]) -> bool {
    let compact: Vec<u8> = value
        .iter()
        .filter(|&&b| b != b' ')
        .map(u8::to_ascii_uppercase)
        .collect();
    if compact.len() != 9 {
        return false;
    }
    let (a, b) = (compact[0], compact[1]);
    let letters_ok = a.is_ascii_uppercase()
        && b.is_ascii_uppercase()
        && !b"DFIQUV".contains(&a)
        && !b"DFIOQUV".contains(&b)
        && ![*b"BG", *b"GB", *b"KN", *b"NK", *b"NT", *b"TN", *b"ZZ"].contains(&[a, b]);
    letters_ok
        && compact[2..8].iter().all(u8::is_ascii_digit)
        && (b'A'..=b'D').contains(&compact[8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_pass_only_with_issuer_and_luhn() {
        assert!(card(b"4111 1111 1111 1111"));
        assert!(card(b"5500-0000-0000-0004"));
        assert!(card(b"378282246310005"));
        assert!(!card(b"4111 1111 1111 1112"));
        assert!(!card(b"1234567812345670")); // Luhn-valid, no issuer
    }

    #[test]
    fn iban_needs_country_length_and_mod97() {
        assert!(iban(b"GB82 WEST 1234 5698 7654 32"));
        assert!(iban(b"DE89370400440532013000"));
        assert!(!iban(b"GB82 WEST 1234 5698 7654 33"));
        assert!(!iban(b"DE8937040044053201300"));
    }

    #[test]
    fn ssn_rules() {
        assert!(us_ssn(b"536-22-8197"));
        assert!(!us_ssn(b"123-45-6789"));
        assert!(!us_ssn(b"078-05-1120"));
        assert!(!us_ssn(b"666-45-6789"));
        assert!(!us_ssn(b"912-45-6789"));
        assert!(!us_ssn(b"123-00-6789"));
        assert!(!us_ssn(b"123-45-0000"));
    }

    #[test]
    fn phones_follow_their_plan() {
        assert!(phone(b"+44 20 7946 0958"));
        assert!(phone(b"+44 (0)20 7946 0958"));
        assert!(phone(b"+1 415-555-2671"));
        assert!(phone(b"+49 30 901820"));
        assert!(!phone(b"+1 115-555-2671"));
        assert!(!phone(b"+44 20 79"));
        assert!(!phone(b"+999 1234 5678"));
    }

    #[test]
    fn github_checksum_round_trips() {
        let body = b"AbCdEfGhIjKlMnOpQrStUvWxYz0123";
        let mut token = b"ghp_".to_vec();
        token.extend_from_slice(body);
        token.extend_from_slice(&base62_crc32(body));
        assert!(github_checksum(&token));
        let last = token.len() - 1;
        token[last] = if token[last] == b'a' { b'b' } else { b'a' };
        assert!(!github_checksum(&token));
    }

    #[test]
    fn nino_prefixes() {
        assert!(uk_nino(b"AB123456C"));
        assert!(uk_nino(b"AB 12 34 56 C"));
        assert!(!uk_nino(b"BG123456C"));
        assert!(!uk_nino(b"DA123456C"));
        assert!(!uk_nino(b"AB123456E"));
    }

    #[test]
    fn jwt_needs_alg_header() {
        // {"alg":"HS256","typ":"JWT"}
        assert!(jwt(
            b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.c2ln"
        ));
        assert!(!jwt(b"eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.c2ln")); // {"typ":"JWT"}
    }

    #[test]
    fn pypi_macaroon_names_pypi() {
        assert!(pypi_macaroon(b"pypi-AgEIcHlwaS5vcmcCJGFiY2RlZmdo"));
        assert!(!pypi_macaroon(b"pypi-AgEIcHlwaS5uZXQCJGFiY2RlZmdo"));
    }
}
