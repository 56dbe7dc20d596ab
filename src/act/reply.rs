//! Answers the proxy gives itself, instead of forwarding: blocks, limits and upstream failures.
//!
//! Each is shaped like the provider's own errors, because the agent in front of the user only
//! shows a message it can parse. The message says what happened in plain words and never
//! contains a detected value.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use serde_json::json;

use crate::audit::{DecisionId, DECISION_HEADER};
use crate::inspect::Provider;

/// An error answer the proxy sends on its own behalf.
#[derive(Debug, Clone)]
pub struct ErrorReply {
    pub status: StatusCode,
    /// Machine-readable reason, e.g. `blocked`, `body_too_large`, `upstream_unreachable`.
    pub code: &'static str,
    /// What the user reads: what was found or what failed, and what to do.
    pub message: String,
    pub decision_id: Option<DecisionId>,
}

impl ErrorReply {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            decision_id: None,
        }
    }

    pub fn with_decision(mut self, id: DecisionId) -> Self {
        self.decision_id = Some(id);
        self
    }

    /// The reply as `provider` would have shaped it.
    pub fn into_response(self, provider: Provider) -> Response<Bytes> {
        let message = match self.decision_id {
            Some(id) => format!("{} (egress-guard decision {id})", self.message),
            None => self.message,
        };
        let body = match provider {
            Provider::Anthropic => json!({
                "type": "error",
                "error": { "type": anthropic_error_type(self.status), "message": message },
            }),
            // Gemini's clients read `error.message` and `error.status`; the extra `status` keeps
            // them happy without leaving the contract's shape.
            Provider::Gemini => json!({
                "error": {
                    "message": message,
                    "type": "egress_guard_blocked",
                    "code": self.code,
                    "status": google_status(self.status),
                },
            }),
            Provider::OpenAi | Provider::Bedrock | Provider::Generic => json!({
                "error": { "message": message, "type": "egress_guard_blocked", "code": self.code },
            }),
        };
        let mut response = Response::new(Bytes::from(body.to_string()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if let Some(id) = self.decision_id {
            if let Ok(value) = http::HeaderValue::from_str(&id.to_string()) {
                headers.insert(DECISION_HEADER, value);
            }
        }
        response
    }
}

fn anthropic_error_type(status: StatusCode) -> &'static str {
    match status {
        StatusCode::FORBIDDEN => "permission_error",
        StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
        StatusCode::BAD_REQUEST => "invalid_request_error",
        StatusCode::GATEWAY_TIMEOUT => "timeout_error",
        _ => "api_error",
    }
}

fn google_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::FORBIDDEN => "PERMISSION_DENIED",
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::BAD_REQUEST => "INVALID_ARGUMENT",
        StatusCode::GATEWAY_TIMEOUT => "DEADLINE_EXCEEDED",
        _ => "UNAVAILABLE",
    }
}
