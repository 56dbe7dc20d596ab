//! The policy gate as the proxy calls it (`Gate::check` on an `Outbound`), with the real
//! detection engine and the shipped default policy: what leaves, what is changed, what is
//! refused and what the user is told.

#[path = "support/policies.rs"]
mod policies;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use egress_guard::act::pseudonymize::RestoreFilter;
use egress_guard::inspect::decode::encode;
use egress_guard::policy::decision::{AuditError, AuditSink, Decision};
use egress_guard::policy::loader::{self, key_fingerprint, LoadedPolicy};
use egress_guard::policy::PolicyGate;
use egress_guard::proxy::gate::{Forward, Gate, Outbound, ResponseFilter, Verdict};
use serde_json::{json, Value};

/// Remembers every decision; optionally refuses to.
#[derive(Default)]
struct Recorder {
    decisions: Mutex<Vec<Decision>>,
    broken: bool,
}

impl AuditSink for Recorder {
    fn record(&self, decision: &Decision) -> Result<(), AuditError> {
        if self.broken {
            return Err(AuditError("disk full".into()));
        }
        self.decisions.lock().unwrap().push(decision.clone());
        Ok(())
    }
}

impl Recorder {
    fn last(&self) -> Decision {
        self.decisions
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a decision")
    }
}

fn default_policy() -> LoadedPolicy {
    loader::load_embedded(&loader::builtin_scanner).expect("the shipped policy loads")
}

fn policy_from(text: &str) -> LoadedPolicy {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), text).unwrap();
    loader::load_dir(dir.path(), &loader::builtin_scanner).expect("test policy loads")
}

fn gate(policy: LoadedPolicy) -> (PolicyGate, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    (
        PolicyGate::with_key(policy, recorder.clone(), b"test key"),
        recorder,
    )
}

fn request(host: &str, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Outbound {
    let mut builder = http::Request::builder().method("POST").uri(path);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let (parts, ()) = builder.body(()).unwrap().into_parts();
    Outbound {
        host: host.into(),
        port: 443,
        parts,
        body: body.into(),
    }
}

fn anthropic(body: &Value) -> Outbound {
    request(
        "api.anthropic.com",
        "/v1/messages",
        &[
            ("content-type", "application/json"),
            ("user-agent", "claude-cli/2.0.0 (external, cli)"),
            ("x-api-key", "sk-ant-api03-personal"),
        ],
        body.to_string(),
    )
}

fn forwarded(verdict: Verdict) -> Forward {
    match verdict {
        Verdict::Forward(f) => f,
        Verdict::Respond(r) => panic!(
            "expected the request to be forwarded, got {}: {}",
            r.status(),
            String::from_utf8_lossy(r.body())
        ),
    }
}

fn refused(verdict: Verdict) -> (u16, Value) {
    match verdict {
        Verdict::Respond(r) => (
            r.status().as_u16(),
            serde_json::from_slice(r.body()).expect("a JSON error body"),
        ),
        Verdict::Forward(f) => panic!(
            "expected a refusal, the request was forwarded: {}",
            String::from_utf8_lossy(&f.body)
        ),
    }
}

fn body_json(forward: &Forward) -> Value {
    serde_json::from_slice(&forward.body).expect("the forwarded body is valid JSON")
}

/// Made up for these tests, in the documented shape of an AWS access key id.
const AWS_KEY: &str = "AKIAQ7RZ4MXW2KPL5TDN";

/// A made-up PEM private key: 20 lines of pseudo-random base64.
fn fake_private_key() -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut key = String::from("-----BEGIN RSA PRIVATE KEY-----\n");
    for _ in 0..20 {
        for _ in 0..64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            key.push(B64[(state % 64) as usize] as char);
        }
        key.push('\n');
    }
    key.push_str("-----END RSA PRIVATE KEY-----\n");
    key
}

