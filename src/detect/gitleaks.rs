//! Converts a gitleaks TOML config into an egress-guard rule pack, saying what did not convert.
//!
//! What maps: `id`, `description`, `regex`, `secretGroup`, `entropy`, `keywords`, a rule's
//! `allowlist`/`allowlists` (`regexes` on the secret, `stopwords`) and the global
//! `allowlist`/`allowlists` (added to every rule). What cannot: regexes Rust's `regex` rejects
//! (look-around, backreferences), path-only rules and `paths` allowlists (traffic has no file
//! path), allowlist regexes aimed at the whole line or match rather than the secret.

use serde::{Deserialize, Serialize};

use super::rules::{compile_regex, AllowSpec, RuleSpec, TestSpec};
use super::{Category, Severity};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Config {
    rules: Vec<GitleaksRule>,
    allowlist: Option<Allowlist>,
    allowlists: Vec<Allowlist>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct GitleaksRule {
    id: String,
    description: Option<String>,
    regex: Option<String>,
    secret_group: Option<usize>,
    entropy: Option<f64>,
    keywords: Vec<String>,
    path: Option<String>,
    allowlist: Option<Allowlist>,
    allowlists: Vec<Allowlist>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Allowlist {
    regexes: Vec<String>,
    stopwords: Vec<String>,
    paths: Vec<String>,
    commits: Vec<String>,
    regex_target: Option<String>,
}

/// The result of a conversion: the pack's rules and a note per thing left behind.
#[derive(Debug, Default)]
pub struct Import {
    pub rules: Vec<RuleSpec>,
    /// `(gitleaks rule id, why it was not converted)`.
    pub skipped: Vec<(String, String)>,
    /// Converted, but with a caveat the user should read.
    pub warnings: Vec<String>,
}

#[derive(Serialize)]
struct PackOut<'a> {
    rule: &'a [RuleSpec],
}

impl Import {
    /// The pack as TOML, with a header saying where it came from.
    pub fn to_toml(&self, source: &str) -> Result<String, toml::ser::Error> {
        let body = toml::to_string(&PackOut { rule: &self.rules })?;
        Ok(format!(
            "# Imported from the gitleaks config {source} by `egress-guard rules import-gitleaks`.\n\
             # Add `[rule.tests]` match / no_match cases to each rule: `egress-guard policy test`\n\
             # reports rules without them.\n\n{body}"
        ))
    }
}

/// Converts gitleaks config text. Fails only if it is not TOML of the gitleaks shape.
pub fn convert(text: &str) -> Result<Import, toml::de::Error> {
    let config: Config = toml::from_str(text)?;
    let mut import = Import::default();
    let global: Vec<&Allowlist> = config
        .allowlist
        .iter()
        .chain(config.allowlists.iter())
        .collect();
    let mut used_ids = std::collections::HashSet::new();
    for rule in config.rules {
        let source_id = if rule.id.is_empty() {
            "(no id)".to_string()
        } else {
            rule.id.clone()
        };
        let Some(regex) = rule.regex.clone() else {
            let why = if rule.path.is_some() {
                "path-only rule: traffic has no file path"
            } else {
                "no regex"
            };
            import.skipped.push((source_id, why.into()));
            continue;
        };
        let compiled = match compile_regex(&regex) {
            Ok(compiled) => compiled,
            Err(error) => {
                let msg = error.to_string();
                let why = if msg.contains("look-around") {
                    "regex uses look-around, which Rust's regex does not support".to_string()
                } else if msg.contains("backreference") {
                    "regex uses a backreference, which Rust's regex does not support".to_string()
                } else {
                    format!(
                        "regex does not compile: {}",
                        msg.lines().last().unwrap_or("")
                    )
                };
                import.skipped.push((source_id, why));
                continue;
            }
        };
        let mut id = super::rules::id_part(&rule.id);
        if id.is_empty() {
            id = "unnamed".into();
        }
        let mut id = format!("secret.{id}");
        while !used_ids.insert(id.clone()) {
            id.push_str("_2");
        }
        let groups = compiled.captures_len() - 1;
        let group = match rule.secret_group {
            Some(g) if g > groups => {
                import.skipped.push((
                    source_id,
                    format!("secretGroup {g} but the regex has {groups} group(s)"),
                ));
                continue;
            }
            Some(g) if g > 0 => Some(g),
            _ => None,
        };
        let always = rule.keywords.is_empty();
        if always {
            import.warnings.push(format!(
                "{source_id}: no keywords, so its regex runs on every input (slow); add keywords"
            ));
        }
        if rule.path.is_some() {
            import.warnings.push(format!(
                "{source_id}: `path` condition dropped (traffic has no file path)"
            ));
        }
        let mut allow = AllowSpec::default();
        let local: Vec<&Allowlist> = rule
            .allowlist
            .iter()
            .chain(rule.allowlists.iter())
            .collect();
        for list in local.iter().chain(global.iter()) {
            let target_is_secret = list
                .regex_target
                .as_deref()
                .is_none_or(|t| t.eq_ignore_ascii_case("secret"));
            for pattern in &list.regexes {
                if !target_is_secret {
                    import.warnings.push(format!(
                        "{source_id}: allowlist regex on the {} dropped (only the secret is checked)",
                        list.regex_target.as_deref().unwrap_or("?")
                    ));
                } else if compile_regex(pattern).is_err() {
                    import.warnings.push(format!(
                        "{source_id}: allowlist regex dropped, Rust's regex rejects it: {pattern}"
                    ));
                } else if !allow.patterns.contains(pattern) {
                    allow.patterns.push(pattern.clone());
                }
            }
            for word in &list.stopwords {
                if !allow.stopwords.contains(word) {
                    allow.stopwords.push(word.clone());
                }
            }
            if !list.paths.is_empty() || !list.commits.is_empty() {
                import.warnings.push(format!(
                    "{source_id}: allowlist paths/commits dropped (traffic has neither)"
                ));
            }
        }
        import.rules.push(RuleSpec {
            id,
            name: rule.description.clone().unwrap_or_else(|| rule.id.clone()),
            category: Category::Secret,
            severity: Severity::High,
            keywords: rule.keywords,
            always,
            // gitleaks' catch-alls (`generic-api-key`) yield to specific rules, as ours do.
            generic: rule.id.starts_with("generic"),
            digits: None,
            max_digits: None,
            digits_after_letter: false,
            digits_separator: None,
            pattern: regex,
            group,
            entropy: rule.entropy,
            validator: None,
            invalid_severity: None,
            min_len: None,
            max_len: None,
            description: Some(format!("Imported from gitleaks rule `{}`.", rule.id)),
            references: Vec::new(),
            allow,
            tests: TestSpec::default(),
        });
    }
    import.warnings.dedup();
    Ok(import)
}
