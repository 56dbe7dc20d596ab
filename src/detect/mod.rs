//! Detection: finds secrets, personal data and an organisation's own customer data in bytes.
//!
//! The engine never hard-codes a provider: rules are data (`policies/rules/*.toml`), each with
//! its own examples and counter-examples. A keyword prefilter (every rule keyword, found through
//! a table of rare trigrams: `prefilter`) decides which rules' regexes run at all, and where, so
//! the cost of a scan grows with what is *in* the input, not with the number of rules. Digit and
//! base64 runs are found from 64-byte SIMD class bitmasks (`classify`); rules without a keyword
//! wake on digit runs long enough for them (`digits`).
//!
//! The path of one scan:
//!
//! ```text
//! input -> [non-ASCII?] fold (normalize::Folded) -> keyword prefilter -> triggered rules' regexes
//!       -> value checks (length, placeholder, allowlist, entropy, validator) -> findings
//!       -> dictionaries and exact-data match (dict) -> findings
//!       -> encoded blobs (normalize::find_blobs) decoded and scanned again, reported at the blob
//! ```
//!
//! This module must never log, print or store a detected value: callers get spans, not strings.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use regex_automata::util::captures::Captures;
use regex_automata::{Anchored, Input};
use serde::{Deserialize, Serialize};

mod classify;
pub mod dict;
mod digits;
pub mod gitleaks;
pub mod normalize;
pub mod placeholder;
pub mod prefilter;
pub mod rules;
pub mod validators;

use digits::{DigitGate, DigitGates};
pub use rules::{Rule, RuleError, RuleSpec};

use normalize::{find_blobs, Folded};

/// The broad class of a finding; policies match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Secret,
    Pii,
    Custom,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Secret => "secret",
            Category::Pii => "pii",
            Category::Custom => "custom",
        }
    }
}

/// How bad a leak of the value would be; ordered so policies can say "high and above".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One detected value: which detector found it and where, never the value itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable dotted detector id, e.g. `secret.aws_access_key_id`.
    pub detector: Arc<str>,
    pub category: Category,
    pub severity: Severity,
    /// Byte offsets of the value in the input as given to [`Scanner::scan`]. For a value found
    /// inside an encoded blob (base64, hex, percent), the span of the whole blob.
    pub span: Range<usize>,
}

/// How deep encoded blobs are unwrapped (base64 inside base64 inside ...).
const MAX_DEPTH: usize = 3;
/// Decoded bytes scanned again per top-level scan, in all: bounds the work an input made of
/// nested encodings can cause.
const MAX_DECODED: usize = 8 << 20;
/// Rules whose longest match is longer than this search the whole input instead of windows.
const MAX_WINDOW: usize = 4096;

/// A rule searched from its keyword looks for its companion literal ([`rules::Companion`])
/// first when it has at least this many keyword hits, no further apart on average than
/// `COMPANION_SPAN_PER_START` bytes.
const COMPANION_MIN_STARTS: usize = 8;
const COMPANION_SPAN_PER_START: usize = 256;

/// Windows are clipped to the lines a match can span only when it spans this few: finding more
/// line breaks costs more than it saves (a window of a few hundred bytes holds a dozen lines).
const MAX_CLIP_LINES: usize = 2;

/// Scans bytes with a compiled rule set. Cheap to share (`Arc`), immutable once built.
pub struct Scanner {
    rules: Vec<Rule>,
    ids: Vec<Arc<str>>,
    /// Every rule's keywords (deduplicated, case-insensitive).
    prefilter: prefilter::Prefilter,
    /// For each prefilter pattern, the rules that list it as a keyword.
    keyword_rules: Vec<Vec<usize>>,
    /// Rules with `always = true`: run on every input.
    always_rules: Vec<usize>,
    /// Rules gated on digit runs.
    digit_gates: DigitGates,
    terms: Vec<dict::TermDictionary>,
    exact: Vec<dict::ExactMatch>,
    /// Global override: report values failing their validator at this severity.
    invalid_severity: Option<Severity>,
    /// The ids (the same `Arc`s as in `ids`) of rules marked `generic = true`.
    generic_ids: Vec<Arc<str>>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("rules", &self.rules.len())
            .field("dictionaries", &self.terms.len())
            .field("exact", &self.exact.len())
            .finish()
    }
}

impl Scanner {
    /// The rule set shipped inside the binary (`policies/rules/*.toml`).
    pub fn builtin() -> Result<Scanner, RuleError> {
        Self::from_rules(builtin_rules()?, Vec::new(), Vec::new())
    }

    /// The shipped rules, plus `DIR/rules/*.toml` (a rule with a shipped rule's id replaces it)
    /// and the customer-data dictionaries in `DIR/dictionaries/` (see [`dict`]).
    pub fn from_dir(dir: &Path) -> Result<Scanner, RuleError> {
        if !dir.is_dir() {
            return Err(RuleError::File {
                file: dir.to_path_buf(),
                msg: "not a directory".into(),
            });
        }
        let mut rules = builtin_rules()?;
        let mut index: HashMap<String, usize> = rules
            .iter()
            .enumerate()
            .map(|(i, rule)| (rule.spec.id.clone(), i))
            .collect();
        for rule in rules::load_dir(&dir.join("rules"))? {
            match index.get(&rule.spec.id) {
                Some(&i) => rules[i] = rule,
                None => {
                    index.insert(rule.spec.id.clone(), rules.len());
                    rules.push(rule);
                }
            }
        }
        let (terms, exact) = dict::load_dir(&dir.join("dictionaries"))?;
        Self::from_rules(rules, terms, exact)
    }

