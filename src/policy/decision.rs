//! The record of one decision, with every field the audit contract asks for, and the sink it is
//! written to before the request is let go.
//!
//! There is no audit chain writer yet; [`TracingSink`] writes each decision as one JSON log
//! event. The chain fields (`v`, `seq`, `prev`) belong to the writer, not to the decision.
//! A decision never holds a detected value: findings carry a keyed fingerprint instead.

use serde::Serialize;

use crate::detect::{Category, Severity};

use super::model::Action;

/// One decision, as the audit log will record it.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// The decision id (`x-egress-guard-decision`).
    pub id: String,
    /// RFC 3339 UTC.
    pub ts: String,
    /// `allow`, `monitor`, `redact`, `pseudonymize` or `block`.
    pub action: &'static str,
    pub host: String,
    pub method: String,
    /// Path and query, with query values that could be secret masked.
    pub path: String,
    pub provider: &'static str,
    pub model: Option<String>,
    pub client: &'static str,
    pub user: Option<String>,
    pub device: Option<String>,
    pub policy: PolicyRef,
    pub findings: Vec<FindingRecord>,
    /// The rule that decided the request's action, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why the request was blocked or let through without inspection, in plain words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where the request was sent instead of its host (a local model), if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// For trial-stage rules: what the request would have got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would: Option<&'static str>,
    /// Set when the decision is about one message of an inspected WebSocket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket: Option<WebSocketRef>,
}

/// Which WebSocket message a decision is about: each client message on an inspected
/// WebSocket is decided (and recorded) on its own, tied to the upgrade that opened the
/// connection.
#[derive(Debug, Clone, Serialize)]
pub struct WebSocketRef {
    /// The decision id of the upgrade request.
    pub connection: String,
    /// The message's position among the connection's client messages, from 1.
    pub message: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyRef {
    pub name: String,
    pub digest: String,
}

/// One finding in a decision.
#[derive(Debug, Clone, Serialize)]
pub struct FindingRecord {
    pub detector: String,
    pub category: Category,
    pub severity: Severity,
    /// JSON path into the request (`messages[0].content`), `query.<name>` or `header.<name>`.
    pub location: String,
    /// What was done to this finding.
    pub action: &'static str,
    /// Keyed fingerprint (HMAC-SHA256, local key) of the value: the same value gives the same
    /// fingerprint on this machine, and nothing can be learned from it elsewhere.
    pub fp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// For a trial-stage rule: the action it would have taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would: Option<&'static str>,
}

/// The contract's audit action for a policy action. Sending to a local model is recorded as
/// `monitor` (forwarded unchanged, recorded) with the `upstream` field naming the endpoint.
pub fn audit_action(action: Action) -> &'static str {
    match action {
        Action::Local => "monitor",
        other => other.as_str(),
    }
}

/// Why a decision could not be recorded.
#[derive(Debug, thiserror::Error)]
#[error("the audit record could not be written: {0}")]
pub struct AuditError(pub String);

/// Where decisions go, before the request they decide leaves. A failing sink blocks the
/// request: an unrecorded egress is exactly what this tool exists to prevent.
pub trait AuditSink: Send + Sync + 'static {
    fn record(&self, decision: &Decision) -> Result<(), AuditError>;
}

/// Writes each decision as one structured log event (target `egress_guard::audit`).
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingSink;

impl AuditSink for TracingSink {
    fn record(&self, decision: &Decision) -> Result<(), AuditError> {
        let line = serde_json::to_string(decision).map_err(|e| AuditError(e.to_string()))?;
        tracing::info!(target: "egress_guard::audit", decision = %line, "decision");
        Ok(())
    }
}

/// `egress_guard_findings_total{detector,action}`, registered on the admin registry at first
/// use. Labels are detector ids and actions, never values.
pub fn findings_counter() -> &'static prometheus::IntCounterVec {
    static COUNTER: std::sync::OnceLock<prometheus::IntCounterVec> = std::sync::OnceLock::new();
    COUNTER.get_or_init(|| {
        let counter = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "egress_guard_findings_total",
                "Findings in inspected requests, by detector and the action taken on them.",
            ),
            &["detector", "action"],
        )
        .expect("static metric definition is valid");
        let _ = crate::admin::metrics::metrics()
            .registry
            .register(Box::new(counter.clone()));
        counter
    })
}

/// Who and where, for the audit record (the OS user and the machine's host name).
pub fn user_and_device() -> (Option<String>, Option<String>) {
    static CACHE: std::sync::OnceLock<(Option<String>, Option<String>)> =
        std::sync::OnceLock::new();
    CACHE
        .get_or_init(|| {
            let user = std::env::var("USER")
                .or_else(|_| std::env::var("USERNAME"))
                .ok();
            let device = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| {
                    std::fs::read_to_string("/etc/hostname")
                        .ok()
                        .map(|h| h.trim().to_owned())
                })
                .filter(|h| !h.is_empty());
            (user, device)
        })
        .clone()
}

/// Now as RFC 3339 UTC with milliseconds (`2026-11-26T12:00:00.123Z`).
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_418), (2025, 11, 26));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(now_rfc3339().len(), 24);
    }
}
