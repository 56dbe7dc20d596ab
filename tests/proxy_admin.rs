//! The admin listener answers operators and scripts: health, readiness, the CA, a PAC file that
//! sends only inspected hosts to the proxy, and Prometheus metrics.

mod support;

use support::guard::Guard;
use support::upstream::FakeUpstream;

async fn get(guard: &Guard, path: &str) -> (u16, String, String) {
    let response = guard
        .direct_client()
        .get(guard.admin_url(path))
        .send()
        .await
        .expect("admin answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    (status, content_type, response.text().await.expect("body"))
}

#[tokio::test]
async fn health_readiness_ca_and_pac_answer() {
    let guard = Guard::start(&[]);

    let (status, _, body) = get(&guard, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body) = get(&guard, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    let (status, _, body) = get(&guard, "/ca.pem").await;
    assert_eq!(status, 200);
    assert_eq!(body.as_bytes(), guard.ca_pem().as_slice(), "the CA on disk");

    let (status, content_type, pac) = get(&guard, "/proxy.pac").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/x-ns-proxy-autoconfig");
    let proxied = format!("return \"PROXY {}\";", guard.proxy);
    for host in [
        "api.anthropic.com",
        "api.openai.com",
        "generativelanguage.googleapis.com",
    ] {
        assert!(
            pac.contains(&format!("if (host == \"{host}\") {proxied}")),
            "{host} goes through the proxy:\n{pac}"
        );
    }
    assert!(pac.contains("return \"DIRECT\";"), "{pac}");
    assert_eq!(
        pac.matches("PROXY").count(),
        3,
        "nothing else is proxied:\n{pac}"
    );

    let (status, _, _) = get(&guard, "/nothing-here").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn metrics_count_requests_by_provider_and_action_and_upstream_errors() {
    let upstream = FakeUpstream::start().await;
    let guard = Guard::for_upstream(upstream.resolve_args(), upstream.ca_pem_path(), &[]);
    let response = guard
        .client()
        .get("https://api.openai.com/v1/models")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("body");
    drop(upstream); // now the upstream is gone: the next request is an upstream error
    let response = guard
        .client()
        .get("https://api.openai.com/v1/models")
        .send()
        .await
        .expect("answered by the proxy");
    assert_eq!(response.status(), 502);

    let (status, content_type, metrics) = get(&guard, "/metrics").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(
        metrics.contains(r#"egress_guard_requests_total{action="allow",provider="openai"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("egress_guard_upstream_errors_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("egress_guard_inspect_duration_seconds_count 2"),
        "{metrics}"
    );
}
