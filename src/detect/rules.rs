//! Rule packs: the TOML model of `policies/rules/*.toml` (see `FORMAT.md`) and its loader.
//!
//! Every error names the file and the line, because the person reading it is fixing a TOML file,
//! not reading Rust. Loading never panics on a malformed pack: it returns a [`RuleError`].

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use regex_automata::meta;
use regex_syntax::hir::Hir;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::validators::Validator;
use super::{Category, Severity};

/// Why a rule pack (or a dictionary) could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{file}:{line}:{col}: {msg}")]
    Syntax {
        file: PathBuf,
        line: usize,
        col: usize,
        msg: String,
    },
    #[error("{file}:{line}: rule `{rule}`: {msg}")]
    Invalid {
        file: PathBuf,
        line: usize,
        rule: String,
        msg: String,
    },
    #[error("{file}:{line}: rule `{rule}`: pattern does not compile: {msg}")]
    Regex {
        file: PathBuf,
        line: usize,
        rule: String,
        msg: String,
    },
    #[error("{file}: {msg}")]
    File { file: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One `[[rule]]` as written in a pack. Field names are the pack format's (`FORMAT.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    pub name: String,
    pub category: Category,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub always: bool,
    /// A context-gated catch-all (`password = ...`, `Authorization: Bearer ...`): its finding
    /// is dropped when a specific rule reports the same value (or a span around it), so the
    /// user sees "Stripe secret key", not that and "generic API key" for one value.
    #[serde(default, skip_serializing_if = "is_false")]
    pub generic: bool,
    /// Instead of keywords: run only around runs of at least this many digits (single spaces,
    /// dashes or dots between them allowed). For numbers with no keyword of their own (cards,
    /// national ids): far cheaper than `always`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digits: Option<usize>,
    /// With `digits`: runs of more digits than this are skipped (a UK NINO has exactly six,
    /// an SSN nine), which keeps long numbers (hashes, timestamps) from waking the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_digits: Option<usize>,
    /// With `digits`: only runs that follow an ASCII letter (one space may sit between), as
    /// every digit run inside an IBAN or a UK NINO does.
    #[serde(default, skip_serializing_if = "is_false")]
    pub digits_after_letter: bool,
    /// With `digits`: only runs whose digits are joined by this separator somewhere (`-` for
    /// an SSN), which keeps tables of plain or decimal numbers from waking the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digits_separator: Option<String>,
    pub pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<String>,
    /// Report a value that fails its validator at this severity instead of dropping it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_len: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<usize>,
    /// Free text for people (where the format comes from, what the key grants); never read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    #[serde(default, skip_serializing_if = "AllowSpec::is_empty")]
    pub allow: AllowSpec,
    #[serde(default)]
    pub tests: TestSpec,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// `[rule.allow]`: values a rule never reports.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllowSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopwords: Vec<String>,
}

impl AllowSpec {
    fn is_empty(&self) -> bool {
        self.values.is_empty() && self.patterns.is_empty() && self.stopwords.is_empty()
    }
}

/// `[rule.tests]`: the rule's own examples and counter-examples.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    #[serde(default, rename = "match")]
    pub matches: Vec<String>,
    #[serde(default)]
    pub no_match: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    #[serde(default)]
    rule: Vec<Spanned<RuleSpec>>,
}

