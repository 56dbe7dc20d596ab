//! Trust, both ways: the leaves we mint chain to our name-constrained CA and never cover a host
//! outside it; hosts we do not inspect are tunnelled untouched (or refused); an upstream we
//! cannot verify gets nothing.

mod support;

use support::guard::{wire, Guard};
use support::upstream::FakeUpstream;
use tokio::io::AsyncReadExt;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::*;

#[tokio::test]
async fn the_minted_leaf_chains_to_our_ca_which_is_name_constrained() {
    let upstream = FakeUpstream::start().await;
    let guard = Guard::for_upstream(upstream.resolve_args(), upstream.ca_pem_path(), &[]);
    let (head, stream) = wire::connect(guard.proxy, "api.anthropic.com:443").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // A TLS client trusting only our CA completes the handshake: the leaf chains to it.
    let tls = wire::tls(stream, "api.anthropic.com", &guard.ca_pem(), &[]).await;
    let leaf_der = tls.get_ref().1.peer_certificates().expect("certs")[0].to_vec();

    let (_, leaf) = X509Certificate::from_der(&leaf_der).expect("leaf parses");
    let ca_pem = guard.ca_pem();
    let (_, ca_pem) = x509_parser::pem::parse_x509_pem(&ca_pem).expect("CA PEM");
    let ca = ca_pem.parse_x509().expect("CA parses");
    assert_eq!(leaf.issuer(), ca.subject());
    assert!(!leaf.is_ca());
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .expect("SAN ext")
        .expect("has SAN")
        .value
        .general_names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect();
    assert_eq!(sans, vec![r#"DNSName("api.anthropic.com")"#.to_string()]);

    assert!(ca.is_ca());
    let constraints = ca
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::NameConstraints(nc) => Some((e.critical, nc.clone())),
            _ => None,
        })
        .expect("the CA carries name constraints");
    assert!(constraints.0, "name constraints are critical");
    let permitted: Vec<String> = constraints
        .1
        .permitted_subtrees
        .expect("permitted subtrees")
        .iter()
        .filter_map(|s| match s.base {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect();
    for needed in [
        "anthropic.com",
        "openai.com",
        "generativelanguage.googleapis.com",
    ] {
        assert!(
            permitted.iter().any(|p| p == needed),
            "{needed} in {permitted:?}"
        );
    }
    for never in ["com", "googleapis.com", "amazonaws.com", "azure.com"] {
        assert!(
            !permitted.iter().any(|p| p == never),
            "{never} must not be permitted"
        );
    }
    let excluded = constraints
        .1
        .excluded_subtrees
        .expect("IP addresses excluded");
    assert!(excluded
        .iter()
        .any(|s| matches!(s.base, GeneralName::IPAddress(_))));
}

#[tokio::test]
async fn a_host_outside_the_constraints_cannot_be_intercepted() {
    let upstream = FakeUpstream::start().await;
    // Ask the gate to inspect a host the CA may not sign for.
    let guard = Guard::for_upstream(
        upstream.resolve_args(),
        upstream.ca_pem_path(),
        &["--inspect", "tunnel.example.test"],
    );
    let (head, mut stream) = wire::connect(guard.proxy, "tunnel.example.test:443").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let mut body = vec![0u8; 4096];
    let n = stream.read(&mut body).await.expect("error body");
    let body = String::from_utf8_lossy(&body[..n]);
    assert!(
        body.contains("outside the local CA's name constraints"),
        "{body}"
    );
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn a_host_we_do_not_inspect_is_tunnelled_with_its_own_certificate() {
    let upstream = FakeUpstream::start().await;
    let guard = Guard::for_upstream(upstream.resolve_args(), upstream.ca_pem_path(), &[]);
    // The client trusts ONLY the upstream's CA, not ours: it can only succeed if the proxy
    // relayed the upstream's own TLS untouched.
    let upstream_ca =
        reqwest::Certificate::from_pem(&std::fs::read(upstream.ca_pem_path()).expect("read"))
            .expect("pem");
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(guard.proxy_url()).expect("proxy"))
        .tls_built_in_root_certs(false)
        .add_root_certificate(upstream_ca)
        .build()
        .expect("client");
    let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let response = client
        .post("https://tunnel.example.test/echo")
        .body(payload.clone())
        .send()
        .await
        .expect("tunnelled request");
    assert_eq!(response.status(), 200);
    assert!(
        !response.headers().contains_key("x-egress-guard-decision"),
        "a tunnel is never inspected"
    );
    let echoed = response.bytes().await.expect("body");
    assert!(echoed == payload, "bytes unchanged both ways");
    let seen = upstream.last_request().expect("upstream got it");
    assert_eq!(seen.host, "tunnel.example.test");
    assert!(seen.body == payload);
}

#[tokio::test]
async fn with_refuse_others_a_host_we_do_not_inspect_is_refused() {
    let upstream = FakeUpstream::start().await;
    let guard = Guard::for_upstream(
        upstream.resolve_args(),
        upstream.ca_pem_path(),
        &["--refuse-others"],
    );
    let (head, _) = wire::connect(guard.proxy, "tunnel.example.test:443").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(upstream.requests().is_empty());
    // Inspected hosts still work.
    let response = guard
        .client()
        .get("https://api.openai.com/v1/models")
        .send()
        .await
        .expect("inspected");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_upstream_we_cannot_verify_gets_nothing_and_the_client_gets_a_502() {
    let untrusted = FakeUpstream::start_untrusted().await;
    let other = FakeUpstream::start().await;
    // The proxy trusts `other`'s CA, not the one `untrusted` presents.
    let guard = Guard::for_upstream(untrusted.resolve_args(), other.ca_pem_path(), &[]);
    let response = guard
        .client()
        .post("https://api.anthropic.com/v1/messages")
        .header("x-api-key", "sk-ant-must-not-leak")
        .header("content-type", "application/json")
        .body(r#"{"model":"m","max_tokens":1,"messages":[]}"#)
        .send()
        .await
        .expect("answered by the proxy");
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json_like().await;
    assert_eq!(body["type"], "error", "Anthropic's error shape: {body}");
    assert_eq!(body["error"]["type"], "api_error");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("not trusted"), "{message}");
    assert!(
        untrusted.requests().is_empty(),
        "nothing reached the untrusted upstream"
    );
}

/// `reqwest` without its `json` feature: parse the body ourselves.
trait JsonLike {
    async fn json_like(self) -> serde_json::Value;
}

impl JsonLike for reqwest::Response {
    async fn json_like(self) -> serde_json::Value {
        let bytes = self.bytes().await.expect("body");
        serde_json::from_slice(&bytes).expect("JSON body")
    }
}
