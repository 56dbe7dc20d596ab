//! Reading a policy from a directory (or the copy embedded in the binary) and refusing it, with
//! file:line:column, when anything in it is wrong.
//!
//! A policy directory holds `policy.toml` (or `default.toml`), optional `rules/*.toml` rule packs
//! (added to the built-in ones) and optional `tests/*.toml` files of `[[case]]`s.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::inspect::Provider;

use super::model::{Action, Case, Policy, Rule};
use super::Detect;

/// The shipped default policy.
pub const DEFAULT_POLICY: &str = include_str!("../../policies/default.toml");

/// Why a policy directory could not be loaded. Every variant names the file (and line where
/// there is one), because the person reading it is fixing a TOML file, not reading Rust.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}:{line}:{col}: {msg}")]
    Syntax {
        file: PathBuf,
        line: usize,
        col: usize,
        msg: String,
    },
    #[error("{file}: {msg}")]
    Invalid { file: PathBuf, msg: String },
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{dir}: no policy.toml (or default.toml) in this directory")]
    Missing { dir: PathBuf },
    #[error("{0}")]
    Rules(String),
}

/// A policy ready to decide: parsed, validated, with its scanner and resolved keys.
pub struct LoadedPolicy {
    pub policy: Policy,
    /// Hex SHA-256 over the policy and rule files, recorded in every decision.
    pub digest: String,
    pub scanner: Arc<dyn Detect>,
    /// Keys the proxy injects, by provider (values never logged).
    pub injected_keys: HashMap<Provider, String>,
    /// The policy's own test cases (from the policy file and `tests/*.toml`).
    pub cases: Vec<Case>,
    /// Where it came from, for messages.
    pub source: PathBuf,
}

impl fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("name", &self.policy.name)
            .field("digest", &self.digest)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Builds the scanner a policy runs, given the policy directory (`None`: the embedded policy).
pub type ScannerFactory = dyn Fn(Option<&Path>) -> Result<Arc<dyn Detect>, String> + Send + Sync;

/// The real detection engine: the built-in rules, plus the directory's `rules/` packs and
/// `dictionaries/`.
pub fn builtin_scanner(policy_dir: Option<&Path>) -> Result<Arc<dyn Detect>, String> {
    let scanner = match policy_dir {
        Some(dir) => crate::detect::Scanner::from_dir(dir),
        None => crate::detect::Scanner::builtin(),
    };
    scanner
        .map(|s| Arc::new(s) as Arc<dyn Detect>)
        .map_err(|e| e.to_string())
}

/// The policy embedded in the binary.
pub fn load_embedded(scanners: &ScannerFactory) -> Result<LoadedPolicy, PolicyError> {
    let file = PathBuf::from("policies/default.toml");
    let policy = parse(&file, DEFAULT_POLICY)?;
    let scanner = scanners(None).map_err(PolicyError::Rules)?;
    // The embedded rules are part of the build, so the version stands for them.
    let version = concat!("egress-guard ", env!("CARGO_PKG_VERSION"));
    finish(
        policy,
        digest(&[DEFAULT_POLICY.as_bytes(), version.as_bytes()]),
        scanner,
        Vec::new(),
        file,
    )
}

