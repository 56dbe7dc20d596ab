//! `settings.websocket = "inspect"`: each client message of a WebSocket to an inspected host is
//! decided like a request body (read, detect, rules, act, audit), one decision per message, tied
//! to the upgrade's decision id.
//!
//! How a message is read: a `response.create` on OpenAI's Responses socket
//! (`wss://api.openai.com/v1/responses`, Codex CLI) carries a Responses API body at its top
//! level and is read as one; every other message (Realtime events, other providers' sockets,
//! plain text) is read generically, every string in it scanned, so nothing in an event type we
//! do not know goes unread.
//!
//! What each action means on a socket:
//! - allow / monitor: the message goes on unchanged (byte-identical).
//! - redact: the rewritten message goes on.
//! - pseudonymize: the message goes on with surrogates, and the connection remembers them: the
//!   upstream's later text messages get the originals back. A server event on these sockets is
//!   one JSON document, the same as one SSE event's data, so it goes through the same restore
//!   as a streamed HTTP response: a surrogate split across two `delta` events is held back and
//!   restored whole (the held-back tail may then arrive as an event of its own).
//! - block (and any failure to inspect, unless the destination is `fail_open`): nothing of the
//!   message leaves; the client gets a last `error` event shaped like the provider's own
//!   errors, then close code 1008 with a short reason (decision id, detector, rule; never the
//!   value), and the upstream connection is closed too.
//!
//! Nothing here logs or records a detected value.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Uri};
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::act::pseudonymize::{RestoreFilter, RestoreTable};
use crate::inspect::Provider;
use crate::proxy::gate::{
    MessageInspector, MessageVerdict, Outbound, ResponseFilter, Verdict, WsMessage, WsRefusal,
};
use crate::proxy::websocket::MAX_CLOSE_REASON;

use super::decision::Decision;
use super::gate::{find_destination, provider_of, MessageOf, PolicyGate};

/// What the policy needs to know about a WebSocket connection, taken from its upgrade request.
#[derive(Debug, Clone)]
pub struct Connection {
    host: String,
    port: u16,
    /// The upgrade's path, without its query (the query was checked with the upgrade).
    path: Uri,
    client: &'static str,
}

impl Connection {
    pub fn of(upgrade: &Outbound, client: &'static str) -> Self {
        let path = upgrade
            .parts
            .uri
            .path()
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"));
        Self {
            host: upgrade.host.clone(),
            port: upgrade.port,
            path,
            client,
        }
    }
}

/// Decides each client message of one inspected WebSocket with the policy in force when it
/// arrives, and restores the connection's surrogates in the upstream's text messages.
pub struct MessageGate {
    gate: PolicyGate,
    connection: Connection,
    /// The upgrade's decision id.
    upgrade_id: String,
    sent: u64,
    restore: RestoreTable,
    /// Restores server events; built from `restore` when it grows, not per message.
    filter: Option<RestoreFilter>,
    /// Events a replaced filter still held back, sent before the next server event.
    backlog: Vec<String>,
}

impl MessageGate {
    pub fn new(gate: PolicyGate, connection: Connection, upgrade_id: String) -> Self {
        Self {
            gate,
            connection,
            upgrade_id,
            sent: 0,
            restore: RestoreTable::default(),
            filter: None,
            backlog: Vec::new(),
        }
    }

    /// The provider whose API the connection's host speaks (policy may say so).
    fn provider(&self) -> Provider {
        let loaded = self.gate.policy();
        let host = &self.connection.host;
        provider_of(find_destination(&loaded.policy, host), host)
    }
}