/// A rule ready to run: the spec plus its parsed pattern, allowlist and validator.
///
/// The pattern is compiled only the first time the rule's keyword occurs: a start-up that
/// compiled every rule's automata would cost more than scanning a whole source tree.
pub struct Rule {
    pub spec: RuleSpec,
    /// Where it was defined, for error messages and `policy test` reports.
    pub origin: Origin,
    /// The pattern's syntax tree and what the scanner reads from it. Built at load time for
    /// packs from disk (so that a bad pattern is reported with its file and line); for the
    /// built-in packs, which the test suite checks, on the first keyword hit: parsing some 300
    /// patterns was a fifth of `scan`'s start-up.
    shape: OnceLock<Option<Shape>>,
    regex: OnceLock<Option<meta::Regex>>,
    pub validator: Option<Validator>,
    pub allow_values: Vec<Vec<u8>>,
    allow_patterns: AllowPatterns,
    pub stopwords: Vec<Vec<u8>>,
    /// Lower-cased keywords, for the prefilter.
    pub keywords: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("id", &self.spec.id)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Rule {
    /// Whether one of the rule's `allow.patterns` matches `value`.
    pub fn allowed_by_pattern(&self, value: &[u8]) -> bool {
        let allow = &self.allow_patterns;
        if allow.patterns.is_empty() {
            return false;
        }
        allow
            .set
            .get_or_init(|| {
                regex::bytes::RegexSetBuilder::new(&allow.patterns)
                    .unicode(false)
                    .size_limit(16 << 20)
                    .dfa_size_limit(16 << 20)
                    .build()
                    .ok()
            })
            .as_ref()
            .is_some_and(|set| set.is_match(value))
    }

    /// Whether the scanner tries this rule anchored at each keyword hit instead of searching a
    /// window around it: when every match begins with a keyword, the pattern is bounded, and
    /// no digit gate wakes it. `pat` (Airtable) occurs in every `path`; anchored, the lazy DFA
    /// rejects `path.join` at its fifth byte, where a window search read some 160 bytes.
    pub fn searched_from_keyword(&self) -> bool {
        self.spec.digits.is_none()
            && self
                .shape()
                .is_some_and(|shape| shape.starts_with_keyword && shape.bounded)
    }

    /// The pattern's shape; `None` if it does not parse (possible only for a built-in pack, read
    /// lazily: then the rule never matches, and its own `match` cases say so).
    pub fn shape(&self) -> Option<&Shape> {
        self.shape
            .get_or_init(|| Shape::read(&self.spec).ok())
            .as_ref()
    }

    /// The compiled pattern, built on first use; `None` if it exceeds the engine's size limits
    /// (then the rule never matches, and its own `match` cases say so).
    pub fn regex(&self) -> Option<&meta::Regex> {
        self.regex
            .get_or_init(|| {
                let shape = self.shape()?;
                meta::Regex::builder()
                    .configure(
                        meta::Config::new()
                            .utf8_empty(false)
                            .nfa_size_limit(Some(16 << 20))
                            .dfa_size_limit(Some(16 << 20)),
                    )
                    .build_from_hir(&shape.hir)
                    .ok()
            })
            .as_ref()
    }
}

/// What the scanner needs to know of a rule's pattern, read from its syntax tree.
pub struct Shape {
    hir: Hir,
    /// How far from a keyword hit a match can reach: the longest match the pattern can produce,
    /// with each unbounded repetition (`\s*`, `+`) counted as [`UNBOUNDED_REACH`] bytes. The
    /// regex searches just that window around each hit.
    pub max_match: usize,
    /// Whether `max_match` is exact. When it is not, a match touching its window's edge may be
    /// cut short by it, and the scanner searches the whole input for that rule instead.
    pub bounded: bool,
    /// How many line breaks a match can hold (one that can only be its first or last byte not
    /// counted), if bounded. A window then stops that many lines from the keyword hit's line:
    /// code is full of keywords (`key`, `token`, `@`) beside long lines that cannot hold their
    /// match, and searching those lines was most of the scan of a source tree.
    pub line_span: Option<usize>,
    /// The capture group that holds the value.
    pub group: usize,
    /// Whether every match begins with one of the rule's keywords (`\b(ghp_[A-Za-z0-9]{36})`),
    /// or with a JSON escape right before one (see `escape_lead`).
    /// See [`Rule::searched_from_keyword`].
    pub starts_with_keyword: bool,
    /// Whether the pattern opens with `(?:\\[nt]|\b)`: a match starts at its keyword, or two
    /// bytes before it where a `\n` or `\t` escape of raw JSON stands there (the `n` of `\n`
    /// is a word byte, so a `\b` alone fails there). The scanner then also tries the rule two
    /// bytes before such a hit, and the rule keeps being searched from its keyword.
    pub escape_lead: bool,
    /// A literal every match holds a bounded distance after its start, if the pattern has one
    /// (see [`Companion`]).
    pub companion: Option<Companion>,
}

/// Literals one of which every match of a pattern holds, starting between `min` and `max`
/// bytes after the match's start: `key` or `token` in
/// `(?i:together)[^\r\n]{0,40}?(?i:key|token)...`.
///
/// A rule searched from its keyword tries the regex at every keyword hit. When the keyword is
/// an ordinary word (`together`, `elastic`, `sanity`: a provider's name beside its key), prose
/// holds it every few sentences, and each try costs the lazy DFA the bytes up to where the
/// pattern gives up. One search for the companion over the text drops every hit that has none
/// in reach, which is nearly all of them.
pub struct Companion {
    /// Every companion literal, ASCII case ignored.
    pub finder: aho_corasick::AhoCorasick,
    pub min: usize,
    pub max: usize,
}

impl Companion {
    /// The first point of `hir`'s top-level sequence, `skip` bytes or more in (past the
    /// keyword: a literal inside it is always there), from which every match goes on with one
    /// of a few literals of three bytes or more; with the least and most bytes what precedes
    /// that point can take.
    fn read(hir: &Hir, skip: usize) -> Option<Companion> {
        use regex_syntax::hir::literal::{ExtractKind, Extractor};
        use regex_syntax::hir::HirKind;
        /// Past this, the span a companion is looked for in covers too much to drop hits.
        const MAX_GAP: usize = 512;
        const MAX_LITERALS: usize = 16;
        let HirKind::Concat(items) = hir.kind() else {
            return None;
        };
        let (mut min, mut max) = (0usize, 0usize);
        for (at, item) in items.iter().enumerate() {
            if min >= skip.max(1) {
                // The rest of the sequence, not the item alone: `(?i:key)` is three items,
                // one class per letter.
                let rest = Hir::concat(items[at..].to_vec());
                let prefixes = Extractor::new().kind(ExtractKind::Prefix).extract(&rest);
                if let Some(literals) = prefixes.literals() {
                    let mut folded: Vec<Vec<u8>> = literals
                        .iter()
                        .map(|literal| literal.as_bytes().to_ascii_lowercase())
                        .collect();
                    folded.sort_unstable();
                    folded.dedup();
                    if !folded.is_empty()
                        && folded.len() <= MAX_LITERALS
                        && folded.iter().all(|literal| literal.len() >= 3)
                    {
                        let finder = aho_corasick::AhoCorasick::builder()
                            .ascii_case_insensitive(true)
                            .build(&folded)
                            .ok()?;
                        return Some(Companion { finder, min, max });
                    }
                }
            }
            let properties = item.properties();
            min = min.saturating_add(properties.minimum_len()?);
            max = max.checked_add(properties.maximum_len()?)?;
            if max > MAX_GAP {
                return None;
            }
        }
        None
    }

