//! The policy engine behind the real binary, over loopback TLS, against the fake upstream: the
//! upstream receives exactly what each action promises (nothing for block, the placeholder for
//! redact, a surrogate for pseudonymize) and the client gets its own values back.

mod support;

use std::path::Path;

use egress_guard::inspect::decode::encode;
use serde_json::{json, Value};
use support::guard::Guard;
use support::upstream::FakeUpstream;

/// Made up for these tests, in the documented shape of an AWS access key id.
const AWS_KEY: &str = "AKIAQ7RZ4MXW2KPL5TDN";
const PLACEHOLDER: &str = "[REDACTED:secret.aws_access_key_id]";
const EMAIL: &str = "jane.doe@acme-corp.com";

fn guard(upstream: &FakeUpstream, extra: &[&str]) -> Guard {
    Guard::for_upstream(upstream.resolve_args(), upstream.ca_pem_path(), extra)
}

async fn post(
    guard: &Guard,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = guard
        .client()
        .post(url)
        .header("content-type", "application/json");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request
        .body(body)
        .send()
        .await
        .expect("a response through the proxy")
}

/// The text of an SSE stream's deltas, whatever the provider.
fn sse_text(stream: &str) -> String {
    stream
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .filter_map(|v| {
            [
                &v["delta"]["text"],
                &v["choices"][0]["delta"]["content"],
                &v["delta"],
                &v["candidates"][0]["content"]["parts"][0]["text"],
            ]
            .into_iter()
            .find_map(|t| t.as_str().map(str::to_owned))
        })
        .collect()
}

