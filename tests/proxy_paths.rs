//! A path the gate and the upstream could read differently (`..`, `.`, `//`, `%2F`, `%2E`) is
//! refused with a provider-shaped 400 and never forwarded, in base-URL mode and inside an
//! intercepted tunnel alike. Raw sockets, because HTTP client libraries normalise such paths
//! before sending them.

mod support;

use support::guard::{wire, Guard};
use support::upstream::FakeUpstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BODY: &str = r#"{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#;

/// Sends a POST with `target` on `stream`; returns the whole response (Connection: close).
async fn post<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    target: &str,
    host: &str,
) -> String {
    stream
        .write_all(
            format!(
                "POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
                BODY.len()
            )
            .as_bytes(),
        )
        .await
        .expect("send");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).to_string()
}

#[tokio::test]
async fn base_url_paths_with_dot_segments_or_encoded_slashes_are_refused() {
    let upstream = FakeUpstream::start().await;
    let guard = Guard::for_upstream(upstream.resolve_args(), upstream.ca_pem_path(), &[]);
    for target in [
        "/anthropic/../openai/v1/chat/completions",
        "/anthropic/./v1/messages",
        "/anthropic//v1/messages",
        "/anthropic/v1%2Fmessages",
        "/anthropic/v1/%2e%2e/messages",
    ] {
        let mut stream = tokio::net::TcpStream::connect(guard.proxy)
            .await
            .expect("proxy");
        let response = post(&mut stream, target, &guard.proxy.to_string()).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{target}: {response}");
        assert!(
            response.contains(r#""type":"error""#) && response.contains("path"),
            "Anthropic-shaped error for {target}: {response}"
        );
    }
    assert!(upstream.requests().is_empty(), "nothing was forwarded");

    // The plain path still goes through.
    let mut stream = tokio::net::TcpStream::connect(guard.proxy)
        .await
        .expect("proxy");
    let response = post(&mut stream, "/anthropic/v1/messages", "x").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn intercepted_paths_with_dot_segments_are_refused() {
    let upstream = FakeUpstream::start().await;
    let guard = Guard::for_upstream(upstream.resolve_args(), upstream.ca_pem_path(), &[]);
    for target in [
        "/v1/../v1/chat/completions",
        "//v1/chat/completions",
        "/v1%2fchat",
    ] {
        let (head, stream) = wire::connect(guard.proxy, "api.openai.com:443").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut tls = wire::tls(stream, "api.openai.com", &guard.ca_pem(), &[b"http/1.1"]).await;
        let response = post(&mut tls, target, "api.openai.com").await;
        assert!(response.starts_with("HTTP/1.1 400"), "{target}: {response}");
        assert!(
            response.contains(r#""error":{"#),
            "OpenAI-shaped error: {response}"
        );
    }
    assert!(upstream.requests().is_empty(), "nothing was forwarded");
}
