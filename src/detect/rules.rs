//! Rule packs: the TOML model of `policies/rules/*.toml` (see `FORMAT.md`) and its loader.
//!
//! Every error names the file and the line, because the person reading it is fixing a TOML file,
//! not reading Rust. Loading never panics on a malformed pack: it returns a [`RuleError`].

use std::collections::HashMap;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

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

/// A rule ready to run: the spec plus its compiled pattern, allowlist and validator.
#[derive(Debug)]
pub struct Rule {
    pub spec: RuleSpec,
    /// Where it was defined, for error messages and `policy test` reports.
    pub origin: Origin,
    pub regex: regex::bytes::Regex,
    pub group: usize,
    pub validator: Option<Validator>,
    pub allow_values: Vec<Vec<u8>>,
    pub allow_patterns: Vec<regex::bytes::Regex>,
    pub stopwords: Vec<Vec<u8>>,
    /// Lower-cased keywords, for the prefilter.
    pub keywords: Vec<Vec<u8>>,
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
        rules.push(compile(spec, origin)?);
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

fn compile(spec: RuleSpec, origin: Origin) -> Result<Rule, RuleError> {
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
    if spec.keywords.is_empty() && !spec.always {
        return Err(invalid(
            &origin,
            &id,
            "needs `keywords` (or `always = true`, which runs its regex on every input)".into(),
        ));
    }
    if spec.keywords.iter().any(|k| k.is_empty()) {
        return Err(invalid(&origin, &id, "empty keyword".into()));
    }
    let regex = compile_regex(&spec.pattern).map_err(|error| RuleError::Regex {
        file: origin.file.clone(),
        line: origin.line,
        rule: id.clone(),
        msg: error.to_string(),
    })?;
    let groups = regex.captures_len() - 1;
    let group = spec.group.unwrap_or(if groups > 0 { 1 } else { 0 });
    if group > groups {
        return Err(invalid(
            &origin,
            &id,
            format!("group {group} but the pattern has {groups} capture group(s)"),
        ));
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
    let mut allow_patterns = Vec::with_capacity(spec.allow.patterns.len());
    for pattern in &spec.allow.patterns {
        allow_patterns.push(compile_regex(pattern).map_err(|error| RuleError::Regex {
            file: origin.file.clone(),
            line: origin.line,
            rule: id.clone(),
            msg: format!("allow pattern: {error}"),
        })?);
    }
    Ok(Rule {
        regex,
        group,
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

/// 1-based line and column of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, col)
}

/// The span of a value inside a rule's match, if the rule's group took part in it.
pub(crate) fn value_span(
    captures: &regex::bytes::Captures<'_>,
    group: usize,
) -> Option<Range<usize>> {
    captures.get(group).map(|m| m.range())
}
