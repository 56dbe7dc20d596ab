//! Detection: finds secrets, personal data and an organisation's own customer data in bytes.
//!
//! The engine never hard-codes a provider: rules are data (`policies/rules/*.toml`), each with
//! its own examples and counter-examples. A keyword prefilter (aho-corasick) decides which rules'
//! regexes run at all, so the cost of a scan grows with what is *in* the input, not with the
//! number of rules.
//!
//! This module must never log, print or store a detected value: callers get spans, not strings.

use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The broad class of a finding; policies match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Secret,
    Pii,
    Custom,
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

/// One detected value: which detector found it and where, never the value itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable dotted detector id, e.g. `secret.aws_access_key_id`.
    pub detector: Arc<str>,
    pub category: Category,
    pub severity: Severity,
    /// Byte offsets of the value in the input as given to [`Scanner::scan`].
    pub span: Range<usize>,
}

/// Scans bytes with a compiled rule set. Cheap to share (`Arc`), immutable once built.
///
/// Placeholder until the detection engine lands: finds nothing.
#[derive(Debug, Default)]
pub struct Scanner {}

impl Scanner {
    /// The rule set shipped inside the binary (`policies/rules/*.toml`).
    pub fn builtin() -> Self {
        Self::default()
    }

    /// Every finding in `input`, ordered by start offset. Never panics, whatever the bytes.
    pub fn scan(&self, _input: &[u8]) -> Vec<Finding> {
        Vec::new()
    }
}