    /// Only the rules in the given packs (`(file name, TOML text)`), without the shipped ones.
    pub fn from_packs(packs: &[(&str, &str)]) -> Result<Scanner, RuleError> {
        let mut rules = Vec::new();
        for (name, text) in packs {
            rules.extend(rules::parse_pack(Path::new(name), text)?);
        }
        Self::from_rules(rules, Vec::new(), Vec::new())
    }

    /// Builds the prefilter over `rules` and adds the dictionaries.
    pub fn from_rules(
        rules: Vec<Rule>,
        terms: Vec<dict::TermDictionary>,
        exact: Vec<dict::ExactMatch>,
    ) -> Result<Scanner, RuleError> {
        let mut keyword_index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut keywords: Vec<Vec<u8>> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        let mut always_rules = Vec::new();
        let mut digit_rules = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            if rule.spec.always {
                always_rules.push(i);
                continue;
            }
            if let Some(min) = rule.spec.digits {
                digit_rules.push(DigitGate {
                    rule: i,
                    min,
                    max: rule.spec.max_digits.unwrap_or(usize::MAX),
                    after_letter: rule.spec.digits_after_letter,
                    separator: rule.spec.digits_separator.as_ref().map(|s| s.as_bytes()[0]),
                });
            }
            for keyword in &rule.keywords {
                let slot = *keyword_index.entry(keyword.clone()).or_insert_with(|| {
                    keywords.push(keyword.clone());
                    keyword_rules.push(Vec::new());
                    keywords.len() - 1
                });
                if !keyword_rules[slot].contains(&i) {
                    keyword_rules[slot].push(i);
                }
            }
        }
        let prefilter = prefilter::Prefilter::new(&keywords);
        let ids: Vec<Arc<str>> = rules
            .iter()
            .map(|r| Arc::from(r.spec.id.as_str()))
            .collect();
        let generic_ids = rules
            .iter()
            .zip(&ids)
            .filter(|(rule, _)| rule.spec.generic)
            .map(|(_, id)| id.clone())
            .collect();
        Ok(Scanner {
            ids,
            generic_ids,
            rules,
            prefilter,
            keyword_rules,
            always_rules,
            digit_gates: DigitGates::new(digit_rules),
            terms,
            exact,
            invalid_severity: None,
        })
    }

    /// Report values that fail their rule's validator (e.g. a token with a wrong checksum) at
    /// `severity` instead of dropping them; `None` (the default) drops them unless the rule
    /// itself sets `invalid_severity`.
    pub fn with_invalid_severity(mut self, severity: Option<Severity>) -> Self {
        self.invalid_severity = severity;
        self
    }

    /// The compiled rules, in load order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Every finding in `input`, ordered by start offset. Never panics, whatever the bytes.
    pub fn scan(&self, input: &[u8]) -> Vec<Finding> {
        let mut findings = Vec::new();
        let mut budget = MAX_DECODED;
        self.scan_layer(input, 0, &mut budget, &mut findings);
        findings.sort_by(|a, b| {
            (a.span.start, a.span.end, &a.detector).cmp(&(b.span.start, b.span.end, &b.detector))
        });
        findings.dedup();
        self.drop_generic_shadowed(&mut findings);
        findings
    }

    /// Drops each finding of a `generic` rule whose span lies inside (or equals) the span of
    /// a finding of a specific rule (or a dictionary): the specific one names what leaked.
    /// `findings` is sorted by start; one pass plus a binary search per generic finding.
    fn drop_generic_shadowed(&self, findings: &mut Vec<Finding>) {
        if self.generic_ids.is_empty() || findings.len() < 2 {
            return;
        }
        let is_generic = |f: &Finding| self.generic_ids.iter().any(|g| Arc::ptr_eq(g, &f.detector));
        // Specific findings' starts, and the furthest end among those starting at or before.
        let mut starts = Vec::new();
        let mut reach = Vec::new();
        for finding in findings.iter().filter(|f| !is_generic(f)) {
            let end = reach
                .last()
                .map_or(finding.span.end, |&r: &usize| r.max(finding.span.end));
            starts.push(finding.span.start);
            reach.push(end);
        }
        if starts.is_empty() {
            return;
        }
        findings.retain(|f| {
            if !is_generic(f) {
                return true;
            }
            let at = starts.partition_point(|&s| s <= f.span.start);
            !(at > 0 && reach[at - 1] >= f.span.end)
        });
    }

    /// Scans one layer: the input itself (folded if it needs it), then its decoded blobs.
    fn scan_layer(&self, input: &[u8], depth: usize, budget: &mut usize, out: &mut Vec<Finding>) {
        let folded = Folded::new(input);
        let (text, map): (&[u8], Option<&Folded>) = match &folded {
            Some(folded) => (&folded.text, Some(folded)),
            None => (input, None),
        };
        let to_original = |span: Range<usize>| match map {
            Some(folded) => folded.original(span),
            None => span,
        };
        let first = out.len();
        self.scan_text(text, out);
        if map.is_some() {
            for finding in &mut out[first..] {
                finding.span = to_original(finding.span.clone());
            }
        }
        if depth >= MAX_DEPTH || *budget == 0 {
            return;
        }
        for blob in find_blobs(text, budget) {
            let mut inner = Vec::new();
            self.scan_layer(&blob.decoded, depth + 1, budget, &mut inner);
            let span = to_original(blob.span.clone());
            out.extend(inner.into_iter().map(|finding| Finding {
                span: span.clone(),
                ..finding
            }));
        }
    }

    /// Rules, dictionaries and exact-data match over plain (already folded) text.
    ///
    /// A rule runs only if one of its keywords (or, for `digits` rules, a long enough digit run)
    /// occurs, and then only in windows around those hits as wide as its longest possible
    /// match; rules whose matches are unbounded, or whose windows would cover most of the
    /// input anyway, search the whole input once.
    fn scan_text(&self, text: &[u8], out: &mut Vec<Finding>) {
        let mut whole = vec![false; self.rules.len()];
        for &i in &self.always_rules {
            whole[i] = true;
        }
        // Windows per rule, merged as hits arrive. The prefilter reports hits in order of
        // their end, so a new window almost always starts at or after the last one: merging
        // in place replaces a sort of every hit. A rule whose hits did arrive out of order
        // (single-byte keywords and digit runs come from their own passes) is sorted once.
        let mut windows: Vec<Vec<Range<usize>>> = vec![Vec::new(); self.rules.len()];
        let mut disordered = vec![false; self.rules.len()];
        // Keyword starts per rule, for rules searched from each hit (`Rule::searched_from_keyword`).
        let mut starts: Vec<Vec<usize>> = vec![Vec::new(); self.rules.len()];
        let len = text.len();
        let too_many_starts =
            |starts: usize, max_match: usize| starts.saturating_mul(max_match) > 2 * len;
        let mut hit = |rule: usize, start: usize, end: usize, whole: &mut [bool]| {
            if whole[rule] {
                return;
            }
            let Some(shape) = self.rules[rule].shape() else {
                return;
            };
            if shape.max_match > MAX_WINDOW {
                whole[rule] = true;
                return;
            }
            if self.rules[rule].searched_from_keyword() {
                let list = &mut starts[rule];
                if shape.escape_lead && follows_escape(text, start) {
                    list.push(start - 2);
                }
                list.push(start);
                // Each start may read up to `max_match` bytes: once that passes twice the
                // input, one search of the whole input costs less and finds the same matches
                // (every match starts at a keyword). Bounds the work and the list whatever
                // the text (`/ABSK` repeated would otherwise cost 4 KB of search per 23 bytes).
                // A rule with a companion decides once its starts are thinned out by it,
                // unless they grow past one per eight bytes (`ibm` repeated): the list stays
                // smaller than the input whatever the text.
                let thinned_later = shape.companion.is_some() && list.len() <= len / 8;
                if !thinned_later && too_many_starts(list.len(), shape.max_match) {
                    whole[rule] = true;
                    *list = Vec::new();
                }
                return;
            }
            let reach = shape.max_match;
            let mut window = start.saturating_sub(reach)..end.saturating_add(reach).min(len);
            if let Some(lines) = shape.line_span.filter(|&n| n <= MAX_CLIP_LINES) {
                window = clip_to_lines(text, window, start, end, lines);
            }
            let list = &mut windows[rule];
            match list.last_mut() {
                Some(last) if window.start >= last.start && window.start <= last.end => {
                    last.end = last.end.max(window.end);
                }
                Some(last) if window.start < last.start => {
                    disordered[rule] = true;
                    list.push(window);
                }
                _ => list.push(window),
            }
        };
        self.prefilter.for_each(text, |keyword, start, end| {
            for &i in &self.keyword_rules[keyword] {
                hit(i, start, end, &mut whole);
            }
        });
        self.digit_gates
            .each_hit(text, |rule, start, end| hit(rule, start, end, &mut whole));
        for (rule, list) in windows.iter_mut().enumerate() {
            if list.is_empty() || whole[rule] {
                continue;
            }
            if disordered[rule] {
                list.sort_unstable_by_key(|w| w.start);
                let mut merged: Vec<Range<usize>> = Vec::with_capacity(list.len());
                for window in list.drain(..) {
                    match merged.last_mut() {
                        Some(last) if window.start <= last.end => {
                            last.end = last.end.max(window.end)
                        }
                        _ => merged.push(window),
                    }
                }
                *list = merged;
            }
            let covered: usize = list.iter().map(|w| w.len()).sum();
            if covered * 2 > len {
                whole[rule] = true;
                continue;
            }
            let first = out.len();
            let mut cut = false;
            for window in list.iter() {
                cut |= self.run_rule(rule, text, window.clone(), out);
            }
            if cut {
                // A match of an unbounded pattern touched a window's edge: it may be longer
                // than the window let it be. Search the whole input for this rule instead.
                out.truncate(first);
                whole[rule] = true;
            }
        }
        for (rule, list) in starts.iter_mut().enumerate() {
            if list.is_empty() || whole[rule] {
                continue;
            }
            // Single-byte keywords are reported before the others, and the others in order of
            // their end, so keywords of different lengths can swap.
            list.sort_unstable();
            list.dedup();
            let Some(shape) = self.rules[rule].shape() else {
                continue;
            };
            if let Some(companion) = &shape.companion {
                // Worth one search for the companion where the starts are dense: it reads
                // the text they span once, where each start costs the lazy DFA tens of bytes.
                let span = list[list.len() - 1] - list[0];
                if list.len() >= COMPANION_MIN_STARTS
                    && span <= list.len() * COMPANION_SPAN_PER_START
                {
                    companion.retain_near(text, list);
                }
                if too_many_starts(list.len(), shape.max_match) {
                    whole[rule] = true;
                    continue;
                }
            }
            self.run_rule_from(rule, text, list, out);
        }
        for (i, _) in whole.iter().enumerate().filter(|(_, &on)| on) {
            self.run_rule(i, text, 0..text.len(), out);
        }
        for terms in &self.terms {
            terms.scan(text, out);
        }
        for exact in &self.exact {
            exact.scan(text, out);
        }
    }

    /// Runs one rule's regex over `window` of `text` (the text around it still counts for
    /// `\b` and anchors) and keeps the values that pass the rule's checks. Returns whether a
    /// match of a pattern without exact bounds touched an edge of the window (see
    /// [`rules::Shape::bounded`]).
    fn run_rule(
        &self,
        index: usize,
        text: &[u8],
        window: Range<usize>,
        out: &mut Vec<Finding>,
    ) -> bool {
        let rule = &self.rules[index];
        let (Some(shape), Some(regex)) = (rule.shape(), rule.regex()) else {
            return false;
        };
        let mut cut = false;
        for captures in regex.captures_iter(Input::new(text).span(window.clone())) {
            if !shape.bounded {
                if let Some(whole) = captures.get_match() {
                    // A line break at the window's edge bounds a match that cannot cross one
                    // as surely as the input's own ends do.
                    let single_line = shape.line_span == Some(0);
                    let hard = |at: usize| single_line && text.get(at) == Some(&b'\n');
                    cut |= whole.start() == window.start && window.start > 0 && !hard(window.start)
                        || whole.end() == window.end
                            && window.end < text.len()
                            && !hard(window.end - 1);
                }
            }
            self.report(index, shape.group, &captures, text, out);
        }
        cut
    }

    /// Runs a rule whose matches begin with its keywords (see [`Rule::searched_from_keyword`])
    /// anchored at each keyword start, in order, as a
    /// window search would find them: leftmost first, none overlapping the one before.
    fn run_rule_from(&self, index: usize, text: &[u8], starts: &[usize], out: &mut Vec<Finding>) {
        let rule = &self.rules[index];
        let (Some(shape), Some(regex)) = (rule.shape(), rule.regex()) else {
            return;
        };
        let mut captures = regex.create_captures();
        let mut floor = 0;
        for &start in starts {
            if start < floor {
                continue;
            }
            // A match is no longer than `max_match` (the shape is bounded); the text after
            // the span still counts for look-arounds.
            let span = start..start.saturating_add(shape.max_match).min(text.len());
            let input = Input::new(text).span(span).anchored(Anchored::Yes);
            // Most keyword hits are not a token (`pat` in `path`): the lazy DFA alone says so,
            // without the capture engines.
            if regex.search_half(&input).is_none() {
                continue;
            }
            regex.search_captures(&input, &mut captures);
            let Some(found) = captures.get_match() else {
                continue;
            };
            floor = found.end().max(start + 1);
            self.report(index, shape.group, &captures, text, out);
        }
    }

    /// Reports the value of one match if it passes the rule's checks ([`Scanner::judge`]).
    fn report(
        &self,
        index: usize,
        group: usize,
        captures: &Captures,
        text: &[u8],
        out: &mut Vec<Finding>,
    ) {
        let rule = &self.rules[index];
        // The rule's group, or (for a pattern whose alternatives each capture the value in
        // their own group) the first group that took part in the match.
        let Some(span) = captures
            .get_group(group)
            .or_else(|| (1..captures.group_len()).find_map(|group| captures.get_group(group)))
        else {
            return;
        };
        let span = span.start..span.end;
        if let Some(severity) = self.judge(rule, &text[span.clone()]) {
            out.push(Finding {
                detector: self.ids[index].clone(),
                category: rule.spec.category,
                severity,
                span,
            });
        }
    }

    /// The order of `FORMAT.md`: length bounds, placeholder, allowlist, entropy, validator.
    /// Returns the severity to report the value at, or `None` to drop it.
    fn judge(&self, rule: &Rule, value: &[u8]) -> Option<Severity> {
        let spec = &rule.spec;
        if spec.min_len.is_some_and(|min| value.len() < min)
            || spec.max_len.is_some_and(|max| value.len() > max)
        {
            return None;
        }
        if placeholder::is_placeholder(value) {
            return None;
        }
        if !rule.allow_values.is_empty() {
            let compact: Vec<u8> = value
                .iter()
                .copied()
                .filter(|&b| b != b' ' && b != b'-')
                .collect();
            if rule
                .allow_values
                .iter()
                .any(|allowed| allowed == value || *allowed == compact)
            {
                return None;
            }
        }
        if rule.allowed_by_pattern(value) {
            return None;
        }
        if !rule.stopwords.is_empty() {
            let lower = value.to_ascii_lowercase();
            if rule
                .stopwords
                .iter()
                .any(|w| lower.windows(w.len()).any(|window| window == w.as_slice()))
            {
                return None;
            }
        }
        if spec.entropy.is_some_and(|min| shannon_entropy(value) < min) {
            return None;
        }
        match rule.validator {
            Some(validator) if !validator.check(value) => {
                spec.invalid_severity.or(self.invalid_severity)
            }
            _ => Some(spec.severity),
        }
    }

    /// Runs every rule's own `match` / `no_match` cases through the whole scanner (prefilter,
    /// folding, every check) and returns the cases that fail.
    pub fn check_rule_cases(&self) -> Vec<CaseFailure> {
        let mut failures = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let id = &self.ids[i];
            if rule.spec.tests.matches.is_empty() {
                failures.push(CaseFailure {
                    rule: rule.spec.id.clone(),
                    origin: rule.origin.to_string(),
                    expected: Expectation::HasCases,
                    case: String::new(),
                });
            }
            for case in &rule.spec.tests.matches {
                let found = self.scan(case.as_bytes()).iter().any(|f| f.detector == *id);
                if !found {
                    failures.push(CaseFailure {
                        rule: rule.spec.id.clone(),
                        origin: rule.origin.to_string(),
                        expected: Expectation::Match,
                        case: case.clone(),
                    });
                }
            }
            for case in &rule.spec.tests.no_match {
                let found = self.scan(case.as_bytes()).iter().any(|f| f.detector == *id);
                if found {
                    failures.push(CaseFailure {
                        rule: rule.spec.id.clone(),
                        origin: rule.origin.to_string(),
                        expected: Expectation::NoMatch,
                        case: case.clone(),
                    });
                }
            }
        }
        failures
    }
}