/// The policy in `dir`.
pub fn load_dir(dir: &Path, scanners: &ScannerFactory) -> Result<LoadedPolicy, PolicyError> {
    let own_file = ["policy.toml", "default.toml"]
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file());
    let rules_dir = dir.join("rules");
    let dictionaries_dir = dir.join("dictionaries");
    // A directory with only rule packs or dictionaries extends the shipped policy: a team adding
    // its own detectors should not have to copy (and then maintain) the whole default policy.
    let (file, text) = match own_file {
        Some(file) => {
            let text = read(&file)?;
            (file, text)
        }
        None if rules_dir.is_dir() || dictionaries_dir.is_dir() => (
            PathBuf::from("policies/default.toml"),
            DEFAULT_POLICY.to_owned(),
        ),
        None => {
            return Err(PolicyError::Missing {
                dir: dir.to_owned(),
            })
        }
    };
    let policy = parse(&file, &text)?;
    let mut digested = vec![text.clone().into_bytes()];
    for extra in [&rules_dir, &dictionaries_dir] {
        if !extra.is_dir() {
            continue;
        }
        for path in sorted_files(extra, |p| p.is_file())? {
            digested.push(
                path.file_name()
                    .map_or(Vec::new(), |n| n.as_encoded_bytes().to_vec()),
            );
            digested.push(std::fs::read(&path).map_err(|source| PolicyError::Io {
                file: path.clone(),
                source,
            })?);
        }
    }
    // The scanner reads `DIR/rules/*.toml` and `DIR/dictionaries/` itself: hand it the policy
    // directory, not the rules folder.
    let scanner = scanners(Some(dir)).map_err(PolicyError::Rules)?;
    let mut cases = Vec::new();
    let tests_dir = dir.join("tests");
    if tests_dir.is_dir() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct CaseFile {
            #[serde(default, rename = "case")]
            cases: Vec<Case>,
        }
        for path in toml_files(&tests_dir)? {
            let text = read(&path)?;
            let file: CaseFile =
                toml::from_str(&text).map_err(|e| syntax(&path, &text, e.span(), e.message()))?;
            cases.extend(file.cases);
        }
    }
    let refs: Vec<&[u8]> = digested.iter().map(Vec::as_slice).collect();
    finish(policy, digest(&refs), scanner, cases, file)
}

fn finish(
    mut policy: Policy,
    digest: String,
    scanner: Arc<dyn Detect>,
    mut cases: Vec<Case>,
    source: PathBuf,
) -> Result<LoadedPolicy, PolicyError> {
    let injected_keys = resolve_keys(&policy, &source)?;
    let mut all_cases = std::mem::take(&mut policy.cases);
    all_cases.append(&mut cases);
    Ok(LoadedPolicy {
        policy,
        digest,
        scanner,
        injected_keys,
        cases: all_cases,
        source,
    })
}

fn read(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
        file: path.to_owned(),
        source,
    })
}

fn toml_files(dir: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    sorted_files(dir, |p| p.extension().is_some_and(|x| x == "toml"))
}

/// The entries of `dir` that `keep` accepts, in name order (so a digest or a load order never
/// depends on the file system's).
fn sorted_files(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>, PolicyError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PolicyError::Io {
        file: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| keep(p))
        .collect();
    files.sort();
    Ok(files)
}

fn digest(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    hex::encode(ctx.finish().as_ref())
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, col)
}

fn syntax(file: &Path, text: &str, span: Option<Range<usize>>, msg: &str) -> PolicyError {
    let (line, col) = line_col(text, span.map_or(0, |s| s.start));
    PolicyError::Syntax {
        file: file.to_owned(),
        line,
        col,
        msg: msg.trim().to_owned(),
    }
}

/// Parses and validates one policy file.
pub fn parse(file: &Path, text: &str) -> Result<Policy, PolicyError> {
    let policy: Policy =
        toml::from_str(text).map_err(|e| syntax(file, text, e.span(), e.message()))?;
    validate(file, text, &policy)?;
    Ok(policy)
}