    /// Keeps the `starts` (sorted) that have a companion literal starting `min..=max` bytes
    /// after them in `text`.
    pub fn retain_near(&self, text: &[u8], starts: &mut Vec<usize>) {
        let (Some(&first), Some(&last)) = (starts.first(), starts.last()) else {
            return;
        };
        let from = first.saturating_add(self.min).min(text.len());
        let to = last
            .saturating_add(self.max)
            .saturating_add(self.finder.max_pattern_len());
        let input = aho_corasick::Input::new(text).span(from..to.min(text.len()));
        // Every occurrence, overlapping ones included, sorted by start.
        let mut found: Vec<usize> = self
            .finder
            .find_overlapping_iter(input)
            .map(|m| m.start())
            .collect();
        found.sort_unstable();
        let mut next = 0;
        starts.retain(|&start| {
            // The first companion at or after `start + min`; the starts are in order, so the
            // search moves forward only.
            while found.get(next).is_some_and(|&at| at < start + self.min) {
                next += 1;
            }
            found.get(next).is_some_and(|&at| at <= start + self.max)
        });
    }
}

impl Shape {
    /// Parses `spec.pattern`; the message says what is wrong with it.
    fn read(spec: &RuleSpec) -> Result<Shape, String> {
        let hir = parse_pattern(&spec.pattern)?;
        let groups = hir.properties().explicit_captures_len();
        let group = spec.group.unwrap_or(if groups > 0 { 1 } else { 0 });
        if group > groups {
            return Err(format!(
                "group {group} but the pattern has {groups} capture group(s)"
            ));
        }
        let after_lead = after_escape_lead(&hir);
        let from_keyword = after_lead.as_ref().unwrap_or(&hir);
        let starts_with_keyword = starts_with_keyword(from_keyword, &spec.keywords);
        // Only read where it can be used: a companion's distance counts from a match's start,
        // known only when every match starts at a keyword hit (or an escape's two bytes
        // before it, which widen the reach by two).
        let companion = starts_with_keyword
            .then(|| {
                let skip = spec.keywords.iter().map(String::len).min().unwrap_or(0);
                Companion::read(from_keyword, skip)
            })
            .flatten()
            .map(|mut companion| {
                if after_lead.is_some() {
                    companion.max += 2;
                }
                companion
            });
        Ok(Shape {
            max_match: capped_max_len(&hir),
            bounded: hir.properties().maximum_len().is_some(),
            line_span: interior_newlines(&hir, true, true),
            group,
            starts_with_keyword,
            escape_lead: after_lead.is_some(),
            companion,
            hir,
        })
    }
}

/// A rule's `allow.patterns`, checked at load time and compiled (as one set) the first time a
/// value needs them: most rules never match, and compiling every rule's allowlist was a third
/// of the start-up.
struct AllowPatterns {
    patterns: Vec<String>,
    /// `None` if the set exceeds the engine's size limits (then nothing is allowed by pattern).
    set: OnceLock<Option<regex::bytes::RegexSet>>,
}

/// File and line a rule was defined at.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// The packs compiled into the binary: every `policies/rules/*.toml`, via `build.rs`.
pub const BUILTIN_PACKS: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/builtin_rules.rs"));

/// Parses and compiles one pack's text. `file` is only used in messages.
pub fn parse_pack(file: &Path, text: &str) -> Result<Vec<Rule>, RuleError> {
    read_pack(file, text, Patterns::Check)
}

/// Parses one of [`BUILTIN_PACKS`], leaving its patterns to be read on first use.
pub(crate) fn parse_builtin_pack(file: &Path, text: &str) -> Result<Vec<Rule>, RuleError> {
    read_pack(file, text, Patterns::Trust)
}

/// Whether a pack's patterns are parsed (and so checked) at load time.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Patterns {
    Check,
    /// Built into the binary and checked by the test suite: read on first use.
    Trust,
}