#[tokio::test]
async fn ordinary_code_review_traffic_reaches_the_api_byte_for_byte() {
    let upstream = FakeUpstream::start().await;
    let guard = guard(&upstream, &[]);
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": [
        {"role": "user", "content": "Review: fn add(a: i32, b: i32) -> i32 { a - b }"}]})
    .to_string();
    let response = post(
        &guard,
        "https://api.anthropic.com/v1/messages",
        &[("user-agent", "claude-cli/2.0.0 (external, cli)")],
        body.clone(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-egress-guard-decision"));
    assert_eq!(upstream.last_request().unwrap().body, body.as_bytes());
}

#[tokio::test]
async fn a_secret_is_redacted_before_it_leaves_for_every_provider() {
    let upstream = FakeUpstream::start().await;
    let guard = guard(&upstream, &[]);
    let text = format!("deploy with {AWS_KEY} please");
    let cases = [
        (
            "https://api.anthropic.com/v1/messages",
            json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": text}]}),
        ),
        (
            "https://api.openai.com/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}),
        ),
        (
            "https://api.openai.com/v1/responses",
            json!({"model": "gpt-5-codex", "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}]}),
        ),
        (
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent",
            json!({"contents": [{"role": "user", "parts": [{"text": text}]}]}),
        ),
    ];
    for (url, body) in cases {
        let response = post(&guard, url, &[], body.to_string()).await;
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(
            response.version(),
            http::Version::HTTP_2,
            "the client spoke HTTP/2"
        );
        let reply = response.text().await.unwrap();
        let seen = upstream.last_request().unwrap().body_text();
        assert!(!seen.contains(AWS_KEY), "{url}: {seen}");
        assert_eq!(
            seen,
            body.to_string().replace(AWS_KEY, PLACEHOLDER),
            "{url}: only the key changed"
        );
        assert!(
            reply.contains(PLACEHOLDER),
            "{url}: the model saw the placeholder"
        );
    }
}

#[tokio::test]
async fn a_secret_in_a_field_the_reader_does_not_know_is_redacted_too() {
    // `metadata`, tool definitions, a field added to the API later: not content fields, but
    // bytes that leave all the same.
    let upstream = FakeUpstream::start().await;
    let guard = guard(&upstream, &[]);
    let body = json!({
        "model": "gpt-5-codex",
        "input": "hello",
        "metadata": {"note": format!("deploy key {AWS_KEY}")},
    })
    .to_string();
    let response = post(
        &guard,
        "https://api.openai.com/v1/responses",
        &[],
        body.clone(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let seen = upstream.last_request().unwrap().body_text();
    assert_eq!(seen, body.replace(AWS_KEY, PLACEHOLDER));
}

#[tokio::test]
async fn personal_data_leaves_as_a_surrogate_and_comes_back_as_itself() {
    let upstream = FakeUpstream::start().await;
    let guard = guard(&upstream, &[]);
    let text = format!("Please write to {EMAIL} today");
    let cases = [
        (
            "https://api.anthropic.com/v1/messages",
            json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": text}]}),
        ),
        (
            "https://api.openai.com/v1/chat/completions",
            json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": text}]}),
        ),
        (
            "https://api.openai.com/v1/responses",
            json!({"model": "gpt-5-codex", "stream": true, "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}]}),
        ),
        (
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            json!({"contents": [{"role": "user", "parts": [{"text": text}]}]}),
        ),
    ];
    for (url, body) in cases {
        let response = post(
            &guard,
            url,
            &[("accept-encoding", "gzip")],
            body.to_string(),
        )
        .await;
        assert_eq!(response.status(), 200, "{url}");
        let stream = response.text().await.unwrap();
        let seen = upstream.last_request().unwrap();
        let seen_text = seen.body_text();
        assert!(!seen_text.contains(EMAIL), "{url}: {seen_text}");
        assert!(seen_text.contains("@example.invalid"), "{url}: {seen_text}");
        assert_eq!(seen.headers["accept-encoding"], "identity", "{url}");
        assert_eq!(
            sse_text(&stream),
            text,
            "{url}: the client reads its own value"
        );
    }

    // A JSON (non-streamed) reply too.
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": text}]});
    let reply: Value = post(
        &guard,
        "https://api.anthropic.com/v1/messages",
        &[],
        body.to_string(),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(reply["content"][0]["text"], text);
}

#[tokio::test]
async fn a_private_key_in_a_document_is_blocked_and_nothing_reaches_the_api() {
    use base64::Engine;
    let upstream = FakeUpstream::start().await;
    let guard = guard(&upstream, &[]);
    let mut key = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..12 {
        for _ in 0..70 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            key.push(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                    [(state % 64) as usize] as char,
            );
        }
        key.push('\n');
    }
    key.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    let data = base64::engine::general_purpose::STANDARD.encode(&key);
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": data}},
        {"type": "text", "text": "summarise"}]}]});
    let response = post(
        &guard,
        "https://api.anthropic.com/v1/messages",
        &[],
        body.to_string(),
    )
    .await;
    assert_eq!(response.status(), 403);
    let decision = response.headers()["x-egress-guard-decision"]
        .to_str()
        .unwrap()
        .to_owned();
    let error: Value = response.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert_eq!(error["error"]["type"], "permission_error");
    assert!(message.contains("secret.private_key"), "{message}");
    assert!(
        message.contains("messages[0].content[0].source.data"),
        "{message}"
    );
    assert!(message.contains(&decision), "{message}");
    assert!(upstream.requests().is_empty(), "nothing was sent upstream");
}

#[tokio::test]
async fn compressed_and_chunked_bodies_are_inspected_like_any_other() {
    let upstream = FakeUpstream::start().await;
    let guard = guard(&upstream, &[]);
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": format!("key {AWS_KEY}")}]})
        .to_string();
    let expected = body.replace(AWS_KEY, PLACEHOLDER);
    for (encoding, data) in [
        ("gzip", encode::gzip(body.as_bytes())),
        ("br", encode::br(body.as_bytes())),
        ("zstd", encode::zstd(body.as_bytes())),
        ("gzip, br", encode::br(&encode::gzip(body.as_bytes()))),
    ] {
        let response = post(
            &guard,
            "https://api.openai.com/v1/chat/completions",
            &[("content-encoding", encoding)],
            data,
        )
        .await;
        assert_eq!(response.status(), 200, "{encoding}");
        let seen = upstream.last_request().unwrap();
        assert_eq!(seen.body_text(), expected, "{encoding}");
        assert!(seen.headers.get("content-encoding").is_none(), "{encoding}");
    }

    // Chunked (a streamed body of unknown length) over HTTP/1.1.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        body.as_bytes().chunks(7).map(|c| Ok(c.to_vec())).collect();
    let response = guard
        .client_http1()
        .post("https://api.openai.com/v1/chat/completions")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.last_request().unwrap().body_text(), expected);
}

#[tokio::test]
async fn evasions_escapes_and_split_values_are_still_caught() {
    let upstream = FakeUpstream::start().await;
    let guard = guard(&upstream, &[]);
    let zero_width: String = AWS_KEY.chars().flat_map(|c| [c, '\u{200B}']).collect();
    let full_width: String = AWS_KEY
        .chars()
        .map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap())
        .collect();
    let (left, right) = AWS_KEY.split_at(10);
    let bodies = [
        json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": format!("a {zero_width} b")}]}).to_string(),
        json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": format!("a {full_width} b")}]}).to_string(),
        format!(r#"{{"model":"m","max_tokens":8,"messages":[{{"role":"user","content":"a \u0041{} b"}}]}}"#, &AWS_KEY[1..]),
        json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": [
            {"type": "text", "text": format!("a {left}")}, {"type": "text", "text": format!("{right} b")}]}]}).to_string(),
        // Coloured terminal output in a tool result: the colour code's final `m` is glued to
        // the key.
        json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1",
             "content": format!("\u{1b}[1m$ env\u{1b}[0m\nAWS=\u{1b}[32m{AWS_KEY}\u{1b}[0m\n")}]}]}).to_string(),
    ];
    for body in bodies {
        let response = post(
            &guard,
            "https://api.anthropic.com/v1/messages",
            &[],
            body.clone(),
        )
        .await;
        assert_eq!(response.status(), 200, "{body}");
        let seen = upstream.last_request().unwrap().json();
        let content = seen["messages"][0]["content"].to_string();
        assert!(content.contains(PLACEHOLDER), "{body} -> {content}");
        assert!(!content.contains(&AWS_KEY[4..12]), "{body} -> {content}");
    }
}