fn code_review_request() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are Claude Code, a coding assistant."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Review this function for off-by-one errors:\n\nfn last(v: &[u8]) -> Option<u8> {\n    v.get(v.len() - 1).copied()\n}"}
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"file_path": "src/lib.rs"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "pub mod parse;\npub mod eval;\n"}
            ]}
        ]
    })
}

#[test]
fn ordinary_code_review_traffic_passes_byte_for_byte() {
    let (gate, audit) = gate(default_policy());
    let request = anthropic(&code_review_request());
    let original_body = request.body.clone();
    let original_headers = request.parts.headers.clone();
    let forward = forwarded(gate.check(request));
    assert_eq!(forward.body, original_body);
    assert_eq!(forward.parts.headers, original_headers);
    assert!(forward.response.is_none());
    let decision = audit.last();
    assert_eq!(decision.action, "allow");
    assert_eq!(decision.client, "claude-code");
    assert_eq!(decision.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(decision.id, forward.decision_id.to_string());
}

#[test]
fn an_aws_key_in_a_claude_prompt_is_redacted_and_nothing_else_changes() {
    let (gate, audit) = gate(default_policy());
    let text = format!("deploy with {AWS_KEY} please");
    let body =
        json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": text}]});
    let forward = forwarded(gate.check(anthropic(&body)));
    let sent = String::from_utf8(forward.body.to_vec()).unwrap();
    assert!(!sent.contains(AWS_KEY));
    assert_eq!(
        sent,
        body.to_string()
            .replace(AWS_KEY, "[REDACTED:secret.aws_access_key_id]")
    );
    assert_eq!(
        forward.parts.headers["content-length"],
        sent.len().to_string().as_str()
    );
    let decision = audit.last();
    assert_eq!(decision.action, "redact");
    assert_eq!(decision.findings[0].detector, "secret.aws_access_key_id");
    assert_eq!(decision.findings[0].location, "messages[0].content");
    assert_eq!(decision.rule.as_deref(), Some("credentials-are-redacted"));
    let record = serde_json::to_string(&decision).unwrap();
    assert!(!record.contains(AWS_KEY) && !record.contains(&AWS_KEY[4..12]));
}

#[test]
fn a_json_escaped_secret_is_found_and_replaced_at_its_raw_bytes() {
    let (gate, _) = gate(default_policy());
    let escaped = format!("\\u0041{}", &AWS_KEY[1..]);
    let raw = format!(
        r#"{{"model":"claude-sonnet-4-5","messages":[{{"role":"user","content":"key: {escaped}\nthanks"}}]}}"#
    );
    let forward = forwarded(gate.check(request(
        "api.anthropic.com",
        "/v1/messages",
        &[("content-type", "application/json")],
        raw.clone(),
    )));
    let sent = String::from_utf8(forward.body.to_vec()).unwrap();
    assert_eq!(
        sent,
        raw.replace(&escaped, "[REDACTED:secret.aws_access_key_id]")
    );
}

#[test]
fn a_secret_split_across_two_content_blocks_is_still_removed() {
    let (gate, audit) = gate(default_policy());
    let (left, right) = AWS_KEY.split_at(9);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": format!("the key is {left}")},
        {"type": "text", "text": format!("{right} ok")}
    ]}]});
    let forward = forwarded(gate.check(anthropic(&body)));
    let sent = body_json(&forward);
    let blocks = sent["messages"][0]["content"].as_array().unwrap();
    let joined = format!(
        "{}{}",
        blocks[0]["text"].as_str().unwrap(),
        blocks[1]["text"].as_str().unwrap()
    );
    assert!(
        !joined.contains(left) || !joined.contains(right),
        "{joined}"
    );
    assert!(
        joined.contains("[REDACTED:secret.aws_access_key_id]"),
        "{joined}"
    );
    assert_eq!(
        audit.last().findings[0].location,
        "messages[0].content[0].text"
    );
}