impl MessageInspector for MessageGate {
    fn client_message(&mut self, message: WsMessage) -> MessageVerdict {
        self.sent += 1;
        let text = matches!(message, WsMessage::Text(_));
        let body = match message {
            WsMessage::Text(text) => Bytes::from(text),
            WsMessage::Binary(bytes) => bytes,
        };
        let provider = self.provider();
        let reader = reader_for(provider, self.connection.path.path(), &body);
        let mut parts = http::Request::new(()).into_parts().0;
        parts.method = Method::GET;
        parts.uri = self.connection.path.clone();
        let content_type = if body.trim_ascii_start().starts_with(b"{") {
            "application/json"
        } else if text {
            "text/plain; charset=utf-8"
        } else {
            "application/octet-stream"
        };
        parts
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        let outbound = Outbound {
            host: self.connection.host.clone(),
            port: self.connection.port,
            parts,
            body,
        };
        let of = MessageOf {
            connection: &self.upgrade_id,
            index: self.sent,
            client: self.connection.client,
            reader,
        };
        let decided = self.gate.decide_in(outbound, Some(&of));
        match decided.verdict {
            Verdict::Forward(forward) => {
                if !decided.restore.is_empty() {
                    self.restore.merge(decided.restore);
                    let replaced = self.filter.replace(restorer(&self.restore, SSE));
                    if let Some(mut old) = replaced {
                        self.backlog.extend(events(&old.finish()));
                    }
                }
                if !text {
                    return MessageVerdict::Forward(WsMessage::Binary(forward.body));
                }
                match String::from_utf8(forward.body.to_vec()) {
                    Ok(text) => MessageVerdict::Forward(WsMessage::Text(text)),
                    // A rewrite only ever puts ASCII into UTF-8 text; if that ever failed, the
                    // message must not go out half-understood.
                    Err(_) => MessageVerdict::Close(WsRefusal {
                        reason: format!(
                            "egress-guard could not rewrite a message (decision {}); nothing was sent",
                            decided.decision.id
                        ),
                        notice: None,
                    }),
                }
            }
            Verdict::Respond(response) => MessageVerdict::Close(WsRefusal {
                reason: close_reason(&decided.decision),
                notice: error_event(
                    response.body(),
                    provider == Provider::OpenAi
                        && self.connection.path.path().ends_with("/responses"),
                    &decided.decision.id,
                ),
            }),
        }
    }

    fn upstream_text(&mut self, text: String) -> Vec<String> {
        let Some(filter) = self.filter.as_mut() else {
            return vec![text];
        };
        let mut out = std::mem::take(&mut self.backlog);
        let one_line_json = text.trim_start().starts_with('{') && !text.contains(['\n', '\r']);
        if one_line_json {
            // As the data of one SSE event, so streamed deltas are restored as over HTTP.
            let event = filter.data(Bytes::from(format!("data: {text}\n\n")));
            out.extend(events(&event));
        } else {
            // Anything else is restored whole, after whatever the event restore held back.
            out.extend(events(&filter.finish()));
            let content_type = if text.trim_start().starts_with(['{', '[']) {
                "application/json"
            } else {
                "text/plain"
            };
            let mut whole = restorer(&self.restore, content_type);
            let mut restored = whole.data(Bytes::from(text)).to_vec();
            restored.extend_from_slice(&whole.finish());
            out.push(utf8(restored));
        }
        out
    }
}

const SSE: &str = "text/event-stream";

/// A restore filter reading its input as `content_type`.
fn restorer(table: &RestoreTable, content_type: &'static str) -> RestoreFilter {
    let mut filter = RestoreFilter::new(table);
    let mut head = http::Response::new(()).into_parts().0;
    head.headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    filter.head(&mut head);
    filter
}

/// The events an SSE restore wrote (`data: ...` each, one line of JSON), as messages.
fn events(sse: &[u8]) -> Vec<String> {
    sse.split(|&b| b == b'\n')
        .filter_map(|line| line.strip_prefix(b"data:"))
        .map(|data| utf8(data.strip_prefix(b" ").unwrap_or(data).to_vec()))
        .collect()
}

/// Originals were text in a UTF-8 message, so a restored message is UTF-8 too.
fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// How a message is read: the provider's own reading for a body of its API, else generic.
pub fn reader_for(provider: Provider, path: &str, body: &[u8]) -> Provider {
    if provider == Provider::OpenAi && path.ends_with("/responses") && is_response_create(body) {
        Provider::OpenAi
    } else {
        Provider::Generic
    }
}

/// A Responses socket's `response.create` with the request body at its top level.
fn is_response_create(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
        input: Option<IgnoredAny>,
        instructions: Option<IgnoredAny>,
        /// The Realtime shape nests the body here; then it is read generically.
        response: Option<IgnoredAny>,
    }
    serde_json::from_slice::<Head>(body).is_ok_and(|head| {
        head.kind.as_deref() == Some("response.create")
            && head.response.is_none()
            && (head.input.is_some() || head.instructions.is_some())
    })
}

/// The close frame's reason: the decision id (what finds the audit record), then what decided
/// it, each part only if it still fits the 123 bytes a close reason holds (the error event sent
/// before it carries the whole message). Never a value.
fn close_reason(decision: &Decision) -> String {
    let mut reason = format!("egress-guard blocked it (decision {})", decision.id);
    let detector = decision.findings.iter().find(|f| f.action == "block");
    let parts = [
        detector.map(|f| format!(": {}", f.detector)),
        decision.rule.as_ref().map(|rule| format!(", rule {rule}")),
    ];
    for part in parts.into_iter().flatten() {
        if reason.len() + part.len() <= MAX_CLOSE_REASON {
            reason.push_str(&part);
        }
    }
    reason
}

