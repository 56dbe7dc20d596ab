//! When the upstream fails, the agent is told so in its provider's own error shape: 502 when it
//! cannot be reached, 504 when it does not answer in time.

mod support;

use support::guard::Guard;
use support::upstream::FakeUpstream;

async fn json(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON error body")
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_a_504_in_openais_shape() {
    // Accepts TCP and then says nothing, not even a TLS hello.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let trusted = FakeUpstream::start().await;
    let guard = Guard::for_upstream(
        vec![format!("api.openai.com:443={silent_addr}")],
        trusted.ca_pem_path(),
        &["--response-timeout", "1"],
    );
    let response = guard
        .client()
        .get("https://api.openai.com/v1/models")
        .send()
        .await
        .expect("answered by the proxy");
    assert_eq!(response.status(), 504);
    assert!(response.headers().contains_key("x-egress-guard-decision"));
    let body = json(response).await;
    assert_eq!(body["error"]["code"], "upstream_timeout", "{body}");
    assert_eq!(body["error"]["type"], "egress_guard_blocked");
    held.abort();
}

#[tokio::test]
async fn an_upstream_that_refuses_connections_is_a_502_in_anthropics_shape() {
    // A port with nothing behind it: bound, noted, released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let trusted = FakeUpstream::start().await;
    let guard = Guard::for_upstream(
        vec![format!("api.anthropic.com:443={closed}")],
        trusted.ca_pem_path(),
        &[],
    );
    let response = guard
        .client()
        .post("https://api.anthropic.com/v1/messages")
        .body("{}")
        .send()
        .await
        .expect("answered by the proxy");
    assert_eq!(response.status(), 502);
    let body = json(response).await;
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "api_error");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("could not reach api.anthropic.com"),
        "{message}"
    );
}
