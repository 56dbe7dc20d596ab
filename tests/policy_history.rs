//! An agent re-sends its whole conversation with every request. The gate remembers which
//! message groups it found clean and leaves them undecoded next time; these stories check that
//! this never lets a secret through: new text, changed history and history that held a secret
//! are all still found, and redaction still hits the exact bytes.

use std::sync::Arc;

use egress_guard::policy::decision::{AuditError, AuditSink, Decision};
use egress_guard::policy::loader;
use egress_guard::policy::PolicyGate;
use egress_guard::proxy::gate::{Gate, Outbound, Verdict};
use serde_json::{json, Value};

/// Made up for these tests, in the documented shape of an AWS access key id.
const AWS_KEY: &str = "AKIAQ7RZ4MXW2KPL5TDN";
const PLACEHOLDER: &str = "[REDACTED:secret.aws_access_key_id]";

struct Discard;
impl AuditSink for Discard {
    fn record(&self, _: &Decision) -> Result<(), AuditError> {
        Ok(())
    }
}

fn gate() -> PolicyGate {
    let policy = loader::load_embedded(&loader::builtin_scanner).expect("the shipped policy");
    PolicyGate::with_key(policy, Arc::new(Discard), b"test key")
}

/// The body that leaves for `messages` (panics if the request is refused).
fn sent(gate: &PolicyGate, messages: &[Value]) -> String {
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": messages});
    let (parts, ()) = http::Request::builder()
        .method("POST")
        .uri("/v1/messages")
        .header("content-type", "application/json")
        .body(())
        .unwrap()
        .into_parts();
    let outbound = Outbound {
        host: "api.anthropic.com".into(),
        port: 443,
        parts,
        body: body.to_string().into(),
    };
    match gate.check(outbound) {
        Verdict::Forward(f) => String::from_utf8(f.body.to_vec()).unwrap(),
        Verdict::Respond(r) => panic!("refused: {}", String::from_utf8_lossy(r.body())),
    }
}

fn tool_result(id: &str, text: &str) -> Value {
    json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": text}]})
}

fn history() -> Vec<Value> {
    let file = "fn main() {\n    let region = \"eu-west-1\";\n    deploy(region);\n}\n".repeat(8);
    vec![
        json!({"role": "user", "content": "Read src/main.rs and deploy it."}),
        json!({"role": "assistant", "content": [
            {"type": "text", "text": "Reading it."},
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "src/main.rs"}}]}),
        tool_result("toolu_1", &file),
    ]
}

#[test]
fn a_key_in_the_newest_message_of_a_known_conversation_is_redacted_exactly() {
    let gate = gate();
    let mut messages = history();
    let first = sent(&gate, &messages);
    assert_eq!(
        first,
        json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": messages}).to_string()
    );

    messages.push(json!({"role": "assistant", "content": "Which credentials?"}));
    messages.push(json!({"role": "user", "content": format!("use {AWS_KEY}, then say \"done\"")}));
    let second = sent(&gate, &messages);
    let expected = json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": messages})
        .to_string()
        .replace(AWS_KEY, PLACEHOLDER);
    assert_eq!(second, expected);
}

#[test]
fn a_key_written_into_history_that_was_clean_is_still_found() {
    let gate = gate();
    let messages = history();
    sent(&gate, &messages);
    sent(&gate, &messages);

    // The same conversation, except that the (already seen) tool result now holds a key.
    let mut changed = messages.clone();
    let file = changed[2]["content"][0]["content"]
        .as_str()
        .unwrap()
        .replace("eu-west-1", &format!("eu-west-1\"; let key = \"{AWS_KEY}"));
    changed[2] = tool_result("toolu_1", &file);
    let sent_body = sent(&gate, &changed);
    assert!(!sent_body.contains(AWS_KEY), "{sent_body}");
    assert!(sent_body.contains(PLACEHOLDER));
}

#[test]
fn history_that_held_a_key_is_redacted_again_on_every_turn() {
    // The proxy redacts what leaves, but the agent keeps the original and sends it again.
    let gate = gate();
    let mut messages = history();
    messages.push(json!({"role": "user", "content": format!("the key is {AWS_KEY}")}));
    for turn in 0..3 {
        let body = sent(&gate, &messages);
        assert!(!body.contains(AWS_KEY), "turn {turn}: {body}");
        assert_eq!(body.matches(PLACEHOLDER).count(), 1, "turn {turn}");
        messages.push(json!({"role": "assistant", "content": format!("Noted ({turn}).")}));
        messages.push(json!({"role": "user", "content": "Go on."}));
    }
}