fn read_pack(file: &Path, text: &str, patterns: Patterns) -> Result<Vec<Rule>, RuleError> {
    let pack: PackFile = toml::from_str(text).map_err(|error| {
        let (line, col) = error
            .span()
            .map(|span| line_col(text, span.start))
            .unwrap_or((1, 1));
        RuleError::Syntax {
            file: file.to_path_buf(),
            line,
            col,
            msg: error.message().to_string(),
        }
    })?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut rules = Vec::with_capacity(pack.rule.len());
    for spanned in pack.rule {
        let line = line_col(text, spanned.span().start).0;
        let spec = spanned.into_inner();
        let origin = Origin {
            file: file.to_path_buf(),
            line,
        };
        if let Some(first) = seen.insert(spec.id.clone(), line) {
            return Err(invalid(
                &origin,
                &spec.id,
                format!("id already used at line {first}"),
            ));
        }
        rules.push(compile(spec, origin, patterns)?);
    }
    Ok(rules)
}

/// Reads every `*.toml` in `dir` (sorted by name), parsed as packs.
pub fn load_dir(dir: &Path) -> Result<Vec<Rule>, RuleError> {
    let mut rules = Vec::new();
    for path in sorted_files(dir, &["toml"])? {
        let text = fs::read_to_string(&path).map_err(|source| RuleError::Io {
            path: path.clone(),
            source,
        })?;
        rules.extend(parse_pack(&path, &text)?);
    }
    Ok(rules)
}