#[test]
fn zero_width_and_full_width_evasions_do_not_hide_a_key() {
    let (gate, _) = gate(default_policy());
    let zero_width: String = AWS_KEY.chars().flat_map(|c| [c, '\u{200B}']).collect();
    let full_width: String = AWS_KEY
        .chars()
        .map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap())
        .collect();
    for evasive in [zero_width, full_width] {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": format!("k={evasive} end")}]});
        let forward = forwarded(gate.check(anthropic(&body)));
        let sent = body_json(&forward);
        assert_eq!(
            sent["messages"][0]["content"],
            "k=[REDACTED:secret.aws_access_key_id] end"
        );
    }
}

#[test]
fn a_private_key_inside_a_base64_document_blocks_the_request() {
    use base64::Engine;
    let (gate, audit) = gate(default_policy());
    let data = base64::engine::general_purpose::STANDARD.encode(fake_private_key());
    let body = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": data}},
        {"type": "text", "text": "what is this file?"}
    ]}]});
    let (status, error) = refused(gate.check(anthropic(&body)));
    assert_eq!(status, 403);
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "permission_error");
    let message = error["error"]["message"].as_str().unwrap();
    let decision = audit.last();
    assert!(message.contains("secret.private_key"), "{message}");
    assert!(
        message.contains("messages[0].content[0].source.data"),
        "{message}"
    );
    assert!(message.contains("private-keys-never-leave"), "{message}");
    assert!(message.contains(&decision.id), "{message}");
    assert!(!message.contains("BEGIN RSA") && !message.contains(&data[..40]));
    assert_eq!(decision.action, "block");
}

#[test]
fn an_email_is_pseudonymized_and_restored_in_the_response() {
    let (gate, audit) = gate(default_policy());
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Write to jane.doe@acme-corp.com about the invoice"}]});
    let forward = forwarded(gate.check(request(
        "api.openai.com",
        "/v1/chat/completions",
        &[
            ("content-type", "application/json"),
            ("accept-encoding", "gzip, br"),
        ],
        body.to_string(),
    )));
    let sent = body_json(&forward);
    let content = sent["messages"][0]["content"].as_str().unwrap();
    assert!(!content.contains("jane.doe"), "{content}");
    let surrogate = content
        .split_whitespace()
        .find(|w| w.contains('@'))
        .unwrap()
        .to_owned();
    assert!(surrogate.ends_with("@example.invalid"), "{surrogate}");
    assert_eq!(forward.parts.headers["accept-encoding"], "identity");
    assert_eq!(audit.last().action, "pseudonymize");

    // The reply mentions the surrogate, split across two SSE deltas; the client sees the
    // original.
    let mut filter: Box<dyn ResponseFilter> = forward.response.expect("a response filter");
    let (mut head, ()) = http::Response::builder()
        .header("content-type", "text/event-stream")
        .body(())
        .unwrap()
        .into_parts();
    filter.head(&mut head);
    let (a, b) = surrogate.split_at(7);
    let chunk = |text: &str| {
        format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {"content": text}}]})
        )
    };
    let mut out = Vec::new();
    out.extend_from_slice(&filter.data(Bytes::from(chunk(&format!("Sent to {a}")))));
    out.extend_from_slice(&filter.data(Bytes::from(chunk(&format!("{b}.")))));
    out.extend_from_slice(&filter.data(Bytes::from("data: [DONE]\n\n")));
    out.extend_from_slice(&filter.finish());
    let text: String = String::from_utf8(out)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "Sent to jane.doe@acme-corp.com.");
}

