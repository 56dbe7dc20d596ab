//! The fake upstream, exercised directly by a real TLS client that trusts only the fake's own CA.
//! Every other integration test relies on these replies being right, so they are checked here
//! before any proxy is involved.

mod support;

use std::time::Duration;

use reqwest::{Client, Response, Version};
use serde_json::{json, Value};
use support::upstream::{FakeUpstream, HOSTS};

#[derive(Clone, Copy, Debug)]
enum Http {
    H1,
    H2,
}

/// A client that resolves every fake host to the upstream and trusts nothing but its CA.
fn client(upstream: &FakeUpstream, http: Http) -> Client {
    let ca = std::fs::read(upstream.ca_pem_path()).expect("read CA");
    let mut builder = Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA PEM parses"))
        .no_proxy()
        // A guard against a hung test, not a timing assertion.
        .timeout(Duration::from_secs(30));
    for host in HOSTS {
        builder = builder.resolve(host, upstream.addr());
    }
    builder = match http {
        Http::H1 => builder.http1_only(),
        Http::H2 => builder,
    };
    builder.build().expect("client builds")
}

fn url(upstream: &FakeUpstream, host: &str, path: &str) -> String {
    format!("https://{host}:{}{path}", upstream.addr().port())
}

fn expected_version(http: Http) -> Version {
    match http {
        Http::H1 => Version::HTTP_11,
        Http::H2 => Version::HTTP_2,
    }
}

async fn post(c: &Client, url: String, body: Value) -> Response {
    c.post(url)
        .json(&body)
        .send()
        .await
        .expect("request reaches the fake upstream")
}

/// Splits an SSE body into (event name, data) pairs.
fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = None;
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (name, data)
        })
        .collect()
}