/// Files in `dir` with one of `extensions`, sorted; a missing directory is empty.
pub(crate) fn sorted_files(dir: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>, RuleError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RuleError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .and_then(|ext| ext.to_str())
                    .is_some_and(|ext| extensions.contains(&ext))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn invalid(origin: &Origin, rule: &str, msg: String) -> RuleError {
    RuleError::Invalid {
        file: origin.file.clone(),
        line: origin.line,
        rule: rule.to_string(),
        msg,
    }
}

/// Whether every match of `hir` begins with one of `keywords`, ASCII case ignored: each of the
/// pattern's prefix literals (regex-syntax's extractor; a match starts with one of them)
/// starts with a keyword. An infinite or trimmed-short prefix set says no.
pub(crate) fn starts_with_keyword(hir: &Hir, keywords: &[String]) -> bool {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let prefixes = Extractor::new().kind(ExtractKind::Prefix).extract(hir);
    let listed = prefixes.literals().is_some_and(|literals| {
        !literals.is_empty()
            && literals.iter().all(|literal| {
                keywords
                    .iter()
                    .any(|keyword| starts_with_folded(literal.as_bytes(), keyword))
            })
    });
    // A case-insensitive provider name is too many literals to list (`(?i:together)` alone
    // is 256: the extractor cuts them short or gives up), so it is read from the pattern's
    // first items instead.
    listed
        || spelled_keyword(hir)
            .is_some_and(|spelled| keywords.iter().any(|k| starts_with_folded(&spelled, k)))
}

/// The rest of `hir` after a leading `(?:\\[nt]|\b)` (either order, any letters of `\n \t
/// \r`), if it opens with one: see [`Shape::escape_lead`].
pub(crate) fn after_escape_lead(hir: &Hir) -> Option<Hir> {
    use regex_syntax::hir::{Class, HirKind, Look};
    let HirKind::Concat(items) = hir.kind() else {
        return None;
    };
    let (first, rest) = items.split_first()?;
    let HirKind::Alternation(alternatives) = first.kind() else {
        return None;
    };
    let escape_letter = |b: u8| matches!(b.to_ascii_lowercase(), b'n' | b't' | b'r');
    let is_boundary = |h: &Hir| matches!(h.kind(), HirKind::Look(Look::WordAscii));
    let is_escape = |h: &Hir| match h.kind() {
        HirKind::Literal(literal) => matches!(*literal.0, [b'\\', letter] if escape_letter(letter)),
        HirKind::Concat(pair) => match (pair.first().map(Hir::kind), pair.get(1).map(Hir::kind)) {
            (Some(HirKind::Literal(slash)), Some(HirKind::Class(Class::Bytes(letters)))) => {
                pair.len() == 2
                    && *slash.0 == *b"\\"
                    && letters
                        .ranges()
                        .iter()
                        .flat_map(|range| range.start()..=range.end())
                        .all(escape_letter)
            }
            _ => false,
        },
        _ => false,
    };
    let led = match alternatives.as_slice() {
        [a, b] => is_boundary(a) && is_escape(b) || is_escape(a) && is_boundary(b),
        _ => false,
    };
    led.then(|| Hir::concat(rest.to_vec()))
}

/// Whether `bytes` begins with the non-empty `keyword`, ASCII case ignored.
fn starts_with_folded(bytes: &[u8], keyword: &str) -> bool {
    !keyword.is_empty()
        && bytes
            .get(..keyword.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(keyword.as_bytes()))
}

/// The bytes every match of `hir` begins with, lower-cased, read from the first items of its
/// top-level sequence while each is a literal or a class of one byte in either ASCII case
/// (`(?i:together)` is eight such classes); look-arounds before them take no bytes.
fn spelled_keyword(hir: &Hir) -> Option<Vec<u8>> {
    use regex_syntax::hir::{Class, HirKind};
    let HirKind::Concat(items) = hir.kind() else {
        return None;
    };
    let mut spelled = Vec::new();
    for item in items {
        match item.kind() {
            HirKind::Look(_) if spelled.is_empty() => {}
            HirKind::Literal(literal) => spelled.extend(literal.0.to_ascii_lowercase()),
            HirKind::Class(Class::Bytes(class)) => {
                let mut members = class
                    .ranges()
                    .iter()
                    .flat_map(|range| range.start()..=range.end())
                    .map(|b| b.to_ascii_lowercase());
                let Some(first) = members.next() else {
                    break;
                };
                if class.ranges().len() > 2 || !members.all(|b| b == first) {
                    break;
                }
                spelled.push(first);
            }
            _ => break,
        }
    }
    (!spelled.is_empty()).then_some(spelled)
}

/// What an unbounded repetition counts for in [`Rule::max_match`]: more than any realistic
/// run of `\s*` between a key name and its value, and a window edge catches the rest.
pub const UNBOUNDED_REACH: usize = 256;

/// The most line breaks a match of `hir` can hold, not counting one that can only be the
/// match's first or last byte (`(?:^|[^\w])`, `(?:\W|$)`: the byte before or after a value);
/// `None` if unbounded. `(?m)^key=value$` holds none: look-arounds consume nothing.
pub(crate) fn interior_newlines(hir: &Hir, at_start: bool, at_end: bool) -> Option<usize> {
    use regex_syntax::hir::{Class, HirKind};
    let edge = |is_newline: bool| usize::from(is_newline && !at_start && !at_end);
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(0),
        HirKind::Literal(literal) => {
            let bytes = &literal.0;
            let last = bytes.len().saturating_sub(1);
            Some(
                bytes
                    .iter()
                    .enumerate()
                    .filter(|&(i, &b)| b == b'\n' && !(at_start && i == 0 || at_end && i == last))
                    .count(),
            )
        }
        HirKind::Class(Class::Bytes(class)) => Some(edge(
            class
                .ranges()
                .iter()
                .any(|r| (r.start()..=r.end()).contains(&b'\n')),
        )),
        HirKind::Class(Class::Unicode(class)) => Some(edge(
            class
                .ranges()
                .iter()
                .any(|r| (r.start()..=r.end()).contains(&'\n')),
        )),
        HirKind::Repetition(repetition) => match repetition.max {
            Some(0) => Some(0),
            Some(1) => interior_newlines(&repetition.sub, at_start, at_end),
            max => match interior_newlines(&repetition.sub, false, false)? {
                0 => Some(0),
                each => max.map(|max| each.saturating_mul(max as usize)),
            },
        },
        HirKind::Capture(capture) => interior_newlines(&capture.sub, at_start, at_end),
        HirKind::Alternation(subs) => subs.iter().try_fold(0, |most, sub| {
            Some(most.max(interior_newlines(sub, at_start, at_end)?))
        }),
        HirKind::Concat(subs) => {
            let empty = |sub: &Hir| sub.properties().maximum_len() == Some(0);
            let mut total = 0usize;
            for (i, sub) in subs.iter().enumerate() {
                let first = at_start && subs[..i].iter().all(empty);
                let last = at_end && subs[i + 1..].iter().all(empty);
                total = total.saturating_add(interior_newlines(sub, first, last)?);
            }
            Some(total)
        }
    }
}