#[test]
fn the_same_value_gets_the_same_surrogate_in_every_turn() {
    let (gate, _) = gate(default_policy());
    let turn = |text: &str| {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": text}]});
        body_json(&forwarded(gate.check(anthropic(&body))))["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let first = turn("mail jane.doe@acme-corp.com");
    let second = turn("again jane.doe@acme-corp.com");
    assert_eq!(first.strip_prefix("mail "), second.strip_prefix("again "));
}

#[test]
fn compressed_bodies_are_inspected_and_forwarded_decoded() {
    let (gate, _) = gate(default_policy());
    let body =
        json!({"model": "m", "messages": [{"role": "user", "content": format!("key {AWS_KEY}")}]})
            .to_string();
    for (encoding, data) in [
        ("gzip", encode::gzip(body.as_bytes())),
        ("br", encode::br(body.as_bytes())),
        ("zstd", encode::zstd(body.as_bytes())),
        ("gzip, br", encode::br(&encode::gzip(body.as_bytes()))),
    ] {
        let forward = forwarded(gate.check(request(
            "api.anthropic.com",
            "/v1/messages",
            &[
                ("content-type", "application/json"),
                ("content-encoding", encoding),
            ],
            data,
        )));
        assert!(
            forward.parts.headers.get("content-encoding").is_none(),
            "{encoding}"
        );
        let sent = body_json(&forward);
        assert_eq!(
            sent["messages"][0]["content"], "key [REDACTED:secret.aws_access_key_id]",
            "{encoding}"
        );
    }
    // Benign and compressed: forwarded exactly as sent, still compressed.
    let benign = encode::gzip(code_review_request().to_string().as_bytes());
    let forward = forwarded(gate.check(request(
        "api.anthropic.com",
        "/v1/messages",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        benign.clone(),
    )));
    assert_eq!(forward.body, benign);
    assert_eq!(forward.parts.headers["content-encoding"], "gzip");
}

#[test]
fn a_decompression_bomb_is_blocked_not_expanded() {
    let (gate, audit) = gate(default_policy());
    let bomb = encode::gzip(&vec![b' '; 64 * 1024 * 1024]);
    let (status, error) = refused(gate.check(request(
        "api.openai.com",
        "/v1/chat/completions",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        bomb,
    )));
    assert!(status == 403 || status == 413, "{status}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("decompression bomb"), "{message}");
    assert_eq!(audit.last().action, "block");
}

#[test]
fn invalid_json_and_corrupt_encodings_fail_closed_with_a_reason() {
    let (gate, _) = gate(default_policy());
    let (status, error) = refused(gate.check(request(
        "api.anthropic.com",
        "/v1/messages",
        &[("content-type", "application/json")],
        r#"{"messages": [{"role": "user", "content": "hi"}"#,
    )));
    assert_eq!(status, 403);
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("not valid JSON"), "{message}");
    let (status, error) = refused(gate.check(request(
        "api.openai.com",
        "/v1/responses",
        &[("content-encoding", "br")],
        "definitely not brotli",
    )));
    assert_eq!(status, 403);
    assert_eq!(error["error"]["code"], "undecodable_body");
}

#[test]
fn a_destination_may_choose_fail_open() {
    let (gate, audit) = gate(policy_from(
        r#"
        name = "lenient"
        [[destination]]
        hosts = ["api.anthropic.com"]
        route = "inspect"
        fail_open = true
        "#,
    ));
    let forward = forwarded(gate.check(request(
        "api.anthropic.com",
        "/v1/messages",
        &[("content-type", "application/json")],
        "{not json",
    )));
    assert_eq!(&forward.body[..], b"{not json");
    let decision = audit.last();
    assert_eq!(decision.action, "monitor");
    assert!(decision.reason.unwrap().contains("fail_open"));
}

#[test]
fn tool_call_arguments_are_redacted_inside_the_json_they_contain() {
    let (gate, audit) = gate(default_policy());
    let arguments = json!({"command": format!("export AWS_ACCESS_KEY_ID={AWS_KEY}")}).to_string();
    let body = json!({"model": "gpt-4o", "messages": [
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "shell", "arguments": arguments}}]}
    ]});
    let forward = forwarded(gate.check(request(
        "api.openai.com",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        body.to_string(),
    )));
    let sent = body_json(&forward);
    let args: Value = serde_json::from_str(
        sent["messages"][0]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .expect("arguments are still JSON");
    assert_eq!(
        args["command"],
        "export AWS_ACCESS_KEY_ID=[REDACTED:secret.aws_access_key_id]"
    );
    assert_eq!(
        audit.last().findings[0].location,
        "messages[0].tool_calls[0].function.arguments.command"
    );
}

