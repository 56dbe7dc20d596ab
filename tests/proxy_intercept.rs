//! An agent pointed at egress-guard reaches its LLM API through the inspecting proxy: CONNECT +
//! TLS with a minted leaf, over HTTP/1.1 or HTTP/2, absolute-form `http://`, and base-URL mode.
//! Every response that passed the gate carries its decision id.

mod support;

use http::Version;
use support::guard::{resolve_flags, Guard};
use support::upstream::FakeUpstream;

const MESSAGE: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hello from the proxy test"}]}"#;

async fn guard_for(upstream: &FakeUpstream) -> Guard {
    Guard::for_upstream(upstream.resolve_args(), upstream.ca_pem_path(), &[])
}

fn decision(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-egress-guard-decision")
        .expect("response passed the gate, so it carries a decision id")
        .to_str()
        .expect("ascii")
        .to_string()
}

#[tokio::test]
async fn a_claude_request_over_http1_is_intercepted_forwarded_and_stamped() {
    let upstream = FakeUpstream::start().await;
    let guard = guard_for(&upstream).await;

    let response = guard
        .client_http1()
        .post("https://api.anthropic.com/v1/messages")
        .header("x-api-key", "sk-ant-test-key")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(MESSAGE)
        .send()
        .await
        .expect("request through the proxy");

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.version(),
        Version::HTTP_11,
        "client side is HTTP/1.1"
    );
    let id = decision(&response);
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(response.headers()["x-fake-upstream"], "1");
    let text = response.text().await.expect("body");
    assert!(text.contains("hello from the proxy test"), "{text}");

    let seen = upstream.last_request().expect("upstream got the request");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.host, "api.anthropic.com");
    assert_eq!(seen.body, MESSAGE.as_bytes(), "the body left untouched");
    assert_eq!(
        seen.headers["x-api-key"], "sk-ant-test-key",
        "auth passes through"
    );
    // The upstream side negotiated its own protocol: HTTP/2, while the client spoke HTTP/1.1.
    assert_eq!(seen.version, Version::HTTP_2);
}

#[tokio::test]
async fn an_openai_request_over_http2_stays_http2_on_both_sides() {
    let upstream = FakeUpstream::start().await;
    let guard = guard_for(&upstream).await;

    let response = guard
        .client()
        .post("https://api.openai.com/v1/chat/completions")
        .header("authorization", "Bearer sk-test")
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"h2 please"}]}"#)
        .send()
        .await
        .expect("request through the proxy");

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.version(),
        Version::HTTP_2,
        "client side negotiated h2 with our leaf"
    );
    decision(&response);
    assert!(response.text().await.expect("body").contains("h2 please"));
    let seen = upstream.last_request().expect("upstream got it");
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(seen.headers["authorization"], "Bearer sk-test");
}

#[tokio::test]
async fn base_url_mode_sends_prefixed_paths_to_the_real_api_host() {
    let upstream = FakeUpstream::start().await;
    let guard = guard_for(&upstream).await;
    let client = guard.direct_client();

    let response = client
        .post(format!("{}/anthropic/v1/messages", guard.proxy_url()))
        .header("x-api-key", "sk-ant-base-url")
        .header("content-type", "application/json")
        .body(MESSAGE)
        .send()
        .await
        .expect("base-URL request");
    assert_eq!(response.status(), 200);
    decision(&response);
    let seen = upstream.last_request().expect("upstream got it");
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.host, "api.anthropic.com");

    let response = client
        .get(format!("{}/openai/v1/models", guard.proxy_url()))
        .send()
        .await
        .expect("base-URL request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        upstream.last_request().expect("seen").host,
        "api.openai.com"
    );

    let response = client
        .post(format!(
            "{}/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            guard.proxy_url()
        ))
        .header("content-type", "application/json")
        .body(r#"{"contents":[{"role":"user","parts":[{"text":"hi gemini"}]}]}"#)
        .send()
        .await
        .expect("base-URL request");
    assert_eq!(response.status(), 200);
    let seen = upstream.last_request().expect("seen");
    assert_eq!(seen.host, "generativelanguage.googleapis.com");
    assert_eq!(seen.path, "/v1beta/models/gemini-2.0-flash:generateContent");

    let lost = client
        .get(format!("{}/somewhere/else", guard.proxy_url()))
        .send()
        .await
        .expect("answered");
    assert_eq!(lost.status(), 404);
    let body: serde_json::Value =
        serde_json::from_slice(&lost.bytes().await.expect("body")).expect("JSON");
    assert_eq!(body["error"]["code"], "unknown_base_url", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("/anthropic"));
}

#[tokio::test]
async fn an_absolute_form_http_request_is_gated_and_forwarded() {
    let plain = FakeUpstream::start_plain().await;
    let guard = Guard::start(&resolve_flags(plain.resolve_args()));

    let response = guard
        .client()
        .get("http://api.openai.com/v1/models")
        .header("authorization", "Bearer sk-plain")
        .send()
        .await
        .expect("absolute-form request");
    assert_eq!(response.status(), 200);
    decision(&response);
    let seen = plain.last_request().expect("plain upstream got it");
    assert_eq!(seen.path, "/v1/models");
    assert_eq!(seen.headers["authorization"], "Bearer sk-plain");
    assert!(
        !seen.headers.contains_key("proxy-connection"),
        "hop-by-hop headers stay at the proxy"
    );
}

#[tokio::test]
async fn a_large_response_streams_back_byte_exact() {
    let upstream = FakeUpstream::start().await;
    let guard = guard_for(&upstream).await;
    let n = 3 * 1024 * 1024 + 17;
    let body = guard
        .client()
        .get(format!("https://api.openai.com/bytes/{n}"))
        .send()
        .await
        .expect("request")
        .bytes()
        .await
        .expect("body");
    assert_eq!(body.len(), n);
    let direct = {
        let ca = reqwest::Certificate::from_pem(
            &std::fs::read(upstream.ca_pem_path()).expect("upstream CA"),
        )
        .expect("pem");
        reqwest::Client::builder()
            .no_proxy()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .resolve("api.openai.com", upstream.addr())
            .build()
            .expect("client")
    };
    let expected = direct
        .get(format!(
            "https://api.openai.com:{}/bytes/{n}",
            upstream.addr().port()
        ))
        .send()
        .await
        .expect("direct")
        .bytes()
        .await
        .expect("body");
    assert!(
        body == expected,
        "the proxied bytes equal the upstream's own"
    );
}

#[tokio::test]
async fn base_url_mode_also_speaks_cleartext_http2() {
    let upstream = FakeUpstream::start().await;
    let guard = guard_for(&upstream).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let response = client
        .post(format!("{}/anthropic/v1/messages", guard.proxy_url()))
        .header("content-type", "application/json")
        .body(MESSAGE)
        .send()
        .await
        .expect("h2c base-URL request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), Version::HTTP_2);
    decision(&response);
    assert_eq!(upstream.last_request().expect("seen").path, "/v1/messages");
}

#[tokio::test]
async fn a_plain_http_request_to_a_host_we_do_not_inspect_is_relayed_unstamped() {
    let plain = FakeUpstream::start_plain().await;
    let guard = Guard::start(&resolve_flags(plain.resolve_args()));
    let response = guard
        .client()
        .post("http://tunnel.example.test/echo")
        .body("plain and untouched")
        .send()
        .await
        .expect("relayed");
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key("x-egress-guard-decision"));
    assert_eq!(response.text().await.expect("body"), "plain and untouched");
    assert_eq!(
        plain.last_request().expect("seen").host,
        "tunnel.example.test"
    );
}