/// The last server event the client gets before the close, so an agent shows its user why.
///
/// On OpenAI's Responses socket it is a `response.failed` whose error code is `invalid_prompt`:
/// that is what the Responses API sends for a request it refuses, and what Codex CLI shows its
/// user at once instead of retrying (a bare close makes it reconnect and resend the message five
/// times, each blocked again, then fall back to HTTPS). Everywhere else it is the provider-shaped
/// error the HTTP path would have answered, with `"type": "error"` at its top level, which is how
/// the Realtime API announces an error (Anthropic's error body has it already).
fn error_event(body: &Bytes, responses_socket: bool, decision_id: &str) -> Option<String> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    if responses_socket {
        let error = value.get("error")?;
        let event = serde_json::json!({
            "type": "response.failed",
            "response": {
                "id": format!("resp_egress_guard_{}", decision_id.replace('-', "")),
                "object": "response",
                "status": "failed",
                "output": [],
                "error": {
                    "code": "invalid_prompt",
                    "type": error.get("type").cloned().unwrap_or_default(),
                    "message": error.get("message").cloned().unwrap_or_default(),
                },
            },
        });
        return serde_json::to_string(&event).ok();
    }
    let object = value.as_object_mut()?;
    object
        .entry("type")
        .or_insert_with(|| serde_json::Value::from("error"));
    serde_json::to_string(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_top_level_response_create_is_read_as_a_responses_body() {
        let responses = br#"{"type":"response.create","model":"gpt-5","input":[]}"#;
        let nested = br#"{"type":"response.create","response":{"instructions":"x"}}"#;
        let item = br#"{"type":"conversation.item.create","item":{}}"#;
        let path = "/v1/responses";
        assert_eq!(
            reader_for(Provider::OpenAi, path, responses),
            Provider::OpenAi
        );
        assert_eq!(
            reader_for(Provider::OpenAi, path, nested),
            Provider::Generic
        );
        assert_eq!(reader_for(Provider::OpenAi, path, item), Provider::Generic);
        assert_eq!(
            reader_for(Provider::OpenAi, path, b"not json"),
            Provider::Generic
        );
        assert_eq!(
            reader_for(Provider::OpenAi, "/v1/realtime", responses),
            Provider::Generic
        );
    }

    #[test]
    fn a_surrogate_split_across_two_delta_events_comes_back_whole() {
        let policy = super::super::loader::load_embedded(&super::super::loader::builtin_scanner)
            .expect("the shipped policy");
        let gate = PolicyGate::new(
            policy,
            std::sync::Arc::new(super::super::decision::TracingSink),
        );
        let connection = Connection {
            host: "api.openai.com".into(),
            port: 443,
            path: Uri::from_static("/v1/responses"),
            client: "codex-cli",
        };
        let mut messages = MessageGate::new(gate, connection, "upgrade".into());
        messages.restore.insert(
            "user.1a2b3c4d@example.invalid".into(),
            "jane@acme.example".into(),
        );
        messages.filter = Some(restorer(&messages.restore, SSE));

        let mut out = messages.upstream_text(
            r#"{"type":"response.output_text.delta","delta":"mail user.1a2b"}"#.into(),
        );
        out.extend(messages.upstream_text(
            r#"{"type":"response.output_text.delta","delta":"3c4d@example.invalid now"}"#.into(),
        ));
        out.extend(messages.upstream_text(r#"{"type":"response.completed"}"#.into()));
        let text: String = out
            .iter()
            .map(|m| serde_json::from_str::<serde_json::Value>(m).expect("JSON event"))
            .filter_map(|event| event["delta"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(text, "mail jane@acme.example now");
        assert!(out.last().is_some_and(|m| m.contains("response.completed")));
    }

    #[test]
    fn an_error_event_is_typed_as_one() {
        let body = Bytes::from_static(
            br#"{"error":{"message":"m","type":"egress_guard_blocked","code":"blocked"}}"#,
        );
        let event = |responses| -> serde_json::Value {
            serde_json::from_str(&error_event(&body, responses, "0a-1b").expect("JSON"))
                .expect("JSON")
        };
        let realtime = event(false);
        assert_eq!(realtime["type"], "error");
        assert_eq!(realtime["error"]["code"], "blocked");
        let responses = event(true);
        assert_eq!(responses["type"], "response.failed");
        assert_eq!(responses["response"]["status"], "failed");
        assert_eq!(responses["response"]["error"]["code"], "invalid_prompt");
        assert_eq!(responses["response"]["error"]["message"], "m");
    }
}