#[tokio::test]
async fn undecodable_bodies_are_blocked_with_a_reason() {
    let upstream = FakeUpstream::start().await;
    let guard = guard(&upstream, &[]);
    let bomb = encode::gzip(&vec![b'a'; 48 * 1024 * 1024]);
    let response = post(
        &guard,
        "https://api.openai.com/v1/chat/completions",
        &[("content-encoding", "gzip")],
        bomb,
    )
    .await;
    assert!(matches!(response.status().as_u16(), 403 | 413));
    let error: Value = response.json().await.unwrap();
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("decompression bomb"));

    let response = post(
        &guard,
        "https://api.anthropic.com/v1/messages",
        &[],
        r#"{"model": "m", "messages": [}"#,
    )
    .await;
    assert_eq!(response.status(), 403);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    assert!(upstream.requests().is_empty());
}

fn write_policy(dir: &Path, text: &str) {
    // Write then rename, as an editor or config manager would, so a reload never reads half.
    let tmp = dir.join("policy.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("policy.toml")).unwrap();
}

const BLOCK_EMAILS: &str = r#"
name = "strict"
[[destination]]
hosts = ["@ai"]
route = "inspect"
[[rule]]
name = "no-emails"
detector = ["pii.email"]
action = "block"
"#;

#[tokio::test]
async fn a_broken_policy_never_replaces_a_working_one() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_policy(dir.path(), BLOCK_EMAILS);
    let policy = dir.path().display().to_string();
    let guard = guard(&upstream, &["--policy", &policy]);
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": format!("mail {EMAIL}")}]})
        .to_string();
    let url = "https://api.openai.com/v1/chat/completions";
    assert_eq!(post(&guard, url, &[], body.clone()).await.status(), 403);

    write_policy(
        dir.path(),
        "name = \"broken\"\n[[rule]]\nname = \"x\"\naction = \"explode\"\n",
    );
    guard.wait_for_log("policy reload refused").await;
    let log = guard.log().join("\n");
    assert!(
        log.contains("policy.toml:4:10"),
        "the error names file, line and column"
    );
    assert_eq!(
        post(&guard, url, &[], body.clone()).await.status(),
        403,
        "old policy still in force"
    );

    let ready = guard
        .direct_client()
        .get(guard.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "still ready with the old policy");

    write_policy(dir.path(), &BLOCK_EMAILS.replace("\"block\"", "\"allow\""));
    guard.wait_for_log("policy reloaded").await;
    assert_eq!(post(&guard, url, &[], body.clone()).await.status(), 200);
    assert!(upstream.last_body().contains(EMAIL));

    let metrics = guard.metrics().await;
    assert!(
        metrics.contains("egress_guard_policy_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("egress_guard_policy_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_personal_key_is_refused_and_a_trial_rule_only_records() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sanctioned = "sk-company-0001";
    write_policy(
        dir.path(),
        &format!(
            r#"
            name = "keys"
            [[destination]]
            hosts = ["@ai"]
            route = "inspect"
            [sanctioned_keys]
            salt = "acme"
            fingerprints = ["{}"]
            [[rule]]
            name = "block-emails-later"
            detector = ["pii.email"]
            action = "block"
            stage = "trial"
            "#,
            egress_guard::policy::loader::key_fingerprint("acme", sanctioned)
        ),
    );
    let policy = dir.path().display().to_string();
    let guard = guard(&upstream, &["--policy", &policy]);
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": format!("mail {EMAIL}")}]})
        .to_string();
    let url = "https://api.openai.com/v1/chat/completions";

    let response = post(
        &guard,
        url,
        &[("authorization", "Bearer sk-my-own-key")],
        body.clone(),
    )
    .await;
    assert_eq!(response.status(), 403);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("sanctioned key"));
    assert!(upstream.requests().is_empty());

    let auth = format!("Bearer {sanctioned}");
    let response = post(
        &guard,
        url,
        &[("authorization", auth.as_str())],
        body.clone(),
    )
    .await;
    assert_eq!(response.status(), 200, "the trial rule does not block");
    assert_eq!(upstream.last_request().unwrap().body, body.as_bytes());
}

#[tokio::test]
async fn customer_data_can_be_sent_to_a_local_model_instead_of_the_cloud() {
    let cloud = FakeUpstream::start().await;
    // Stands in for Ollama on localhost: a plain-HTTP server the policy names.
    let local = FakeUpstream::start_plain().await;
    let dir = tempfile::tempdir().unwrap();
    write_policy(
        dir.path(),
        &format!(
            r#"
            name = "local-first"
            [[destination]]
            hosts = ["@ai"]
            route = "inspect"
            [[local]]
            name = "ollama"
            url = "http://{}"
            [[rule]]
            name = "customer-data-stays-here"
            category = ["pii"]
            action = "local"
            local = "ollama"
            "#,
            local.addr()
        ),
    );
    let guard = guard(&cloud, &["--policy", dir.path().to_str().unwrap()]);

    let with_email = json!({"model": "gpt-4o", "messages": [
        {"role": "user", "content": "Draft a reply to jane.doe@acme-corp.com about her invoice"}]});
    let reply = post(
        &guard,
        "https://api.openai.com/v1/chat/completions",
        &[],
        with_email.to_string(),
    )
    .await;
    assert_eq!(reply.status(), 200);
    assert!(reply.headers().contains_key("x-egress-guard-decision"));
    assert_eq!(cloud.requests().len(), 0, "nothing went to the cloud");
    assert_eq!(local.requests().len(), 1, "the local model got the request");
    assert!(local.last_body().contains("jane.doe@acme-corp.com"));

    let plain = json!({"model": "gpt-4o", "messages": [
        {"role": "user", "content": "Explain Rust lifetimes"}]});
    let reply = post(
        &guard,
        "https://api.openai.com/v1/chat/completions",
        &[],
        plain.to_string(),
    )
    .await;
    assert_eq!(reply.status(), 200);
    assert_eq!(
        cloud.requests().len(),
        1,
        "ordinary traffic still goes to the cloud"
    );
    assert_eq!(local.requests().len(), 1);
}
