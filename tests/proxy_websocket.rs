//! WebSockets to an inspected host with `settings.websocket = "inspect"` (Codex CLI's Responses
//! socket, the Realtime API): every client message is read like a request body and decided by
//! the policy before anything of it leaves; the real binary, real TLS on loopback, a fake
//! upstream that records what reaches it and echoes each message back.

mod support;

use std::path::Path;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::guard::{wire, Guard};
use support::upstream::{FakeUpstream, WsEvent};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

type Socket = WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Made up for these tests, in the documented shape of an AWS access key id.
const AWS_KEY: &str = "AKIAQ7RZ4MXW2KPL5TDN";
const PLACEHOLDER: &str = "[REDACTED:secret.aws_access_key_id]";
const EMAIL: &str = "jane.doe@acme-corp.com";

/// The shipped default policy with WebSockets inspected.
fn inspecting_default(dir: &Path) {
    default_with_websocket(dir, "inspect");
}

/// The shipped default policy with `settings.websocket = mode`.
fn default_with_websocket(dir: &Path, mode: &str) {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/default.toml"),
    )
    .expect("the shipped policy");
    let inspecting = shipped
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("websocket =") {
                format!("websocket = \"{mode}\"")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("policy.toml"), inspecting).expect("write policy");
}

/// A policy that blocks every credential, on WebSockets inspected.
fn blocking(dir: &Path) {
    std::fs::write(
        dir.join("policy.toml"),
        r#"
        name = "no-credentials"
        [settings]
        websocket = "inspect"
        [[destination]]
        hosts = ["@ai"]
        route = "inspect"
        [[rule]]
        name = "credentials-never-leave"
        category = ["secret"]
        action = "block"
        "#,
    )
    .expect("write policy");
}

/// The fake upstream, and the real binary with the policy `write` puts in a fresh directory.
async fn start(
    write: impl FnOnce(&Path),
    extra: &[&str],
) -> (FakeUpstream, Guard, tempfile::TempDir) {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("policy dir");
    write(dir.path());
    let guard = guard_with(&upstream, dir.path(), extra);
    (upstream, guard, dir)
}

fn guard_with(upstream: &FakeUpstream, policy: &Path, extra: &[&str]) -> Guard {
    let mut args = vec!["--policy", policy.to_str().expect("UTF-8 path")];
    args.extend_from_slice(extra);
    Guard::for_upstream(upstream.resolve_args(), upstream.ca_pem_path(), &args)
}

/// Opens `wss://api.openai.com{path}` through the proxy as Codex CLI does (offering
/// permessage-deflate, which the proxy must not let through), trusting only the guard's CA.
async fn open(
    guard: &Guard,
    path: &str,
) -> Result<
    (
        Socket,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    WsError,
> {
    let (head, tunnel) = wire::connect(guard.proxy, "api.openai.com:443").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let tls = wire::tls(tunnel, "api.openai.com", &guard.ca_pem(), &[b"http/1.1"]).await;
    let mut request = format!("wss://api.openai.com{path}")
        .into_client_request()
        .expect("request");
    let headers = request.headers_mut();
    headers.insert("authorization", "Bearer sk-test".parse().expect("value"));
    headers.insert(
        "openai-beta",
        "responses_websockets=2026-02-06".parse().expect("value"),
    );
    headers.insert(
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits"
            .parse()
            .expect("value"),
    );
    headers.insert("user-agent", "codex_cli_rs/0.170.0".parse().expect("value"));
    tokio_tungstenite::client_async(request, tls).await
}

fn response_create(text: &str) -> String {
    json!({
        "type": "response.create",
        "model": "gpt-5-codex",
        "instructions": "You are a coding agent.",
        "input": [{"type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": text}]}],
        "stream": true
    })
    .to_string()
}

