//! Customer data: an organisation's own terms (project code names, customer names) and exact
//! data match (EDM) against its customer records, without the records on the laptop.
//!
//! A policy directory's `dictionaries/` folder holds:
//!
//! - `NAME.txt`: one term per line (`#` starts a comment line), matched with aho-corasick,
//!   case-insensitively and on word boundaries unless `NAME.toml` beside it says otherwise:
//!   ```toml
//!   id = "custom.project_names"   # default: custom.<NAME>
//!   name = "Internal project code names"
//!   severity = "medium"           # default: medium
//!   case_sensitive = false        # default: false
//!   whole_words = true            # default: true
//!   ```
//! - `NAME.edm`: built by `egress-guard dict build CSV... -o NAME.edm`: a keyed hash
//!   (HMAC-SHA256, truncated to 128 bits) of every normalised cell value.
//!
//! ## Exact data match: threat model
//!
//! The `.edm` file never holds a plain value. Anyone who reads it learns how many values there
//! are and the word-count/length shape of each (used to skip hashing most candidates), nothing
//! else without guessing. The HMAC key is stored *in* the file, because the detector needs it
//! to hash candidates: it defeats precomputed tables and makes two organisations' files
//! unlinkable, but it does NOT stop someone who holds the file from testing guesses one by one.
//! A value with little entropy (a 4-digit PIN, a date of birth, a common surname) can be found by
//! brute force; a name plus email, an account number, a full address cannot cheaply. Protect the
//! file like the data's index, not like the data; prefer high-entropy columns.
//!
//! Normalisation, the same at build and scan time: a value is split into words (runs of ASCII
//! letters and digits, or of non-ASCII bytes), lower-cased and joined by one space, so
//! `Jane  O'Neil`, `jane o neil` and `JANE-O-NEIL` match alike; a value made only of digits is
//! also stored with its digits joined (`+1 (555) 010-9999` = `15550109999`).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::rules::{sorted_files, RuleError};
use super::{Category, Finding, Severity};

/// A list of terms matched as written (case and word boundaries as configured).
#[derive(Debug)]
pub struct TermDictionary {
    id: Arc<str>,
    severity: Severity,
    whole_words: bool,
    automaton: AhoCorasick,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TermHeader {
    id: Option<String>,
    #[allow(dead_code)]
    name: Option<String>,
    severity: Option<Severity>,
    #[serde(default)]
    case_sensitive: bool,
    whole_words: Option<bool>,
}

impl TermDictionary {
    /// Builds a dictionary from terms; `id` must be `custom.<name>`.
    pub fn new(
        id: &str,
        severity: Severity,
        terms: &[String],
        case_sensitive: bool,
        whole_words: bool,
    ) -> Result<Self, String> {
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(!case_sensitive)
            .match_kind(MatchKind::LeftmostLongest)
            .build(terms)
            .map_err(|error| error.to_string())?;
        Ok(TermDictionary {
            id: Arc::from(id),
            severity,
            whole_words,
            automaton,
        })
    }