/// A rule case that did not behave as the rule says it should.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFailure {
    pub rule: String,
    /// `file:line` of the rule.
    pub origin: String,
    pub expected: Expectation,
    /// The case's input (made-up test data from the pack itself, never scanned traffic).
    pub case: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expectation {
    /// A `match` case produced no finding of the rule.
    Match,
    /// A `no_match` case produced a finding of the rule.
    NoMatch,
    /// The rule has no `match` case at all.
    HasCases,
}

impl std::fmt::Display for CaseFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.expected {
            Expectation::Match => write!(
                f,
                "{} ({}): match case not found: {:?}",
                self.rule, self.origin, self.case
            ),
            Expectation::NoMatch => write!(
                f,
                "{} ({}): no_match case was reported: {:?}",
                self.rule, self.origin, self.case
            ),
            Expectation::HasCases => {
                write!(f, "{} ({}): has no match case", self.rule, self.origin)
            }
        }
    }
}

/// Every embedded pack, parsed, the packs shared out over the cores: parsing TOML and ~300
/// patterns is most of a `scan`'s start-up, which no amount of scanning speed hides.
fn builtin_rules() -> Result<Vec<Rule>, RuleError> {
    let parse = |(name, text): &(&str, &str)| {
        rules::parse_builtin_pack(&Path::new("policies/rules").join(name), text)
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let per_worker = rules::BUILTIN_PACKS.len().div_ceil(workers);
    let parsed: Vec<Result<Vec<Rule>, RuleError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = rules::BUILTIN_PACKS
            .chunks(per_worker.max(1))
            .skip(1)
            .map(|packs| scope.spawn(move || packs.iter().map(parse).collect::<Vec<_>>()))
            .collect();
        let mut parsed: Vec<_> = rules::BUILTIN_PACKS[..per_worker.min(rules::BUILTIN_PACKS.len())]
            .iter()
            .map(parse)
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(more) => parsed.extend(more),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        parsed
    });
    let mut rules = Vec::new();
    for pack in parsed {
        rules.extend(pack?);
    }
    Ok(rules)
}

