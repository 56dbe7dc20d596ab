//! The audit trail. Never writes a detected value, whole or in part.

use std::fmt;

/// Names one decision: the audit record's `id` and the `x-egress-guard-decision` header.
///
/// UUIDv7, so ids sort by time and a reviewer can find a decision in the log from the header an
/// agent printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecisionId(uuid::Uuid);

impl DecisionId {
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }
}

impl Default for DecisionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for DecisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The response header that carries the decision id.
pub const DECISION_HEADER: &str = "x-egress-guard-decision";
