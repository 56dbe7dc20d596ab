//! Streaming and limits: SSE reaches the agent event by event, never buffered whole; a body over
//! the limit is refused in the provider's own shape; a stop lets an in-flight stream finish.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use support::guard::Guard;
use support::upstream::FakeUpstream;

const STREAMING: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"stream this back"}]}"#;

/// Bound on waiting for an event that must come (the test fails instead of hanging).
const PATIENCE: Duration = Duration::from_secs(30);

async fn next_chunk(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
) -> Option<bytes::Bytes> {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("the next chunk must arrive while the upstream is still streaming")
        .map(|r| r.expect("chunk"))
}

/// Starts a streamed Claude request through the guard. Bounded: a proxy that buffered the
/// response would never even send its head while the upstream holds the rest.
async fn start_stream(guard: &Guard) -> reqwest::Response {
    tokio::time::timeout(
        PATIENCE,
        guard
            .client()
            .post("https://api.anthropic.com/v1/messages")
            .header("content-type", "application/json")
            .body(STREAMING)
            .send(),
    )
    .await
    .expect("the response head must arrive while the upstream is still streaming")
    .expect("stream starts")
}

#[tokio::test]
async fn sse_events_reach_the_client_while_the_upstream_is_still_holding_the_rest() {
    let upstream = FakeUpstream::start().await;
    let guard = Guard::for_upstream(upstream.resolve_args(), upstream.ca_pem_path(), &[]);
    let gate = upstream.gate_next_stream();

    let response = start_stream(&guard).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-egress-guard-decision"));
    let mut stream = response.bytes_stream();

    // The upstream has sent only its first event and waits for `release`: if the proxy buffered
    // the response, this would never arrive.
    let first = next_chunk(&mut stream).await.expect("first event");
    let first = String::from_utf8_lossy(&first).to_string();
    assert!(first.contains("message_start"), "{first}");
    assert!(
        !first.contains("message_stop"),
        "only the first event so far"
    );

    gate.release();
    let mut rest = String::new();
    while let Some(chunk) = next_chunk(&mut stream).await {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(rest.contains("content_block_delta"), "{rest}");
    assert!(rest.contains("message_stop"), "{rest}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_in_the_providers_shape_and_never_sent() {
    let upstream = FakeUpstream::start().await;
    let guard = Guard::for_upstream(
        upstream.resolve_args(),
        upstream.ca_pem_path(),
        &["--max-body", "16KiB"],
    );
    let big = format!(
        r#"{{"model":"m","max_tokens":1,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(64 * 1024)
    );

    // Declared length over the limit: refused before reading it.
    let response = guard
        .client()
        .post("https://api.anthropic.com/v1/messages")
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 413);
    let body: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "request_too_large");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("16 KiB"), "{message}");

    // No declared length (streamed): refused once it passes the limit.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = big
        .as_bytes()
        .chunks(4096)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let response = guard
        .client()
        .post("https://api.openai.com/v1/chat/completions")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 413);
    let body: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    assert_eq!(
        body["error"]["code"], "body_too_large",
        "OpenAI's shape: {body}"
    );

    assert!(
        upstream.requests().is_empty(),
        "nothing over the limit left"
    );

    // Under the limit still goes through.
    let response = guard
        .client()
        .post("https://api.anthropic.com/v1/messages")
        .header("content-type", "application/json")
        .body(STREAMING)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_stream_lets_it_finish_then_exits_zero() {
    let upstream = FakeUpstream::start().await;
    let mut guard = Guard::for_upstream(upstream.resolve_args(), upstream.ca_pem_path(), &[]);
    let gate = upstream.gate_next_stream();

    let response = start_stream(&guard).await;
    let mut stream = response.bytes_stream();
    let first = next_chunk(&mut stream).await.expect("first event");
    assert!(String::from_utf8_lossy(&first).contains("message_start"));

    guard.terminate();
    guard.wait_for_log("proxy listener closed").await;
    // Stopped accepting: a new connection is refused while the stream is still open.
    assert!(
        tokio::net::TcpStream::connect(guard.proxy).await.is_err(),
        "the listener is closed once stopping"
    );

    // While draining: alive, but no longer ready (a load balancer stops sending).
    let admin = guard.direct_client();
    let ready = admin
        .get(guard.admin_url("/readyz"))
        .send()
        .await
        .expect("admin");
    assert_eq!(ready.status(), 503);
    let health = admin
        .get(guard.admin_url("/healthz"))
        .send()
        .await
        .expect("admin");
    assert_eq!(health.status(), 200);
    gate.release();
    let mut rest = String::new();
    while let Some(chunk) = next_chunk(&mut stream).await {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        rest.contains("message_stop"),
        "the stream completed: {rest}"
    );

    let status = guard.exit_status().await;
    assert_eq!(status.code(), Some(0), "clean stop");
}