/// Narrows `window` around the hit `start..end` to the hit's line and `lines` more on each side,
/// keeping the line breaks that bound them (a pattern may read one as the byte before or after
/// its value). The match holds the hit, so it cannot reach further.
fn clip_to_lines(
    text: &[u8],
    mut window: Range<usize>,
    start: usize,
    end: usize,
    lines: usize,
) -> Range<usize> {
    let mut before = memchr::memrchr_iter(b'\n', &text[window.start..start]);
    if let Some(newline) = before.nth(lines) {
        window.start += newline;
    }
    let mut after = memchr::memchr_iter(b'\n', &text[end..window.end]);
    if let Some(newline) = after.nth(lines) {
        window.end = end + newline + 1;
    }
    window
}

/// Whether a backslash and a letter stand right before `at` (`\n` of raw JSON before a
/// keyword): where a rule with an escape lead may match (see [`rules::Shape::escape_lead`]).
/// Any letter: a try where the pattern's escape does not match costs one failed search.
fn follows_escape(text: &[u8], at: usize) -> bool {
    at >= 2 && text[at - 2] == b'\\' && text[at - 1].is_ascii_alphabetic()
}

/// Shannon entropy of `value` in bits per byte.
pub fn shannon_entropy(value: &[u8]) -> f64 {
    if value.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in value {
        counts[b as usize] += 1;
    }
    let len = value.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACK: &str = r#"
[[rule]]
id = "secret.acme_key"
name = "Acme key"
category = "secret"
severity = "critical"
keywords = ["acme_"]
pattern = '''\b(acme_[a-z0-9]{16})\b'''
[rule.tests]
match = ["acme_q8w7e6r5t4y3u2i1"]

[[rule]]
id = "secret.generic_api_key"
name = "Generic API key"
category = "secret"
severity = "medium"
generic = true
keywords = ["api_key"]
pattern = '''api_key\s{0,4}=\s{0,4}"([a-z0-9_]{8,64})"'''
[rule.tests]
match = ['api_key = "q8w7e6r5t4y3u2i1"']
"#;

    const DIGIT_PACK: &str = r#"
[[rule]]
id = "pii.ref_number"
name = "Reference number"
category = "pii"
severity = "low"
digits = 6
max_digits = 6
digits_after_letter = true
pattern = '''([0-9]{6})'''
[rule.tests]
match = ["ref AB 123456"]
"#;

    #[test]
    fn a_digit_gated_rule_wakes_only_for_runs_of_its_length_after_a_letter() {
        let scanner = Scanner::from_packs(&[("test.toml", DIGIT_PACK)]).expect("pack loads");
        assert_eq!(detectors(&scanner, "ref AB 123456 ok"), ["pii.ref_number"]);
        assert_eq!(detectors(&scanner, "ref AB123456"), ["pii.ref_number"]);
        // The pattern alone matches six digits anywhere; the gate keeps the rule asleep for
        // a seven-digit run and for a run that follows no letter.
        assert!(detectors(&scanner, "ref AB1234567").is_empty());
        assert!(detectors(&scanner, "ref == 123456").is_empty());
    }

    #[test]
    fn a_separator_gated_rule_wakes_only_for_runs_joined_by_its_separator() {
        let pack = DIGIT_PACK
            .replace(
                "max_digits = 6\ndigits_after_letter = true",
                "digits_separator = \"-\"",
            )
            .replace("([0-9]{6})", "([0-9-]{7})");
        let scanner = Scanner::from_packs(&[("test.toml", &pack)]).expect("pack loads");
        assert_eq!(detectors(&scanner, "ref 123-456 ok"), ["pii.ref_number"]);
        // The pattern alone matches seven digits; the gate wants a dash in the run.
        assert!(detectors(&scanner, "ref 1234567 ok").is_empty());
    }

    #[test]
    fn digit_gate_options_without_digits_are_refused() {
        for bad in [
            "keywords = [\"ref\"]\nmax_digits = 6",
            "keywords = [\"ref\"]\ndigits_after_letter = true",
            "digits = 6\nmax_digits = 5",
            "digits = 6\ndigits_separator = \"/\"",
            "keywords = [\"ref\"]\ndigits_separator = \"-\"",
        ] {
            let pack = DIGIT_PACK.replace(
                "digits = 6\nmax_digits = 6\ndigits_after_letter = true",
                bad,
            );
            let error = Scanner::from_packs(&[("test.toml", &pack)]).expect_err(bad);
            assert!(error.to_string().contains("digits"), "{bad}: {error}");
        }
    }

    fn detectors(scanner: &Scanner, text: &str) -> Vec<String> {
        scanner
            .scan(text.as_bytes())
            .iter()
            .map(|f| f.detector.to_string())
            .collect()
    }

    #[test]
    fn a_generic_finding_on_a_specific_rules_value_is_reported_once_as_the_specific_one() {
        let scanner = Scanner::from_packs(&[("test.toml", PACK)]).expect("pack loads");
        assert_eq!(
            detectors(&scanner, r#"api_key = "acme_q8w7e6r5t4y3u2i1""#),
            ["secret.acme_key"]
        );
        // A value no specific rule knows is still reported by the generic rule, and a
        // specific finding elsewhere in the input does not hide it.
        assert_eq!(
            detectors(
                &scanner,
                r#"api_key = "q8w7e6r5t4y3u2i1" and later acme_z9x8c7v6b5n4m3l2"#
            ),
            ["secret.generic_api_key", "secret.acme_key"]
        );
    }

    /// Every rule searched over the whole text: what the windows must reproduce.
    fn scan_text_whole(scanner: &Scanner, text: &[u8]) -> Vec<(Arc<str>, usize, usize)> {
        let mut out = Vec::new();
        for rule in 0..scanner.rules.len() {
            scanner.run_rule(rule, text, 0..text.len(), &mut out);
        }
        sorted_spans(out)
    }

    /// What `scan_text` finds (windows, keyword starts), in the form of [`scan_text_whole`].
    fn scan_text_found(scanner: &Scanner, text: &[u8]) -> Vec<(Arc<str>, usize, usize)> {
        let mut out = Vec::new();
        scanner.scan_text(text, &mut out);
        sorted_spans(out)
    }

    fn sorted_spans(findings: Vec<Finding>) -> Vec<(Arc<str>, usize, usize)> {
        let mut found: Vec<_> = findings
            .into_iter()
            .map(|f| (f.detector, f.span.start, f.span.end))
            .collect();
        found.sort();
        found
    }

    #[test]
    fn windows_around_keyword_hits_find_what_a_whole_input_search_finds() {
        // Every shipped rule's own cases, strewn over lines of code-like filler, several to a
        // line or wrapped the way formatters wrap them: each match must hold a keyword (or a
        // digit run) and lie within the lines its window keeps.
        let scanner = Scanner::builtin().expect("shipped rules load");
        let cases: Vec<&str> = scanner
            .rules
            .iter()
            .flat_map(|r| r.spec.tests.matches.iter().chain(&r.spec.tests.no_match))
            .map(String::as_str)
            .collect();
        let filler = [
            "let key = map.get(&token).unwrap_or_default();",
            "    // see user@example.org or +1 415 555 0100 for details",
            "value = \"plain words and more plain words\"",
            "",
            "\t}",
            "password:",
            "config:\n  api_key:",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for round in 0..48 {
            let mut text = String::new();
            for _ in 0..200 {
                match next(6) {
                    0 | 1 => text.push_str(cases[next(cases.len())]),
                    2 => {
                        text.push_str(cases[next(cases.len())]);
                        text.push(' ');
                        text.push_str(cases[next(cases.len())]);
                    }
                    3 => text.push_str(&format!("  \"field\": \"{}\",", cases[next(cases.len())])),
                    _ => text.push_str(filler[next(filler.len())]),
                }
                text.push_str(["\n", "\r\n", "\n\n", " "][next(4)]);
            }
            let windowed = scan_text_found(&scanner, text.as_bytes());
            let whole = scan_text_whole(&scanner, text.as_bytes());
            let missing: Vec<_> = whole.iter().filter(|f| !windowed.contains(f)).collect();
            let extra: Vec<_> = windowed.iter().filter(|f| !whole.contains(f)).collect();
            let context = |f: &&(Arc<str>, usize, usize)| {
                format!(
                    "{} {:?}",
                    f.0,
                    &text[f.1.saturating_sub(150)..(f.2 + 20).min(text.len())]
                )
            };
            assert!(
                missing.is_empty() && extra.is_empty(),
                "round {round}: missed {:?}, extra {:?}",
                missing.iter().map(context).collect::<Vec<_>>(),
                extra.iter().map(context).collect::<Vec<_>>(),
            );
        }
    }

    #[test]
    fn line_breaks_a_match_can_hold_are_counted_from_the_pattern() {
        let lines = |pattern: &str| {
            let hir = rules::parse_pattern(pattern).expect("pattern parses");
            rules::interior_newlines(&hir, true, true)
        };
        assert_eq!(
            lines(r"(?m)^[ \t]{0,4}key[ \t]*=([a-z]+)[ \t]*\r?$"),
            Some(0)
        );
        // A boundary byte before or after the value may be the line break itself.
        assert_eq!(lines(r"(?:^|[^a-z])(x{4,8})(?:[^a-z]|$)"), Some(0));
        assert_eq!(lines(r"(?:[^a-z]x|y)z"), Some(0));
        assert_eq!(lines(r"x(?:[^a-z]|$)y"), Some(1));
        assert_eq!(lines(r"key\s{0,16}=\s{0,16}(v+)"), Some(32));
        assert_eq!(lines(r"key\s*=(v+)"), None);
        assert_eq!(lines(r"a\nb"), Some(1));
        assert_eq!(lines(r"\nab\n"), Some(0));
        assert_eq!(lines(r"a[\s\S]{0,3}?b|c"), Some(3));
        assert_eq!(lines(r"a(?:\r?\n)?b"), Some(1));
    }

    #[test]
    fn a_rule_led_by_an_escape_is_searched_from_its_keyword_and_finds_its_token_after_one() {
        let pack = r#"
[[rule]]
id = "secret.tkn"
name = "Test token"
category = "secret"
severity = "high"
keywords = ["tkn_"]
pattern = '''(?:\\[nt]|\b)(tkn_[a-z0-9]{8})\b'''
"#;
        let scanner = Scanner::from_packs(&[("test.toml", pack)]).expect("pack loads");
        let rule = &scanner.rules()[0];
        assert!(rule.searched_from_keyword());
        assert!(rule.shape().is_some_and(|shape| shape.escape_lead));
        let token = "tkn_a1b2c3d4";
        let mut found_after_escape = 0;
        for lead in [
            "",
            " ",
            "x",
            r"\n",
            r"\t",
            r"\r",
            r"\x",
            r"\\n",
            r#"{"a":"b\n"#,
            r"\n\n",
        ] {
            for tail in ["", " ", "z", r"\n"] {
                let text = format!("{lead}{token}{tail} and {lead}{token}");
                let whole = scan_text_whole(&scanner, text.as_bytes());
                assert_eq!(
                    scan_text_found(&scanner, text.as_bytes()),
                    whole,
                    "{text:?}"
                );
                if lead.ends_with(r"\n") && tail != "z" {
                    assert_eq!(whole.len(), 2, "{text:?}");
                    found_after_escape += 1;
                }
            }
        }
        assert!(found_after_escape > 0);
        // The shape is read either way round, and only for escapes.
        let led = |pattern: &str| {
            let hir = rules::parse_pattern(pattern).expect("pattern parses");
            rules::after_escape_lead(&hir).is_some()
        };
        assert!(led(r"(?:\\[nt]|\b)(ghp_\w{4})"));
        assert!(led(r"(?:\b|\\n)ghp_"));
        assert!(!led(r"(?:\\[nx]|\b)ghp_"));
        assert!(!led(r"(?:x|\b)ghp_"));
        assert!(!led(r"\b(ghp_\w{4})"));
    }

    #[test]
    fn a_rule_is_searched_from_its_keyword_only_when_every_match_begins_with_one() {
        let from = |pattern: &str, keywords: &[&str]| {
            let hir = rules::parse_pattern(pattern).expect("pattern parses");
            let keywords: Vec<String> = keywords.iter().map(|k| k.to_string()).collect();
            rules::starts_with_keyword(&hir, &keywords)
        };
        assert!(from(r"\b(pat[A-Za-z0-9]{14}\.[a-f0-9]{64})\b", &["pat"]));
        assert!(from(r"(?:ghp|gho)_[A-Za-z0-9]{36}", &["ghp_", "gho_"]));
        assert!(from(r"(?i:sk-ant-)(\w{8})", &["sk-ant-"]));
        // A case-insensitive provider name is too many literals to list; read from the
        // pattern's first items.
        assert!(from(
            r"\b(?i:together)[^\n]{0,40}?(?i:key)=(\w{8})",
            &["together"]
        ));
        assert!(!from(
            r"(?i:together)[^\n]{0,40}?(?i:key)=(\w{8})",
            &["gether"]
        ));
        assert!(!from(r"(?i:togeth)[a-z](?i:r)", &["together"]));
        // A keyword inside the match, not at its start.
        assert!(!from(r"(?:^|[^a-z])pass\w*=(\S+)", &["pass"]));
        assert!(!from(r"x?pat\w{4}", &["pat"]));
        assert!(!from(r"(?:ghp|xyz)_\w{4}", &["ghp_"]));
        assert!(!from(r"\w*key=(\w+)", &["key"]));
        // The shipped packs have rules of both kinds.
        let scanner = Scanner::builtin().expect("shipped rules load");
        let anchored = scanner
            .rules()
            .iter()
            .filter(|rule| rule.searched_from_keyword())
            .count();
        assert!(
            anchored > 50 && anchored < scanner.rules().len() - 20,
            "{anchored}"
        );
    }

    #[test]
    fn keywords_dense_in_prose_find_every_match_near_their_companion() {
        // A provider's name is often an ordinary word (`together`, `sanity`, `voyage`), which
        // prose holds every sentence; such rules first drop the keyword hits with no
        // companion literal (`key`, `token`) in reach. They must still find what a search of
        // the whole input finds: each rule's own cases amid its keyword, dense.
        let scanner = Scanner::builtin().expect("shipped rules load");
        let mut rules_checked = 0;
        for rule in scanner.rules.iter().filter(|rule| {
            rule.searched_from_keyword() && rule.shape().is_some_and(|s| s.companion.is_some())
        }) {
            let keyword = &rule.spec.keywords[0];
            let sentence = format!("We worked {keyword} on the plan, then shipped. ");
            for case in rule
                .spec
                .tests
                .matches
                .iter()
                .chain(&rule.spec.tests.no_match)
            {
                let text = format!(
                    "{}{case}\n{}{case} {}",
                    sentence.repeat(20),
                    sentence.repeat(3),
                    sentence.repeat(20)
                );
                let found = scan_text_found(&scanner, text.as_bytes());
                assert_eq!(found, scan_text_whole(&scanner, text.as_bytes()), "{case}");
            }
            rules_checked += 1;
        }
        assert!(rules_checked >= 30, "{rules_checked}");
        // The companion at the very edge of its reach (40 bytes between name and `key`).
        let hex = "7f53728b949f9ed2bdf7c73c09253d07be93e06d39745f951ab9b02e28b055d6";
        for gap in [0, 39, 40, 41] {
            let text = format!(
                "{}TOGETHER{}KEY={hex} {}",
                "together we go. ".repeat(30),
                "_".repeat(gap),
                "together again. ".repeat(30)
            );
            let found = scan_text_found(&scanner, text.as_bytes());
            assert_eq!(
                found,
                scan_text_whole(&scanner, text.as_bytes()),
                "gap {gap}"
            );
            let together = found
                .iter()
                .filter(|f| &*f.0 == "secret.together_legacy_api_key")
                .count();
            assert_eq!(together, usize::from(gap <= 40), "gap {gap}");
        }
    }

    #[test]
    fn keywords_repeated_to_cost_more_than_a_whole_search_are_searched_whole() {
        // Each `/ABSK...` starts a search that may read 4 KB (the body class takes the next
        // copies in); past twice the input's worth, the rule is searched whole instead, and
        // finds what searching from every keyword finds. Also one long token made of
        // keywords, a real token among look-alikes, and a real key amid its keyword.
        let scanner = Scanner::builtin().expect("shipped rules load");
        let token = format!("ABSKQmVkcm9ja0FQSUtleS{}", "Zk3q9Lx2".repeat(8));
        for text in [
            "/ABSKQmVkcm9ja0FQSUtleS".repeat(3000),
            format!("k={}", "ABSKQmVkcm9ja0FQSUtleS".repeat(150)),
            format!(
                "{} key={token} {}",
                " pat-x".repeat(5000),
                "/path".repeat(5000)
            ),
            // A keyword with a companion, one every eight bytes: searched whole as well.
            format!(
                "{}TOGETHER_API_KEY={} {}",
                "together".repeat(3000),
                "7f53728b949f9ed2bdf7c73c09253d07be93e06d39745f951ab9b02e28b055d6",
                "together".repeat(3000)
            ),
        ] {
            let windowed = scan_text_found(&scanner, text.as_bytes());
            let whole = scan_text_whole(&scanner, text.as_bytes());
            assert_eq!(windowed, whole, "{}", &text[..60]);
        }
    }

    #[test]
    fn a_window_keeps_the_hits_line_and_the_breaks_around_it() {
        let text = b"one\ntwo key three\nfour\nfive";
        let hit = 8..11;
        let all = 0..text.len();
        let clip = |lines| &text[clip_to_lines(text, all.clone(), hit.start, hit.end, lines)];
        assert_eq!(clip(0), b"\ntwo key three\n");
        assert_eq!(clip(1), b"one\ntwo key three\nfour\n");
        assert_eq!(clip(5), text);
        // The window given stays the outer bound.
        assert_eq!(&text[clip_to_lines(text, 6..14, 8, 11, 0)], b"o key th");
    }
}