#[test]
fn every_provider_shape_is_redacted_at_the_right_place() {
    let (gate, audit) = gate(default_policy());
    let secret = format!("use {AWS_KEY}");
    let cases = [
        (
            "api.openai.com",
            "/v1/responses",
            json!({"model": "gpt-5-codex", "instructions": "be brief", "input": [
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": secret}]}]}),
            "input[0].content[0].text",
        ),
        (
            "generativelanguage.googleapis.com",
            "/v1beta/models/gemini-2.5-pro:generateContent",
            json!({"contents": [{"role": "user", "parts": [{"text": secret}]}]}),
            "contents[0].parts[0].text",
        ),
        (
            "bedrock-runtime.us-east-1.amazonaws.com",
            "/model/anthropic.claude-sonnet-4-5/converse",
            json!({"messages": [{"role": "user", "content": [{"text": secret}]}]}),
            "messages[0].content[0].text",
        ),
        (
            "api.mistral.ai",
            "/v1/chat/completions",
            json!({"model": "mistral-large", "messages": [{"role": "user", "content": secret}]}),
            "messages[0].content",
        ),
    ];
    for (host, path, body, location) in cases {
        let forward = forwarded(gate.check(request(
            host,
            path,
            &[("content-type", "application/json")],
            body.to_string(),
        )));
        let sent = String::from_utf8(forward.body.to_vec()).unwrap();
        assert!(!sent.contains(AWS_KEY), "{host}: {sent}");
        assert!(
            sent.contains("[REDACTED:secret.aws_access_key_id]"),
            "{host}"
        );
        let decision = audit.last();
        assert_eq!(decision.findings[0].location, location, "{host}");
    }
    assert_eq!(audit.last().provider, "generic");
}

#[test]
fn a_secret_in_the_query_string_blocks_and_is_masked_in_the_audit_path() {
    let (gate, audit) = gate(default_policy());
    let (status, _) = refused(gate.check(request(
        "api.openai.com",
        &format!("/v1/models?note={AWS_KEY}"),
        &[],
        "",
    )));
    assert_eq!(status, 403);
    let decision = audit.last();
    assert_eq!(decision.findings[0].location, "query.note");
    assert_eq!(decision.path, "/v1/models?note=***");
}

#[test]
fn a_personal_key_is_refused_when_the_organisation_sanctions_its_own() {
    let sanctioned = "sk-ant-api03-company-key";
    let policy = format!(
        r#"
        name = "keys"
        [[destination]]
        hosts = ["@ai"]
        route = "inspect"
        [sanctioned_keys]
        salt = "acme"
        fingerprints = ["{}"]
        "#,
        key_fingerprint("acme", sanctioned)
    );
    let (gate, audit) = gate(policy_from(&policy));
    let body = code_review_request();
    let (status, error) = refused(gate.check(anthropic(&body)));
    assert_eq!(status, 403);
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("sanctioned key"), "{message}");
    assert!(!message.contains("sk-ant-api03-personal"));
    assert_eq!(audit.last().rule.as_deref(), Some("sanctioned-keys"));

    let mut ok = anthropic(&body);
    ok.parts
        .headers
        .insert("x-api-key", sanctioned.parse().unwrap());
    forwarded(gate.check(ok));
}

#[test]
fn the_sanctioned_key_can_be_injected_by_the_proxy() {
    std::env::set_var("EGRESS_GUARD_TEST_INJECTED_KEY", "sk-ant-api03-company-key");
    let (gate, _) = gate(policy_from(
        r#"
        name = "inject"
        [[destination]]
        hosts = ["@ai"]
        route = "inspect"
        [sanctioned_keys]
        salt = "acme"
        fingerprints = ["0000000000000000000000000000000000000000000000000000000000000000"]
        [[sanctioned_keys.inject]]
        provider = "anthropic"
        env = "EGRESS_GUARD_TEST_INJECTED_KEY"
        "#,
    ));
    let forward = forwarded(gate.check(anthropic(&code_review_request())));
    assert_eq!(
        forward.parts.headers["x-api-key"],
        "sk-ant-api03-company-key"
    );
}

#[test]
fn a_trial_rule_only_records_what_it_would_have_done() {
    let (gate, audit) = gate(policy_from(
        r#"
        name = "trial"
        [[destination]]
        hosts = ["@ai"]
        route = "inspect"
        [[rule]]
        name = "block-emails-soon"
        detector = ["pii.email"]
        action = "block"
        stage = "trial"
        "#,
    ));
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "ping jane.doe@acme-corp.com"}]});
    let request = anthropic(&body);
    let original = request.body.clone();
    let forward = forwarded(gate.check(request));
    assert_eq!(forward.body, original);
    let decision = audit.last();
    assert_eq!(decision.action, "monitor");
    assert_eq!(decision.would, Some("block"));
    assert_eq!(decision.findings[0].would, Some("block"));
}