fn validate(file: &Path, text: &str, policy: &Policy) -> Result<(), PolicyError> {
    let invalid = |msg: String| PolicyError::Invalid {
        file: file.to_owned(),
        msg,
    };
    let at = |rule: &Rule, msg: String| syntax(file, text, Some(rule.name.span()), &msg);
    if policy.name.trim().is_empty() {
        return Err(invalid("`name` must not be empty".into()));
    }
    for (i, destination) in policy.destinations.iter().enumerate() {
        if destination.hosts.is_empty() {
            return Err(invalid(format!("destination #{} lists no hosts", i + 1)));
        }
    }
    let mut names = std::collections::HashSet::new();
    for rule in &policy.rules {
        let name = rule.name.get_ref();
        if name.trim().is_empty() {
            return Err(at(rule, "a rule's `name` must not be empty".into()));
        }
        if !names.insert(name.clone()) {
            return Err(at(rule, format!("two rules are named `{name}`")));
        }
        match (&rule.action, &rule.local) {
            (Action::Local, None) => {
                return Err(at(
                    rule,
                    format!("rule `{name}` has action \"local\" but no `local = \"<endpoint>\"`"),
                ))
            }
            (Action::Local, Some(local))
                if !policy.locals.iter().any(|l| &l.name == local.get_ref()) =>
            {
                return Err(syntax(
                    file,
                    text,
                    Some(local.span()),
                    &format!(
                        "rule `{name}` names local endpoint `{}`, which no [[local]] defines",
                        local.get_ref()
                    ),
                ));
            }
            (Action::Local, Some(_)) => {}
            (_, Some(local)) => {
                return Err(syntax(
                    file,
                    text,
                    Some(local.span()),
                    &format!("rule `{name}` sets `local` but its action is not \"local\""),
                ))
            }
            _ => {}
        }
    }
    for local in &policy.locals {
        let ok = local.url.parse::<http::Uri>().ok().is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
        });
        if !ok {
            return Err(invalid(format!(
                "local endpoint `{}`: `url` must be an http(s) URL, not `{}`",
                local.name, local.url
            )));
        }
    }
    let keys = &policy.sanctioned_keys;
    for fp in &keys.fingerprints {
        if fp.len() != 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(format!(
                "sanctioned_keys.fingerprints: `{fp}` is not a hex HMAC-SHA256 (64 hex digits)"
            )));
        }
    }
    if !keys.fingerprints.is_empty() && keys.salt.is_empty() {
        return Err(invalid(
            "sanctioned_keys: `salt` (the HMAC key of the fingerprints) is required".into(),
        ));
    }
    for inject in &keys.inject {
        if inject.env.is_some() == inject.file.is_some() {
            return Err(invalid(
                "sanctioned_keys.inject: give exactly one of `env` or `file`".into(),
            ));
        }
    }
    Ok(())
}

fn resolve_keys(policy: &Policy, file: &Path) -> Result<HashMap<Provider, String>, PolicyError> {
    let mut keys = HashMap::new();
    for inject in &policy.sanctioned_keys.inject {
        let value = match (&inject.env, &inject.file) {
            (Some(var), _) => std::env::var(var).map_err(|_| PolicyError::Invalid {
                file: file.to_owned(),
                msg: format!("sanctioned_keys.inject: environment variable `{var}` is not set"),
            })?,
            (_, Some(path)) => std::fs::read_to_string(path).map_err(|e| PolicyError::Invalid {
                file: file.to_owned(),
                msg: format!("sanctioned_keys.inject: cannot read `{path}`: {e}"),
            })?,
            _ => continue,
        };
        keys.insert(inject.provider.into(), value.trim().to_owned());
    }
    Ok(keys)
}

/// The fingerprint of an API key as listed under `sanctioned_keys.fingerprints`.
pub fn key_fingerprint(salt: &str, key: &str) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, salt.as_bytes());
    hex::encode(ring::hmac::sign(&k, key.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("p/policy.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_shipped_default_parses() {
        let policy = parse(Path::new("policies/default.toml"), DEFAULT_POLICY).unwrap();
        assert_eq!(policy.name, "default");
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = err("name = \"x\"\n\n[[rule]]\nname = \"r\"\naction = \"explode\"\n");
        assert!(e.starts_with("p/policy.toml:5:10:"), "{e}");
        assert!(e.contains("explode"), "{e}");
        let e =
            err("name = \"x\"\n[[rule]]\nname = \"r\"\naction = \"block\"\nseverity = \"hgh\"\n");
        assert!(e.starts_with("p/policy.toml:5:"), "{e}");
        let e = err("name = \"x\"\nbogus = 1\n");
        assert!(e.starts_with("p/policy.toml:2:1:"), "{e}");
        let e = err("name = \"x\"\n[[rule]]\nname = \"r\"\naction = \"local\"\n");
        assert!(e.starts_with("p/policy.toml:3:8:"), "{e}");
        let e = err("name = \"x\"\n[[rule]]\nname = \"r\"\naction = \"block\"\n[[rule]]\nname = \"r\"\naction = \"allow\"\n");
        assert!(e.contains("two rules are named `r`"), "{e}");
        assert!(
            err("name = \"x\"\n[sanctioned_keys]\nfingerprints = [\"abc\"]\n").contains("64 hex")
        );
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_col("ab\ncdé\nx", 8), (3, 1));
        assert_eq!(line_col("ab\ncdé\nx", 5), (2, 3));
    }

    #[test]
    fn fingerprints_are_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            key_fingerprint("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