/// The longest match of `hir`, counting each unbounded repetition as [`UNBOUNDED_REACH`].
fn capped_max_len(hir: &Hir) -> usize {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => 0,
        HirKind::Literal(literal) => literal.0.len(),
        HirKind::Class(Class::Bytes(_)) => 1,
        HirKind::Class(Class::Unicode(class)) => class.maximum_len().unwrap_or(4),
        HirKind::Repetition(repetition) => {
            let sub = capped_max_len(&repetition.sub);
            match repetition.max {
                Some(max) => sub.saturating_mul(max as usize),
                None => sub
                    .saturating_mul(repetition.min as usize)
                    .saturating_add(UNBOUNDED_REACH.max(sub)),
            }
        }
        HirKind::Capture(capture) => capped_max_len(&capture.sub),
        HirKind::Concat(subs) => subs
            .iter()
            .map(capped_max_len)
            .fold(0, usize::saturating_add),
        HirKind::Alternation(subs) => subs.iter().map(capped_max_len).max().unwrap_or(0),
    }
}

/// Parses a rule's pattern the way [`compile_regex`] compiles it (ASCII mode, bytes).
pub(crate) fn parse_pattern(pattern: &str) -> Result<Hir, String> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_err(|error| error.to_string())
}

/// Compiles a rule's regexes in ASCII mode: `\w`, `\d`, `\b` and `(?i)` are ASCII-only unless
/// the pattern opts in with `(?u)`. Secrets are ASCII, and Unicode word boundaries would force
/// the regex engine off its fast DFA path on any non-ASCII input.
pub(crate) fn compile_regex(pattern: &str) -> Result<regex::bytes::Regex, regex::Error> {
    regex::bytes::RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(16 << 20)
        .dfa_size_limit(16 << 20)
        .build()
}