    pub fn scan(&self, text: &[u8], out: &mut Vec<Finding>) {
        for hit in self.automaton.find_iter(text) {
            let (start, end) = (hit.start(), hit.end());
            if self.whole_words
                && (start > 0 && is_word_byte(text[start - 1])
                    || end < text.len() && is_word_byte(text[end]))
            {
                continue;
            }
            out.push(Finding {
                detector: self.id.clone(),
                category: Category::Custom,
                severity: self.severity,
                span: start..end,
            });
        }
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Longest value (in words) that exact data match stores and looks for.
pub const MAX_WORDS: usize = 6;
/// Shortest normalised value stored: shorter ones would match ordinary words.
const MIN_VALUE_LEN: usize = 4;
/// Shortest all-digit value stored: shorter ones are counts and ids, not customer data.
const MIN_DIGITS: usize = 6;
/// Bytes of non-word characters allowed between two words of one value in the scanned text.
const MAX_GAP: usize = 3;

/// The `.edm` file: a JSON header line, then one hex hash per line.
#[derive(Debug, Serialize, Deserialize)]
struct EdmHeader {
    format: String,
    version: u32,
    id: String,
    severity: Severity,
    /// Hex HMAC-SHA256 key (see the threat model above: it is not a secret from the holder).
    key: String,
    max_words: usize,
    /// `(word count, byte length)` of the stored normalised values.
    shapes: Vec<(usize, usize)>,
}

const EDM_FORMAT: &str = "egress-guard-edm";

/// Keyed hashes of customer values, matched against word runs of the scanned text.
#[derive(Debug)]
pub struct ExactMatch {
    id: Arc<str>,
    severity: Severity,
    key: hmac::Key,
    hashes: HashSet<[u8; 16]>,
    shapes: HashSet<(usize, usize)>,
    max_words: usize,
}

/// What `dict build` produced.
#[derive(Debug)]
pub struct BuildSummary {
    pub values: usize,
    pub skipped: usize,
}

/// Hashes every cell of `csv_files` (first row of each is a header and skipped) into an `.edm`
/// file at `output`. The detector id is `custom.<output file stem>`.
pub fn build_exact(csv_files: &[PathBuf], output: &Path) -> Result<BuildSummary, RuleError> {
    let rng = ring::rand::SystemRandom::new();
    let key_bytes: [u8; 32] = ring::rand::generate(&rng)
        .map_err(|_| RuleError::File {
            file: output.to_path_buf(),
            msg: "no system randomness for the hash key".into(),
        })?
        .expose();
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key_bytes);
    let mut hashes: HashSet<[u8; 16]> = HashSet::new();
    let mut shapes: HashSet<(usize, usize)> = HashSet::new();
    let mut summary = BuildSummary {
        values: 0,
        skipped: 0,
    };
    for file in csv_files {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_path(file)
            .map_err(|error| RuleError::File {
                file: file.clone(),
                msg: error.to_string(),
            })?;
        for record in reader.byte_records() {
            let record = record.map_err(|error| RuleError::File {
                file: file.clone(),
                msg: error.to_string(),
            })?;
            for cell in record.iter() {
                let forms = value_forms(cell);
                if forms.is_empty() {
                    summary.skipped += usize::from(!cell.iter().all(u8::is_ascii_whitespace));
                    continue;
                }
                summary.values += 1;
                for (words, form) in forms {
                    shapes.insert((words, form.len()));
                    hashes.insert(keyed_hash(&key, &form));
                }
            }
        }
    }
    let stem = output
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("customer_data");
    let id = super::rules::id_part(stem);
    let mut shapes: Vec<_> = shapes.into_iter().collect();
    shapes.sort_unstable();
    let header = EdmHeader {
        format: EDM_FORMAT.into(),
        version: 1,
        id: format!("custom.{id}"),
        severity: Severity::High,
        key: hex(&key_bytes),
        max_words: MAX_WORDS,
        shapes,
    };
    let mut lines: Vec<String> = hashes.iter().map(|h| hex(h)).collect();
    // Sorted: the file's order must not reveal the CSV's order.
    lines.sort_unstable();
    let mut text = serde_json::to_string(&header).map_err(|error| RuleError::File {
        file: output.to_path_buf(),
        msg: error.to_string(),
    })?;
    text.push('\n');
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    fs::write(output, text).map_err(|source| RuleError::Io {
        path: output.to_path_buf(),
        source,
    })?;
    Ok(summary)
}

/// The normalised forms of one cell value that get stored: `(word count, text)`.
fn value_forms(cell: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let words = words(cell);
    if words.is_empty() || words.len() > MAX_WORDS {
        return Vec::new();
    }
    let mut joined = Vec::new();
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            joined.push(b' ');
        }
        joined.extend(cell[word.clone()].iter().map(u8::to_ascii_lowercase));
    }
    let all_digits = words
        .iter()
        .all(|w| cell[w.clone()].iter().all(u8::is_ascii_digit));
    let mut forms = Vec::new();
    if all_digits {
        let digits: Vec<u8> = joined.iter().copied().filter(u8::is_ascii_digit).collect();
        if digits.len() >= MIN_DIGITS {
            if words.len() > 1 {
                forms.push((words.len(), joined));
            }
            forms.push((1, digits));
        }
    } else if joined.len() >= MIN_VALUE_LEN {
        forms.push((words.len(), joined));
    }
    forms
}

fn words(text: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if is_edm_word_byte(text[i]) {
            let start = i;
            while i < text.len() && is_edm_word_byte(text[i]) {
                i += 1;
            }
            words.push(start..i);
        } else {
            i += 1;
        }
    }
    words
}

fn is_edm_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