fn content_type(r: &Response) -> String {
    r.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn anthropic_json_and_sse(http: Http) {
    let up = FakeUpstream::start().await;
    let c = client(&up, http);
    let u = url(&up, "api.anthropic.com", "/v1/messages");
    let req = json!({"model": "claude-sonnet-4-5", "max_tokens": 64,
                     "messages": [{"role": "user", "content": "first"},
                                  {"role": "assistant", "content": "ok"},
                                  {"role": "user", "content": [{"type": "text", "text": "hello there, fake Claude"}]}]});

    let r = post(&c, u.clone(), req.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), expected_version(http));
    assert!(content_type(&r).starts_with("application/json"));
    assert_eq!(r.headers()["x-fake-upstream"], "1");
    assert!(r.headers()["request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(v["content"][0]["text"], "hello there, fake Claude");
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);

    let mut sreq = req;
    sreq["stream"] = json!(true);
    let r = post(&c, u, sreq).await;
    assert_eq!(r.status(), 200);
    assert!(content_type(&r).starts_with("text/event-stream"));
    let events = sse_events(&r.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    for (name, data) in &events {
        let v: Value = serde_json::from_str(data).expect("every data line is JSON");
        assert_eq!(
            v["type"],
            name.as_deref().unwrap(),
            "event name matches data type"
        );
    }
    let deltas: Vec<String> = events
        .iter()
        .filter(|(n, _)| n.as_deref() == Some("content_block_delta"))
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["delta"]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(deltas.len() >= 2, "several deltas: {deltas:?}");
    assert_eq!(deltas.concat(), "hello there, fake Claude");
    for needed in ["content_block_start", "content_block_stop", "message_delta"] {
        assert!(names.contains(&needed), "missing {needed} in {names:?}");
    }

    let r = post(
        &c,
        url(&up, "api.anthropic.com", "/v1/messages/count_tokens"),
        json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.json::<Value>().await.unwrap()["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    let seen = up.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].host, "api.anthropic.com");
    assert_eq!(seen[0].path, "/v1/messages");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].version, expected_version(http));
    // The Host the upstream saw, as a header for both versions (HTTP/2 sends `:authority`).
    assert_eq!(
        seen[0].headers["host"],
        format!("api.anthropic.com:{}", up.addr().port()).as_str()
    );
    assert!(up.last_body().contains("\"hi\""));
}

#[tokio::test]
async fn anthropic_messages_over_http1() {
    anthropic_json_and_sse(Http::H1).await;
}

#[tokio::test]
async fn anthropic_messages_over_http2() {
    anthropic_json_and_sse(Http::H2).await;
}

async fn openai_chat_and_responses(http: Http) {
    let up = FakeUpstream::start().await;
    let c = client(&up, http);
    let chat = url(&up, "api.openai.com", "/v1/chat/completions");
    let req = json!({"model": "gpt-4o", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "tell me about the weather"}]});

    let r = post(&c, chat.clone(), req.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), expected_version(http));
    assert!(r.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "tell me about the weather"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let mut sreq = req;
    sreq["stream"] = json!(true);
    sreq["stream_options"] = json!({"include_usage": true});
    let r = post(&c, chat, sreq).await;
    assert!(content_type(&r).starts_with("text/event-stream"));
    let events = sse_events(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap().1, "[DONE]");
    assert!(
        events.iter().all(|(name, _)| name.is_none()),
        "chat chunks carry no event names"
    );
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "tell me about the weather");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    assert!(
        chunks.last().unwrap()["usage"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    let responses = url(&up, "api.openai.com", "/v1/responses");
    let req = json!({"model": "gpt-5", "instructions": "you are codex",
        "input": [{"type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": "list the files"}]}]});
    let v: Value = post(&c, responses.clone(), req.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(v["output"][0]["content"][0]["text"], "list the files");

    let mut sreq = req;
    sreq["stream"] = json!(true);
    let r = post(&c, responses, sreq).await;
    assert!(content_type(&r).starts_with("text/event-stream"));
    let events = sse_events(&r.text().await.unwrap());
    for (seq, (name, data)) in events.iter().enumerate() {
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["type"], name.as_deref().unwrap());
        assert_eq!(v["sequence_number"], seq);
    }
    assert_eq!(events[0].0.as_deref(), Some("response.created"));
    let (last_name, last_data) = events.last().unwrap();
    assert_eq!(last_name.as_deref(), Some("response.completed"));
    let done: Value = serde_json::from_str(last_data).unwrap();
    assert_eq!(
        done["response"]["output"][0]["content"][0]["text"],
        "list the files"
    );
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n.as_deref() == Some("response.output_text.delta"))
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["delta"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(deltas, "list the files");

    let r = c
        .get(url(&up, "api.openai.com", "/v1/models"))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert!(!v["data"].as_array().unwrap().is_empty());

    assert!(up.requests().iter().all(|r| r.host == "api.openai.com"));
}

#[tokio::test]
async fn openai_chat_and_responses_over_http1() {
    openai_chat_and_responses(Http::H1).await;
}

#[tokio::test]
async fn openai_chat_and_responses_over_http2() {
    openai_chat_and_responses(Http::H2).await;
}

async fn gemini_generate_and_stream(http: Http) {
    let up = FakeUpstream::start().await;
    let c = client(&up, http);
    let host = "generativelanguage.googleapis.com";
    let req = json!({"contents": [{"role": "user", "parts": [{"text": "summarise this repo"}]}]});

    let r = post(
        &c,
        url(&up, host, "/v1beta/models/gemini-2.5-pro:generateContent"),
        req.clone(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), expected_version(http));
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "summarise this repo"
    );
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    assert_eq!(v["modelVersion"], "gemini-2.5-pro");

    let r = post(
        &c,
        url(
            &up,
            host,
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
        ),
        req,
    )
    .await;
    assert!(content_type(&r).starts_with("text/event-stream"));
    let events = sse_events(&r.text().await.unwrap());
    assert!(events.len() >= 2);
    let text: String = events
        .iter()
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["candidates"][0]["content"]["parts"][0]
                ["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, "summarise this repo");
    let last: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        up.last_request().unwrap().path,
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    );
}