fn compile(spec: RuleSpec, origin: Origin, patterns: Patterns) -> Result<Rule, RuleError> {
    let id = spec.id.clone();
    let valid_id = id.split('.').count() >= 2
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
    if !valid_id {
        return Err(invalid(
            &origin,
            &id,
            "id must be dotted lower-case, e.g. `secret.example_api_key`".into(),
        ));
    }
    let category_prefix = match spec.category {
        Category::Secret => "secret.",
        Category::Pii => "pii.",
        Category::Custom => "custom.",
    };
    if !id.starts_with(category_prefix) {
        return Err(invalid(
            &origin,
            &id,
            format!("id must start with `{category_prefix}` for its category"),
        ));
    }
    if spec.keywords.is_empty() && !spec.always && spec.digits.is_none() {
        return Err(invalid(
            &origin,
            &id,
            "needs `keywords` (or `digits = N`, or `always = true`, which runs its regex on \
             every input)"
                .into(),
        ));
    }
    if spec.keywords.iter().any(|k| k.is_empty()) {
        return Err(invalid(&origin, &id, "empty keyword".into()));
    }
    match (spec.digits, spec.max_digits) {
        (None, Some(_)) => {
            return Err(invalid(&origin, &id, "`max_digits` needs `digits`".into()));
        }
        (Some(min), Some(max)) if max < min => {
            return Err(invalid(
                &origin,
                &id,
                format!("`max_digits` ({max}) is below `digits` ({min})"),
            ));
        }
        _ => {}
    }
    if let Some(separator) = &spec.digits_separator {
        if spec.digits.is_none() || !matches!(separator.as_str(), " " | "-" | ".") {
            return Err(invalid(
                &origin,
                &id,
                "`digits_separator` needs `digits` and is one of \" \", \"-\" or \".\"".into(),
            ));
        }
    }
    if spec.digits_after_letter && spec.digits.is_none() {
        return Err(invalid(
            &origin,
            &id,
            "`digits_after_letter` needs `digits`".into(),
        ));
    }
    let shape = OnceLock::new();
    if patterns == Patterns::Check {
        let read = Shape::read(&spec).map_err(|msg| RuleError::Regex {
            file: origin.file.clone(),
            line: origin.line,
            rule: id.clone(),
            msg,
        })?;
        let _ = shape.set(Some(read));
    }
    if spec.digits.is_some_and(|n| n == 0) {
        return Err(invalid(&origin, &id, "`digits` must be at least 1".into()));
    }
    let validator = match &spec.validator {
        None => None,
        Some(name) => Some(Validator::from_name(name).ok_or_else(|| {
            invalid(
                &origin,
                &id,
                format!(
                    "unknown validator `{name}` (known: {})",
                    Validator::NAMES.join(", ")
                ),
            )
        })?),
    };
    for pattern in spec
        .allow
        .patterns
        .iter()
        .filter(|_| patterns == Patterns::Check)
    {
        parse_pattern(pattern).map_err(|msg| RuleError::Regex {
            file: origin.file.clone(),
            line: origin.line,
            rule: id.clone(),
            msg: format!("allow pattern: {msg}"),
        })?;
    }
    let allow_patterns = AllowPatterns {
        patterns: spec.allow.patterns.clone(),
        set: OnceLock::new(),
    };
    Ok(Rule {
        shape,
        regex: OnceLock::new(),
        validator,
        allow_values: spec
            .allow
            .values
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect(),
        allow_patterns,
        stopwords: spec
            .allow
            .stopwords
            .iter()
            .map(|w| w.to_ascii_lowercase().into_bytes())
            .collect(),
        keywords: spec
            .keywords
            .iter()
            .map(|k| k.to_ascii_lowercase().into_bytes())
            .collect(),
        spec,
        origin,
    })
}