#[test]
fn a_rule_can_send_a_request_to_a_local_model() {
    let (gate, audit) = gate(policy_from(
        r#"
        name = "local"
        [[destination]]
        hosts = ["@ai"]
        route = "inspect"
        [[local]]
        name = "ollama"
        url = "http://127.0.0.1:11434"
        [[rule]]
        name = "customer-data-stays-here"
        category = ["pii"]
        action = "local"
        local = "ollama"
        "#,
    ));
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "jane.doe@acme-corp.com"}]});
    let forward = forwarded(gate.check(request(
        "api.openai.com",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        body.to_string(),
    )));
    let upstream = forward.upstream.expect("sent to the local endpoint");
    assert_eq!(upstream.authority.as_str(), "127.0.0.1:11434");
    assert_eq!(upstream.scheme.as_str(), "http");
    assert_eq!(audit.last().upstream.as_deref(), Some("local:ollama"));
}

fn websocket_upgrade(path: &str) -> Outbound {
    let mut r = request(
        "api.openai.com",
        path,
        &[
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("openai-beta", "responses_websockets=2026-01-01"),
            ("user-agent", "codex_cli_rs/0.170.0"),
        ],
        "",
    );
    r.parts.method = http::Method::GET;
    r
}

#[test]
fn a_websocket_upgrade_is_refused_when_the_policy_says_so() {
    let (gate, _) = gate(policy_from(policies::REFUSE_WEBSOCKETS));
    let (status, error) = refused(gate.check(websocket_upgrade("/v1/responses")));
    assert_eq!(status, 426);
    assert_eq!(error["error"]["code"], "websocket_refused");
}

#[test]
fn a_websocket_named_second_among_several_upgrades_is_still_a_websocket() {
    // The proxy carries the upgrade as a WebSocket if any `Upgrade` value says so; the policy
    // must see the same request the same way, or the socket would be relayed unread.
    let (gate, _) = gate(policy_from(policies::REFUSE_WEBSOCKETS));
    let mut upgrade = websocket_upgrade("/v1/responses");
    let headers = &mut upgrade.parts.headers;
    headers.remove("upgrade");
    headers.append("upgrade", "h2c".parse().unwrap());
    headers.append("upgrade", "websocket".parse().unwrap());
    let (status, error) = refused(gate.check(upgrade));
    assert_eq!(status, 426);
    assert_eq!(error["error"]["code"], "websocket_refused");
}