#[tokio::test]
async fn gemini_generate_and_stream_over_http1() {
    gemini_generate_and_stream(Http::H1).await;
}

#[tokio::test]
async fn gemini_generate_and_stream_over_http2() {
    gemini_generate_and_stream(Http::H2).await;
}

#[tokio::test]
async fn echo_bytes_and_unknown_paths() {
    let up = FakeUpstream::start().await;
    for http in [Http::H1, Http::H2] {
        let c = client(&up, http);
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let r = c
            .post(url(&up, "tunnel.example.test", "/echo"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), body.as_slice());

        let r = c
            .get(url(&up, "localhost", "/bytes/100"))
            .send()
            .await
            .unwrap();
        let b = r.bytes().await.unwrap();
        assert_eq!(b.len(), 100);
        assert!(b.starts_with(b"abcdefghijklmnopqrstuvwxyz0123456789\nabc"));

        let r = c
            .get(url(&up, "api.openai.com", "/nope"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["x-fake-upstream"], "1");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains("/nope"));
    }
    let hosts: Vec<String> = up.requests().into_iter().map(|r| r.host).collect();
    assert_eq!(
        hosts[..3],
        ["tunnel.example.test", "localhost", "api.openai.com"]
    );
}

/// The gate holds a stream after its first event: the client has the first event in hand, the
/// server says it is parked, nothing more has arrived; after release, the rest arrives.
async fn gated_stream(http: Http) {
    let up = FakeUpstream::start().await;
    let c = client(&up, http);
    let gate = up.gate_next_stream();
    let mut r = post(
        &c,
        url(&up, "api.anthropic.com", "/v1/messages"),
        json!({"model": "m", "stream": true, "max_tokens": 5,
               "messages": [{"role": "user", "content": "held then released"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);

    let mut seen = String::new();
    while !seen.contains("\n\n") {
        let chunk = r
            .chunk()
            .await
            .unwrap()
            .expect("first event arrives before release");
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    gate.held().await;
    let events = sse_events(&seen);
    assert_eq!(
        events.len(),
        1,
        "only the first event before release: {seen:?}"
    );
    assert_eq!(events[0].0.as_deref(), Some("message_start"));

    gate.release();
    while let Some(chunk) = r.chunk().await.unwrap() {
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let events = sse_events(&seen);
    assert_eq!(events.last().unwrap().0.as_deref(), Some("message_stop"));
    assert!(events.len() > 5);

    // The gate was for one stream only: the next one flows straight through.
    let r = post(
        &c,
        url(&up, "api.anthropic.com", "/v1/messages"),
        json!({"model": "m", "stream": true, "max_tokens": 5,
               "messages": [{"role": "user", "content": "free"}]}),
    )
    .await;
    assert!(r.text().await.unwrap().contains("message_stop"));
}

#[tokio::test]
async fn gated_stream_over_http1() {
    gated_stream(Http::H1).await;
}

#[tokio::test]
async fn gated_stream_over_http2() {
    gated_stream(Http::H2).await;
}

#[tokio::test]
async fn a_gate_released_before_the_stream_starts_does_not_hold_it() {
    let up = FakeUpstream::start().await;
    let c = client(&up, Http::H2);
    let gate = up.gate_next_stream();
    gate.release();
    let r = post(
        &c,
        url(&up, "api.openai.com", "/v1/chat/completions"),
        json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn untrusted_upstream_has_a_different_ca() {
    let trusted = FakeUpstream::start().await;
    let untrusted = FakeUpstream::start_untrusted().await;
    let a = std::fs::read(trusted.ca_pem_path()).unwrap();
    let b = std::fs::read(untrusted.ca_pem_path()).unwrap();
    assert_ne!(a, b);

    // A client trusting the first CA refuses the second server...
    let ca = reqwest::Certificate::from_pem(&a).unwrap();
    let c = Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .resolve("api.anthropic.com", untrusted.addr())
        .no_proxy()
        .build()
        .unwrap();
    let err = c
        .get(url(&untrusted, "api.anthropic.com", "/v1/models"))
        .send()
        .await
        .expect_err("an untrusted CA fails the handshake");
    assert!(err.is_connect(), "{err:?}");
    assert!(untrusted.requests().is_empty());

    // ...while its own CA works.
    let r = client(&untrusted, Http::H2)
        .get(url(&untrusted, "api.openai.com", "/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn plain_upstream_speaks_http1_without_tls() {
    let up = FakeUpstream::start_plain().await;
    assert!(!up.is_tls());
    let c = Client::builder().no_proxy().http1_only().build().unwrap();
    let r = c
        .post(format!("http://{}/echo", up.addr()))
        .body("plain text")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), Version::HTTP_11);
    assert_eq!(r.text().await.unwrap(), "plain text");
    assert_eq!(up.last_body(), "plain text");
    assert_eq!(up.last_request().unwrap().host, "127.0.0.1");
    assert!(up.resolve_args()[0].starts_with("api.anthropic.com:80=127.0.0.1:"));
}

#[tokio::test]
async fn resolve_args_pin_every_host_to_this_server() {
    let up = FakeUpstream::start().await;
    let args = up.resolve_args();
    assert_eq!(args.len(), HOSTS.len());
    for (arg, host) in args.iter().zip(HOSTS) {
        assert_eq!(arg, &format!("{host}:443={}", up.addr()));
    }
}

/// The official Python SDKs (anthropic, openai, google-genai) drive the fake directly and accept
/// every reply, JSON and streamed. Needs the SDKs installed, so it is opt-in:
/// `pip install anthropic openai google-genai` then
/// `EGRESS_GUARD_SDK_PYTHON=python3 cargo test --test upstream_selftest -- --ignored`.
#[tokio::test]
#[ignore = "needs the Python SDKs; see the doc comment"]
async fn official_python_sdks_accept_the_replies() {
    let up = FakeUpstream::start().await;
    let python = std::env::var("EGRESS_GUARD_SDK_PYTHON").unwrap_or_else(|_| "python3".into());
    let base = format!("https://localhost:{}", up.addr().port());
    let out = tokio::process::Command::new(python)
        .arg("-c")
        .arg(SDK_CHECK)
        .arg(&base)
        .env("SSL_CERT_FILE", up.ca_pem_path())
        .env("REQUESTS_CA_BUNDLE", up.ca_pem_path())
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .output()
        .await
        .expect("run the Python SDK check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("SDKS OK"),
        "SDK check failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(up.requests().len() >= 10);
}

/// A coding agent (Claude Code, Codex CLI, Gemini CLI, ...) run against the fake directly.
/// `EGRESS_GUARD_AGENT_CMD` is a shell command; it gets `FAKE_BASE` (`https://localhost:PORT`) and
/// `FAKE_CA` (the CA's PEM path) and must print `EGRESS_GUARD_AGENT_EXPECT`. Run it in a network
/// namespace with only loopback so an agent's own telemetry cannot leave the machine:
/// `unshare -n sh -c 'ip link set lo up && EGRESS_GUARD_AGENT_CMD=... target/debug/deps/upstream_selftest-* --ignored agent'`.
/// Commands that passed (Claude Code 2.x, Codex CLI 0.171, Gemini CLI 0.61; expect `hello <agent>`):
/// - `ANTHROPIC_BASE_URL=$FAKE_BASE ANTHROPIC_API_KEY=sk-ant-fake NODE_EXTRA_CA_CERTS=$FAKE_CA
///   CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 claude -p "hello claude"`
/// - `OPENAI_API_KEY=sk-fake SSL_CERT_FILE=$FAKE_CA codex exec --skip-git-repo-check
///   -c model_provider=fake -c 'model_providers.fake={name="fake",base_url="'$FAKE_BASE'/v1",env_key="OPENAI_API_KEY",wire_api="responses"}'
///   -m gpt-5 "hello codex"`
/// - `GEMINI_CLI_TRUST_WORKSPACE=true GEMINI_API_KEY=fake GOOGLE_GEMINI_BASE_URL=$FAKE_BASE
///   NODE_EXTRA_CA_CERTS=$FAKE_CA gemini -p "hello gemini"` (with `~/.gemini/settings.json`
///   selecting `"security":{"auth":{"selectedType":"gemini-api-key"}}`)
#[tokio::test]
#[ignore = "needs an agent installed; see the doc comment"]
async fn a_real_agent_accepts_the_replies() {
    let cmd = std::env::var("EGRESS_GUARD_AGENT_CMD").expect("EGRESS_GUARD_AGENT_CMD");
    let expect = std::env::var("EGRESS_GUARD_AGENT_EXPECT").expect("EGRESS_GUARD_AGENT_EXPECT");
    let up = FakeUpstream::start().await;
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .env(
            "FAKE_BASE",
            format!("https://localhost:{}", up.addr().port()),
        )
        .env("FAKE_CA", up.ca_pem_path())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run the agent");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let paths: Vec<String> = up
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        out.status.success() && stdout.contains(&expect),
        "agent failed ({})\nrequests: {paths:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    eprintln!("agent requests: {paths:?}");
}

/// Each call checks the text the SDK hands its user, so a malformed field fails loudly.
const SDK_CHECK: &str = r##"import os, sys
base = sys.argv[1]  # https://localhost:PORT
import anthropic, openai
a = anthropic.Anthropic(api_key="sk-ant-test", base_url=base, max_retries=0)
m = a.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "hello anthropic"}])
assert m.content[0].text == "hello anthropic", m
with a.messages.stream(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "streamed anthropic"}]) as s:
    text = "".join(s.text_stream)
    final = s.get_final_message()
assert text == "streamed anthropic", text
assert final.stop_reason == "end_turn", final
n = a.messages.count_tokens(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "x"}])
assert n.input_tokens > 0
o = openai.OpenAI(api_key="sk-test", base_url=base + "/v1", max_retries=0)
c = o.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello openai"}])
assert c.choices[0].message.content == "hello openai", c
st = o.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "streamed openai"}], stream=True, stream_options={"include_usage": True})
parts = []
usage = None
for ch in st:
    if ch.choices and ch.choices[0].delta.content:
        parts.append(ch.choices[0].delta.content)
    if ch.usage: usage = ch.usage
assert "".join(parts) == "streamed openai", parts
assert usage and usage.total_tokens > 0
r = o.responses.create(model="gpt-5", input="hello responses")
assert r.output_text == "hello responses", r
with o.responses.stream(model="gpt-5", input=[{"role": "user", "content": "streamed responses"}]) as rs:
    deltas = [e.delta for e in rs if e.type == "response.output_text.delta"]
    fr = rs.get_final_response()
assert "".join(deltas) == "streamed responses", deltas
assert fr.output_text == "streamed responses"
assert len(o.models.list().data) > 0
try:
    o.get("/nope", cast_to=object)
    raise SystemExit("404 expected")
except openai.NotFoundError:
    pass
try:
    from google import genai
    from google.genai import types
    g = genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=base))
    gr = g.models.generate_content(model="gemini-2.5-pro", contents="hello gemini")
    assert gr.text == "hello gemini", gr
    gs = "".join(ch.text or "" for ch in g.models.generate_content_stream(model="gemini-2.5-pro", contents="streamed gemini"))
    assert gs == "streamed gemini", gs
except ImportError:
    print("google-genai not installed; Gemini skipped")
print("SDKS OK")
"##;