/// `name` as one part of a detector id: lower-case ASCII letters and digits, anything else `_`.
pub(crate) fn id_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// 1-based line and column of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_companion_is_a_literal_every_match_holds_at_a_bounded_distance() {
        let companion = |pattern: &str, skip: usize| {
            Companion::read(&parse_pattern(pattern).expect("pattern parses"), skip)
                .map(|c| (c.min, c.max, c.finder.patterns_len()))
        };
        // `together`, up to 40 bytes, then `key` or `token` (either case).
        assert_eq!(
            companion(
                r"(?i:together)[^\r\n]{0,40}?(?i:key|token)\s*=\s*(\w{32})",
                8
            ),
            Some((8, 48, 2))
        );
        assert_eq!(companion(r"heroku.{2,5}api_key=(\w+)", 6), Some((8, 11, 1)));
        // Nothing literal after the keyword; a gap without bound; a literal too short.
        assert_eq!(companion(r"\b(ghp_[A-Za-z0-9]{36})", 4), None);
        assert_eq!(companion(r"together.*key=(\w+)", 8), None);
        assert_eq!(companion(r"together.{0,9}(?:i|p)=(\w+)", 8), None);
    }

    #[test]
    fn hits_are_kept_only_with_a_companion_in_reach() {
        let companion = Companion::read(
            &parse_pattern(r"(?i:abc)[^\n]{2,4}(?i:key)=\w+").expect("pattern parses"),
            3,
        )
        .expect("has a companion");
        assert_eq!((companion.min, companion.max), (5, 7));
        // Starts 0, 10, 21, 34; `key=` at 5, 16, 29, 40: 29 is 8 bytes after 21, and `KEY`
        // (no `=`) is not the companion, but what `[^\n]{2,4}` can take before one.
        let text = b"abc__KEY= abc___key= abc_____key= abcKEYkey=";
        let mut starts = vec![0, 10, 21, 34];
        companion.retain_near(text, &mut starts);
        assert_eq!(starts, [0, 10, 34]);
        let mut none: Vec<usize> = Vec::new();
        companion.retain_near(text, &mut none);
        assert!(none.is_empty());
    }

    /// The built-in packs' patterns are read on first use, trusting this test to have checked
    /// them the way a pack from disk is checked at load time.
    #[test]
    fn every_built_in_pattern_and_allow_pattern_parses_and_compiles() {
        for (name, text) in BUILTIN_PACKS {
            let rules = parse_pack(Path::new(name), text).expect("built-in pack checks");
            for rule in &rules {
                let id = &rule.spec.id;
                assert!(
                    rule.regex().is_some(),
                    "{id}: pattern exceeds the size limits"
                );
                if !rule.spec.allow.patterns.is_empty() {
                    rule.allowed_by_pattern(b"");
                    assert!(
                        matches!(rule.allow_patterns.set.get(), Some(Some(_))),
                        "{id}: allow patterns exceed the size limits"
                    );
                }
            }
        }
    }
}
