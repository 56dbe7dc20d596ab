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
//!   upstream's later text messages get the originals back (JSON-escaped when the message is
//!   JSON). Each message is restored whole, so a surrogate split across two streamed delta
//!   events reaches the user as the surrogate (never as anything else).
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

use super::decision::Decision;
use super::gate::{find_destination, MessageOf, PolicyGate};

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
    /// Built from `restore` when it changes (the matcher is not rebuilt per message).
    filter: Option<RestoreFilter>,
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
        }
    }

    /// The provider whose API the connection's host speaks (policy may say so).
    fn provider(&self) -> Provider {
        let loaded = self.gate.policy();
        find_destination(&loaded.policy, &self.connection.host)
            .and_then(|d| d.provider)
            .map(Provider::from)
            .unwrap_or_else(|| Provider::from_host(&self.connection.host))
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
                    self.filter = Some(json_restorer(&self.restore));
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
                notice: error_event(response.body()),
            }),
        }
    }

    fn upstream_text(&mut self, text: String) -> String {
        let Some(filter) = self.filter.as_mut() else {
            return text;
        };
        let mut out = filter.data(Bytes::from(text)).to_vec();
        out.extend_from_slice(&filter.finish());
        // Originals were text in a UTF-8 message; a restored message is UTF-8 too.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// A restore filter for whole JSON (or plain text) messages.
fn json_restorer(table: &RestoreTable) -> RestoreFilter {
    let mut filter = RestoreFilter::new(table);
    let mut head = http::Response::new(()).into_parts().0;
    head.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    filter.head(&mut head);
    filter
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

/// The close frame's reason: the decision id first (a reason is cut at 123 bytes, and the id
/// is what finds the audit record), then what decided it. Never a value.
fn close_reason(decision: &Decision) -> String {
    let mut reason = format!("egress-guard blocked a message, decision {}", decision.id);
    if let Some(finding) = decision.findings.iter().find(|f| f.action == "block") {
        reason.push_str(&format!(": {}", finding.detector));
    }
    if let Some(rule) = &decision.rule {
        reason.push_str(&format!(" (rule {rule})"));
    }
    reason
}

/// The provider-shaped error the HTTP path would have answered, as a last server event: with
/// `"type": "error"` at its top level, which is how the Responses and Realtime sockets announce
/// an error (Anthropic's error body has it already).
fn error_event(body: &Bytes) -> Option<String> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
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
    fn an_error_event_is_typed_as_one() {
        let body = Bytes::from_static(br#"{"error":{"message":"m","code":"blocked"}}"#);
        let event: serde_json::Value =
            serde_json::from_str(&error_event(&body).expect("JSON")).expect("JSON");
        assert_eq!(event["type"], "error");
        assert_eq!(event["error"]["code"], "blocked");
    }
}