fn keyed_hash(key: &hmac::Key, value: &[u8]) -> [u8; 16] {
    let tag = hmac::sign(key, value);
    let mut out = [0u8; 16];
    out.copy_from_slice(&tag.as_ref()[..16]);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl ExactMatch {
    /// Reads an `.edm` file written by [`build_exact`].
    pub fn load(path: &Path) -> Result<Self, RuleError> {
        let text = fs::read_to_string(path).map_err(|source| RuleError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |line: usize, msg: String| RuleError::Syntax {
            file: path.to_path_buf(),
            line,
            col: 1,
            msg,
        };
        let mut lines = text.lines();
        let header: EdmHeader = serde_json::from_str(lines.next().unwrap_or_default())
            .map_err(|error| bad(1, format!("not an egress-guard .edm header: {error}")))?;
        if header.format != EDM_FORMAT || header.version != 1 {
            return Err(bad(1, "unknown .edm format or version".into()));
        }
        let key = unhex(&header.key).ok_or_else(|| bad(1, "key is not hex".into()))?;
        let mut hashes = HashSet::new();
        for (n, line) in lines.enumerate() {
            let hash: [u8; 16] = unhex(line.trim())
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| bad(n + 2, "expected a 32-hex-digit hash".into()))?;
            hashes.insert(hash);
        }
        Ok(ExactMatch {
            id: Arc::from(header.id.as_str()),
            severity: header.severity,
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            hashes,
            shapes: header.shapes.into_iter().collect(),
            max_words: header.max_words.clamp(1, MAX_WORDS),
        })
    }

    /// Finds runs of 1..=max_words words whose normalised form hashes to a stored value.
    /// Only candidates whose shape (word count, length) occurs in the file are hashed.
    pub fn scan(&self, text: &[u8], out: &mut Vec<Finding>) {
        if self.hashes.is_empty() {
            return;
        }
        let words = words(text);
        let mut phrase = Vec::with_capacity(64);
        let mut digits = Vec::with_capacity(32);
        let mut i = 0;
        while i < words.len() {
            phrase.clear();
            digits.clear();
            let mut all_digits = true;
            let mut matched_end = None;
            for k in 0..self.max_words {
                let Some(word) = words.get(i + k) else { break };
                if k > 0 {
                    let gap = &text[words[i + k - 1].end..word.start];
                    if gap.len() > MAX_GAP || gap.contains(&b'\n') {
                        break;
                    }
                    phrase.push(b' ');
                }
                let bytes = &text[word.clone()];
                phrase.extend(bytes.iter().map(u8::to_ascii_lowercase));
                all_digits &= bytes.iter().all(u8::is_ascii_digit);
                if all_digits {
                    digits.extend_from_slice(bytes);
                }
                let hit = self.shapes.contains(&(k + 1, phrase.len()))
                    && self.hashes.contains(&keyed_hash(&self.key, &phrase))
                    || all_digits
                        && self.shapes.contains(&(1, digits.len()))
                        && self.hashes.contains(&keyed_hash(&self.key, &digits));
                if hit {
                    matched_end = Some((k, word.end));
                }
            }
            if let Some((k, end)) = matched_end {
                out.push(Finding {
                    detector: self.id.clone(),
                    category: Category::Custom,
                    severity: self.severity,
                    span: words[i].start..end,
                });
                i += k + 1;
            } else {
                i += 1;
            }
        }
    }
}

/// Loads `dir/*.txt` (+ optional `*.toml` headers) and `dir/*.edm`; a missing dir is empty.
pub fn load_dir(dir: &Path) -> Result<(Vec<TermDictionary>, Vec<ExactMatch>), RuleError> {
    let mut terms = Vec::new();
    for path in sorted_files(dir, &["txt"])? {
        terms.push(load_terms(&path)?);
    }
    let mut exact = Vec::new();
    for path in sorted_files(dir, &["edm"])? {
        exact.push(ExactMatch::load(&path)?);
    }
    Ok((terms, exact))
}

fn load_terms(path: &Path) -> Result<TermDictionary, RuleError> {
    let io = |source| RuleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = fs::read_to_string(path).map_err(io)?;
    let header_path = path.with_extension("toml");
    let header: TermHeader = match fs::read_to_string(&header_path) {
        Ok(header) => toml::from_str(&header).map_err(|error| {
            let (line, col) = error
                .span()
                .map(|s| super::rules::line_col(&header, s.start))
                .unwrap_or((1, 1));
            RuleError::Syntax {
                file: header_path.clone(),
                line,
                col,
                msg: error.message().to_string(),
            }
        })?,
        Err(_) => TermHeader {
            id: None,
            name: None,
            severity: None,
            case_sensitive: false,
            whole_words: None,
        },
    };
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("terms");
    let id = header
        .id
        .unwrap_or_else(|| format!("custom.{}", super::rules::id_part(stem)));
    if !id.starts_with("custom.") {
        return Err(RuleError::File {
            file: header_path,
            msg: format!("dictionary id `{id}` must start with `custom.`"),
        });
    }
    let list: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect();
    if list.is_empty() {
        return Err(RuleError::File {
            file: path.to_path_buf(),
            msg: "dictionary has no terms".into(),
        });
    }
    TermDictionary::new(
        &id,
        header.severity.unwrap_or(Severity::Medium),
        &list,
        header.case_sensitive,
        header.whole_words.unwrap_or(true),
    )
    .map_err(|msg| RuleError::File {
        file: path.to_path_buf(),
        msg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_normalise_case_punctuation_and_digits() {
        assert_eq!(
            value_forms(b"Jane  O'Neil"),
            vec![(3, b"jane o neil".to_vec())]
        );
        assert_eq!(
            value_forms(b"+1 (555) 010-9999"),
            vec![
                (4, b"1 555 010 9999".to_vec()),
                (1, b"15550109999".to_vec())
            ]
        );
        assert!(value_forms(b"42").is_empty());
        assert!(value_forms(b"yes").is_empty());
    }
}