#[test]
fn the_shipped_policy_lets_a_websocket_open_and_decides_each_message() {
    use egress_guard::proxy::gate::{MessageVerdict, WsMessage};
    let (gate, audit) = gate(default_policy());
    let upgrade = forwarded(gate.check(websocket_upgrade("/v1/responses")));
    let connection = upgrade.decision_id.to_string();
    let mut messages = upgrade.messages.expect("its messages are inspected");

    let benign = json!({"type": "response.create", "model": "gpt-5-codex",
        "input": [{"role": "user", "content": "explain lifetimes"}]})
    .to_string();
    match messages.client_message(WsMessage::Text(benign.clone())) {
        MessageVerdict::Forward(WsMessage::Text(sent)) => assert_eq!(sent, benign),
        other => panic!("expected it forwarded unchanged, got {other:?}"),
    }
    let decision = audit.last();
    let websocket = decision.websocket.expect("a message decision");
    assert_eq!(
        (websocket.connection.as_str(), websocket.message),
        (connection.as_str(), 1)
    );
    assert_eq!(decision.client, "codex-cli");
    assert_eq!(decision.model.as_deref(), Some("gpt-5-codex"));

    let private_key = fake_private_key();
    let secret = json!({"type": "response.create", "model": "gpt-5-codex",
        "input": [{"role": "user", "content": format!("deploy with {private_key}")}]})
    .to_string();
    match messages.client_message(WsMessage::Text(secret)) {
        MessageVerdict::Close(refusal) => {
            assert!(refusal.reason.len() <= 123, "{}", refusal.reason);
            assert!(
                refusal.reason.contains("secret.private_key_rsa"),
                "{}",
                refusal.reason
            );
            let event: Value =
                serde_json::from_str(&refusal.notice.expect("an error event")).unwrap();
            assert_eq!(event["type"], "response.failed");
            let message = event["response"]["error"]["message"]
                .as_str()
                .expect("a message");
            assert!(message.contains("private-keys-never-leave"), "{message}");
            assert!(!event.to_string().contains(&private_key[40..80]));
        }
        other => panic!("expected the socket closed, got {other:?}"),
    }
    let decision = audit.last();
    assert_eq!(decision.action, "block");
    assert_eq!(decision.websocket.map(|w| w.message), Some(2));
}

#[test]
fn when_the_decision_cannot_be_recorded_nothing_leaves() {
    let recorder = Arc::new(Recorder {
        broken: true,
        ..Recorder::default()
    });
    let gate = PolicyGate::with_key(default_policy(), recorder, b"k");
    let (status, error) = refused(gate.check(anthropic(&code_review_request())));
    assert_eq!(status, 403);
    assert_eq!(error["error"]["type"], "permission_error");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("could not record"));
}

#[test]
fn routes_follow_the_destinations_top_down() {
    use egress_guard::proxy::gate::Route;
    let (gate, _) = gate(policy_from(
        r#"
        name = "routes"
        [[destination]]
        hosts = ["api.groq.com"]
        route = "deny"
        [[destination]]
        hosts = ["@ai"]
        route = "inspect"
        [[destination]]
        hosts = ["*"]
        route = "tunnel"
        "#,
    ));
    assert_eq!(gate.route("api.groq.com", 443), Route::Deny);
    assert_eq!(gate.route("api.anthropic.com", 443), Route::Inspect);
    assert_eq!(gate.route("github.com", 443), Route::Tunnel);
    assert!(gate.inspect_hosts().contains(&"api.openai.com".to_owned()));
}

#[test]
fn a_restore_filter_leaves_unrelated_responses_alone() {
    let filter = RestoreFilter::new(&Default::default());
    let mut filter: Box<dyn ResponseFilter> = Box::new(filter);
    let chunk = Bytes::from_static(b"{\"ok\":true}");
    assert_eq!(filter.data(chunk.clone()), chunk);
}