/// The next data message the client gets (text), skipping control frames.
async fn next_text(socket: &mut Socket) -> String {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return text.as_str().to_owned(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// What the client gets once a message is refused: the error event, then the close frame.
async fn refusal(socket: &mut Socket) -> (Value, u16, String) {
    let event: Value = serde_json::from_str(&next_text(socket).await).expect("a JSON event");
    match socket.next().await {
        Some(Ok(Message::Close(Some(frame)))) => (
            event,
            u16::from(frame.code),
            frame.reason.as_str().to_owned(),
        ),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

fn texts(events: &[WsEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            WsEvent::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_benign_response_create_reaches_the_api_unchanged_and_the_reply_comes_back() {
    let (upstream, guard, _policy) = start(inspecting_default, &[]).await;

    let (mut socket, response) = open(&guard, "/v1/responses").await.expect("upgraded");
    assert_eq!(response.status(), 101);
    assert!(response.headers().contains_key("x-egress-guard-decision"));
    assert!(!response.headers().contains_key("sec-websocket-extensions"));

    let message = response_create("Review: fn add(a: i32, b: i32) -> i32 { a - b }");
    socket
        .send(Message::text(message.clone()))
        .await
        .expect("send");
    let echoed = next_text(&mut socket).await;
    assert_eq!(echoed, message, "the upstream's reply reaches the client");
    let events = upstream.wait_ws_events(1).await;
    assert_eq!(
        texts(&events),
        [message.as_str()],
        "byte-identical upstream"
    );

    let upgrade = upstream.last_request().expect("the upgrade request");
    assert_eq!(upgrade.path, "/v1/responses");
    assert!(
        !upgrade.headers.contains_key("sec-websocket-extensions"),
        "compression is never negotiated: messages must arrive readable"
    );
    assert_eq!(upgrade.headers["authorization"], "Bearer sk-test");

    // Each message is its own decision, recorded and tied to the upgrade's decision.
    let upgrade_id = response.headers()["x-egress-guard-decision"]
        .to_str()
        .expect("ASCII");
    guard
        .wait_for_log(&format!(
            r#""websocket":{{"connection":"{upgrade_id}","message":1}}"#
        ))
        .await;
}

#[tokio::test]
async fn the_shipped_policy_keeps_codex_on_its_socket_and_inspects_it() {
    let upstream = FakeUpstream::start().await;
    let guard = Guard::for_upstream(upstream.resolve_args(), upstream.ca_pem_path(), &[]);
    let (mut socket, response) = open(&guard, "/v1/responses").await.expect("upgraded");
    assert_eq!(response.status(), 101);

    let benign = response_create("explain this stack trace");
    socket
        .send(Message::text(benign.clone()))
        .await
        .expect("send");
    assert_eq!(next_text(&mut socket).await, benign);
    socket
        .send(Message::text(response_create(&format!("use {AWS_KEY}"))))
        .await
        .expect("send");
    let echoed = next_text(&mut socket).await;
    assert!(echoed.contains(PLACEHOLDER), "{echoed}");
    let events = upstream.wait_ws_events(2).await;
    assert_eq!(texts(&events)[0], benign);
    assert!(!texts(&events)[1].contains(AWS_KEY));
}

#[tokio::test]
async fn an_aws_key_in_a_message_is_redacted_before_it_leaves() {
    let (upstream, guard, _policy) = start(inspecting_default, &[]).await;
    let (mut socket, _) = open(&guard, "/v1/responses").await.expect("upgraded");

    socket
        .send(Message::text(response_create(&format!(
            "deploy with {AWS_KEY} please"
        ))))
        .await
        .expect("send");
    let echoed = next_text(&mut socket).await;
    let events = upstream.wait_ws_events(1).await;
    let sent = texts(&events);
    assert_eq!(sent.len(), 1);
    assert!(!sent[0].contains(AWS_KEY), "{}", sent[0]);
    assert!(sent[0].contains(PLACEHOLDER), "{}", sent[0]);
    let body: Value = serde_json::from_str(sent[0]).expect("still a JSON message");
    assert_eq!(body["type"], "response.create");
    assert!(echoed.contains(PLACEHOLDER));

    // The connection stays open for the next message.
    let next = response_create("thanks");
    socket
        .send(Message::text(next.clone()))
        .await
        .expect("send");
    assert_eq!(next_text(&mut socket).await, next);
}

#[tokio::test]
async fn a_blocked_message_closes_the_socket_with_the_reason_and_nothing_leaves() {
    let (upstream, guard, _policy) = start(blocking, &[]).await;
    let (mut socket, _) = open(&guard, "/v1/responses").await.expect("upgraded");

    socket
        .send(Message::text(response_create(&format!("key {AWS_KEY}"))))
        .await
        .expect("send");
    let (event, code, reason) = refusal(&mut socket).await;
    assert_eq!(code, 1008, "policy violation");
    assert!(reason.len() <= 123);
    assert!(reason.contains("secret.aws_access_key_id"), "{reason}");
    assert!(reason.contains("decision "), "{reason}");
    assert!(!reason.contains(AWS_KEY));
    // Shaped as the Responses API's own refusal, which Codex CLI shows instead of retrying.
    assert_eq!(event["type"], "response.failed");
    let error = &event["response"]["error"];
    assert_eq!(error["code"], "invalid_prompt");
    assert_eq!(error["type"], "egress_guard_blocked");
    let message = error["message"].as_str().expect("a message");
    assert!(message.contains("credentials-never-leave"), "{message}");
    assert!(!message.contains(AWS_KEY));

    // The upstream connection is closed as well, and nothing of the message reached it.
    let events = upstream.wait_ws_events(1).await;
    assert!(
        matches!(&events[0], WsEvent::Close(Some((1008, _)))),
        "{events:?}"
    );
    assert!(texts(&upstream.ws_events()).is_empty());
    // Counted like a blocked request.
    let metrics = guard.metrics().await;
    assert!(
        metrics.contains(r#"egress_guard_requests_total{action="block",provider="openai"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_client_that_drops_its_connection_closes_the_upstream_one_and_is_not_a_block() {
    let (upstream, guard, _policy) = start(inspecting_default, &[]).await;
    let (mut socket, _) = open(&guard, "/v1/responses").await.expect("upgraded");
    let message = response_create("hello");
    socket
        .send(Message::text(message.clone()))
        .await
        .expect("send");
    assert_eq!(next_text(&mut socket).await, message);
    // Gone without a closing handshake, as an agent that exits does.
    drop(socket);

    let events = upstream.wait_ws_events(2).await;
    assert!(
        matches!(&events[1], WsEvent::Close(Some((1001, _)))),
        "{events:?}"
    );
    let metrics = guard.metrics().await;
    assert!(!metrics.contains(r#"action="block""#), "{metrics}");
}

#[tokio::test]
async fn a_close_reason_from_the_client_does_not_leave() {
    // A close frame's reason is up to 123 bytes of the client's choosing: room for a key, and
    // no inspection reads it. Only the code goes on.
    let (upstream, guard, _policy) = start(inspecting_default, &[]).await;
    let (mut socket, _) = open(&guard, "/v1/responses").await.expect("upgraded");
    socket
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "AKIAQYLPMN5HHHFPZAM2".into(),
        })))
        .await
        .expect("close");
    let events = upstream.wait_ws_events(1).await;
    assert!(
        matches!(&events[0], WsEvent::Close(Some((1000, reason))) if reason.is_empty()),
        "{events:?}"
    );
}

#[tokio::test]
async fn stopping_the_proxy_closes_an_open_inspected_socket_and_exits_cleanly() {
    let (upstream, mut guard, _policy) = start(inspecting_default, &[]).await;
    let (mut socket, _) = open(&guard, "/v1/responses").await.expect("upgraded");
    let message = response_create("hello");
    socket
        .send(Message::text(message.clone()))
        .await
        .expect("send");
    assert_eq!(next_text(&mut socket).await, message);

    guard.terminate();
    match socket.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a going-away close, got {other:?}"),
    }
    let events = upstream.wait_ws_events(2).await;
    assert!(
        matches!(&events[1], WsEvent::Close(Some((1001, _)))),
        "{events:?}"
    );
    assert!(guard.exit_status().await.success());
}

#[tokio::test]
async fn a_binary_message_is_read_like_a_text_one() {
    let (upstream, guard, _policy) = start(inspecting_default, &[]).await;
    let (mut socket, _) = open(&guard, "/v1/realtime").await.expect("upgraded");

    let message = json!({"type": "conversation.item.create", "item": {"type": "message",
        "role": "user", "content": [{"type": "input_text", "text": format!("use {AWS_KEY}")}]}})
    .to_string();
    socket
        .send(Message::binary(message.into_bytes()))
        .await
        .expect("send");
    let events = upstream.wait_ws_events(1).await;
    match &events[0] {
        WsEvent::Binary(sent) => {
            let sent = String::from_utf8_lossy(sent);
            assert!(!sent.contains(AWS_KEY), "{sent}");
            assert!(sent.contains(PLACEHOLDER), "{sent}");
        }
        other => panic!("expected a binary message upstream, got {other:?}"),
    }
}

#[tokio::test]
async fn a_message_split_across_frames_is_reassembled_and_still_caught() {
    let (upstream, guard, _policy) = start(inspecting_default, &[]).await;
    let (mut socket, _) = open(&guard, "/v1/responses").await.expect("upgraded");

    // The key itself is cut in two, across the first and second frames.
    let message = response_create(&format!("deploy with {AWS_KEY} please"));
    let cut = message.find("AKIAQ7").expect("the key") + 6;
    let (a, rest) = message.split_at(cut);
    let (b, c) = rest.split_at(rest.len() / 2);
    let frames = [
        Frame::message(a.to_owned(), OpCode::Data(Data::Text), false),
        Frame::message(b.to_owned(), OpCode::Data(Data::Continue), false),
        Frame::message(c.to_owned(), OpCode::Data(Data::Continue), true),
    ];
    for frame in frames {
        socket
            .send(Message::Frame(frame))
            .await
            .expect("send a frame");
    }
    let _echo = next_text(&mut socket).await;
    let events = upstream.wait_ws_events(1).await;
    let sent = texts(&events);
    assert_eq!(sent.len(), 1, "one whole message upstream");
    assert!(!sent[0].contains("Q7RZ4MXW2KPL5TDN"), "{}", sent[0]);
    assert!(sent[0].contains(PLACEHOLDER), "{}", sent[0]);
}

#[tokio::test]
async fn a_large_message_is_inspected_whole() {
    let (upstream, guard, _policy) = start(inspecting_default, &[]).await;
    let (mut socket, _) = open(&guard, "/v1/responses").await.expect("upgraded");

    // Big enough to be checked on the blocking pool, with the key at its very end.
    let filler = "fn main() { println!(\"hello\"); }\n".repeat(12_000);
    let message = response_create(&format!("{filler}deploy with {AWS_KEY}"));
    assert!(message.len() > 300 * 1024);
    socket.send(Message::text(message)).await.expect("send");
    let echoed = next_text(&mut socket).await;
    let events = upstream.wait_ws_events(1).await;
    let sent = texts(&events);
    assert!(!sent[0].contains(AWS_KEY));
    assert!(sent[0].contains(PLACEHOLDER));
    assert_eq!(echoed, sent[0]);
}

#[tokio::test]
async fn a_message_over_the_limit_closes_the_socket_and_nothing_leaves() {
    let (upstream, guard, _policy) = start(inspecting_default, &["--max-body", "4KiB"]).await;
    let (mut socket, _) = open(&guard, "/v1/responses").await.expect("upgraded");

    let big = response_create(&"x".repeat(8 * 1024));
    // Sent as a fragmented message, so no single frame header gives its size away.
    let (a, b) = big.split_at(2 * 1024);
    socket
        .send(Message::Frame(Frame::message(
            a.to_owned(),
            OpCode::Data(Data::Text),
            false,
        )))
        .await
        .expect("send");
    // The proxy may close before it reads the rest; whether this send succeeds is not the point.
    let _ = socket
        .send(Message::Frame(Frame::message(
            b.to_owned(),
            OpCode::Data(Data::Continue),
            true,
        )))
        .await;
    match socket.next().await {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1009, "message too big");
            assert!(frame.reason.contains("4 KiB"), "{}", frame.reason);
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    let events = upstream.wait_ws_events(1).await;
    assert!(matches!(&events[0], WsEvent::Close(_)), "{events:?}");
    assert!(texts(&upstream.ws_events()).is_empty());
}

#[tokio::test]
async fn pseudonymized_data_goes_out_as_a_surrogate_and_comes_back_restored() {
    let (upstream, guard, _policy) = start(inspecting_default, &[]).await;
    let (mut socket, _) = open(&guard, "/v1/responses").await.expect("upgraded");

    let message = response_create(&format!("write to {EMAIL} about the invoice"));
    socket.send(Message::text(message)).await.expect("send");
    let echoed = next_text(&mut socket).await;
    let events = upstream.wait_ws_events(1).await;
    let sent = texts(&events);
    assert!(!sent[0].contains(EMAIL), "{}", sent[0]);
    assert!(sent[0].contains("@example.invalid"), "{}", sent[0]);
    // The upstream echoed the surrogate; the client reads its own value again.
    assert!(echoed.contains(EMAIL), "{echoed}");
    assert!(!echoed.contains("@example.invalid"), "{echoed}");
}

#[tokio::test]
async fn realtime_events_are_read_whole_whatever_their_shape() {
    let (upstream, guard, _policy) = start(blocking, &[]).await;
    let (mut socket, _) = open(&guard, "/v1/realtime?model=gpt-realtime")
        .await
        .expect("upgraded");

    let benign =
        json!({"type": "session.update", "session": {"instructions": "be brief"}}).to_string();
    socket
        .send(Message::text(benign.clone()))
        .await
        .expect("send");
    assert_eq!(next_text(&mut socket).await, benign);

    let item = json!({"type": "conversation.item.create", "item": {"type": "message",
        "role": "user", "content": [{"type": "input_text", "text": format!("use {AWS_KEY}")}]}});
    socket
        .send(Message::text(item.to_string()))
        .await
        .expect("send");
    let (event, code, reason) = refusal(&mut socket).await;
    assert_eq!(event["type"], "error", "the Realtime API's error event");
    assert!(event["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("credentials-never-leave")));
    assert_eq!(code, 1008);
    assert!(reason.contains("secret.aws_access_key_id"), "{reason}");
    let events = upstream.wait_ws_events(2).await;
    assert_eq!(texts(&events), [benign.as_str()]);
}

#[tokio::test]
async fn the_refuse_setting_still_answers_426_and_nothing_reaches_the_api() {
    let (upstream, guard, _policy) = start(|dir| default_with_websocket(dir, "refuse"), &[]).await;
    match open(&guard, "/v1/responses").await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), 426);
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                    .expect("a JSON error");
            assert_eq!(body["error"]["code"], "websocket_refused");
        }
        other => panic!(
            "expected a refused upgrade, got {:?}",
            other.map(|(_, r)| r)
        ),
    }
    assert!(upstream.requests().is_empty());
}

/// Runs `codex exec PROMPT` through `guard` against the fake upstream behind it: a throwaway
/// CODEX_HOME, a provider for `https://api.openai.com/v1` that supports WebSockets, the proxy as
/// HTTPS_PROXY and its CA as the only extra root. Returns (success, stdout, stderr).
async fn run_codex(guard: &Guard, prompt: &str) -> (bool, String, String) {
    let home = tempfile::tempdir().expect("CODEX_HOME");
    let provider = "model_providers.fake={name=\"fake\",base_url=\"https://api.openai.com/v1\",\
        env_key=\"OPENAI_API_KEY\",wire_api=\"responses\",supports_websockets=true}";
    let out = tokio::process::Command::new("codex")
        .args([
            "exec",
            "--skip-git-repo-check",
            "-c",
            "model_provider=fake",
            "-c",
            provider,
        ])
        .args(["-m", "gpt-5", prompt])
        .env("CODEX_HOME", home.path())
        .env("OPENAI_API_KEY", "sk-fake")
        .env("HTTPS_PROXY", guard.proxy_url())
        .env("https_proxy", guard.proxy_url())
        .env("SSL_CERT_FILE", &guard.ca_path)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run codex");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn paths(upstream: &FakeUpstream) -> Vec<String> {
    upstream
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// Codex CLI itself on its Responses WebSocket, through the proxy with the shipped policy, against
/// the fake upstream: it keeps its socket (no fallback to HTTPS), its prompt arrives inspected
/// (the key redacted) and the reply reaches it. Opt-in: needs `codex` on PATH (tried with 0.171),
/// and must run where only loopback exists, so Codex's own traffic cannot leave the machine:
/// `cargo test --no-run --test proxy_websocket` then
/// `unshare -n sh -c 'ip link set lo up && target/debug/deps/proxy_websocket-* --ignored codex'`.
#[tokio::test]
#[ignore = "needs Codex CLI and a loopback-only network; see the doc comment"]
async fn codex_cli_keeps_its_websocket_and_the_key_stays_home() {
    let upstream = FakeUpstream::start().await;
    upstream.answer_websockets_like_the_responses_api();
    let guard = Guard::for_upstream(upstream.resolve_args(), upstream.ca_pem_path(), &[]);
    let (ok, stdout, stderr) =
        run_codex(&guard, &format!("hello codex, deploy with {AWS_KEY}")).await;
    let paths = paths(&upstream);
    assert!(
        ok && stdout.contains("hello codex"),
        "codex failed\nrequests: {paths:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        !paths.iter().any(|p| p.starts_with("POST /v1/responses")),
        "Codex fell back to HTTPS: {paths:?}"
    );
    let events = upstream.ws_events();
    let sent = texts(&events);
    assert!(!sent.is_empty(), "no message on the socket: {events:?}");
    assert!(sent.iter().all(|m| !m.contains(AWS_KEY)));
    assert!(sent.iter().any(|m| m.contains(PLACEHOLDER)), "{sent:?}");
}

/// Same set-up with a policy that blocks credentials: Codex shows its user why (opt-in, as above).
#[tokio::test]
#[ignore = "needs Codex CLI and a loopback-only network; see the doc comment above"]
async fn codex_cli_shows_why_a_message_was_blocked() {
    let (upstream, guard, _policy) = start(blocking, &[]).await;
    upstream.answer_websockets_like_the_responses_api();
    let (ok, stdout, stderr) = run_codex(&guard, &format!("deploy with {AWS_KEY}")).await;
    eprintln!(
        "codex ok={ok}\nstdout:\n{stdout}\nstderr:\n{stderr}\nrequests: {:?}",
        paths(&upstream)
    );
    assert!(texts(&upstream.ws_events())
        .iter()
        .all(|m| !m.contains(AWS_KEY)));
    assert!(upstream
        .requests()
        .iter()
        .all(|r| !r.body_text().contains(AWS_KEY)));
    let shown = format!("{stdout}{stderr}");
    assert!(shown.contains("egress-guard blocked"), "{shown}");
    // Shown at once: no retries of the blocked message, no fallback to HTTPS.
    assert_eq!(paths(&upstream), ["GET /v1/responses"]);
    assert!(
        !shown.contains("Q7RZ4MXW2KPL5TDN") || shown.contains(&format!("deploy with {AWS_KEY}"))
    );
}
