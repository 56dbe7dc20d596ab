//! A host has one name, however a client spells it: `api.openai.com.` (trailing dot) or
//! `API.OpenAI.com` is intercepted like `api.openai.com`, never tunnelled past the gate; a name
//! that is not a DNS name is refused; an IP address is refused when other hosts are; `--inspect`
//! values are checked at start-up.

mod support;

use std::process::Command;

use support::guard::{wire, Guard};
use support::upstream::FakeUpstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// CONNECTs with `authority`, then speaks TLS trusting ONLY the guard's CA: it can only succeed
/// if the proxy intercepted (a tunnel would present the upstream's own certificate).
async fn intercepted_get(guard: &Guard, authority: &str, sni: &str) -> String {
    let (head, stream) = wire::connect(guard.proxy, authority).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{authority}: {head}");
    let mut tls = wire::tls(stream, sni, &guard.ca_pem(), &[b"http/1.1"]).await;
    tls.write_all(
        format!("GET /v1/models HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("send");
    wire::read_head(&mut tls).await
}

#[tokio::test]
async fn a_trailing_dot_or_capitals_do_not_escape_inspection() {
    let upstream = FakeUpstream::start().await;
    let guard = Guard::for_upstream(upstream.resolve_args(), upstream.ca_pem_path(), &[]);
    for authority in ["api.openai.com.:443", "API.OpenAI.COM:443"] {
        upstream.clear_requests();
        let head = intercepted_get(&guard, authority, "api.openai.com").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{authority}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("x-egress-guard-decision"),
            "{authority} passed the gate: {head}"
        );
        let seen = upstream.last_request().expect("reached upstream");
        assert_eq!(seen.host, "api.openai.com", "{authority}");
    }
}

#[tokio::test]
async fn a_destination_that_is_not_a_host_name_is_refused() {
    let upstream = FakeUpstream::start().await;
    let guard = Guard::for_upstream(upstream.resolve_args(), upstream.ca_pem_path(), &[]);
    for authority in ["api..openai.com:443", "api.openai.com..:443", "1.2.3:443"] {
        let (head, _stream) = wire::connect(guard.proxy, authority).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{authority}: {head}");
    }
    // The absolute-form spelling is refused the same way.
    let mut stream = tokio::net::TcpStream::connect(guard.proxy)
        .await
        .expect("proxy");
    stream
        .write_all(
            b"GET http://api..openai.com/v1/models HTTP/1.1\r\nHost: api..openai.com\r\n\r\n",
        )
        .await
        .expect("send");
    let head = wire::read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn an_ip_address_is_refused_when_other_hosts_are() {
    let upstream = FakeUpstream::start().await;
    let guard = Guard::for_upstream(
        upstream.resolve_args(),
        upstream.ca_pem_path(),
        &["--refuse-others"],
    );
    let target = upstream.addr().to_string();
    let (head, mut stream) = wire::connect(guard.proxy, &target).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let mut body = vec![0u8; 4096];
    let n = stream.read(&mut body).await.expect("error body");
    assert!(
        String::from_utf8_lossy(&body[..n]).contains("IP address"),
        "says why"
    );
}

#[tokio::test]
async fn an_ip_address_is_tunnelled_and_logged_when_tunnelling_is_allowed() {
    let upstream = FakeUpstream::start().await;
    let guard = Guard::for_upstream(upstream.resolve_args(), upstream.ca_pem_path(), &[]);
    let (head, _stream) = wire::connect(guard.proxy, &upstream.addr().to_string()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    guard.wait_for_log("tunnelling to an IP address").await;
}

#[test]
fn a_bad_inspect_value_stops_start_up_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    for bad in [
        "*.openai.com",
        "www.mybank.example",
        "127.0.0.1",
        "api..openai.com",
    ] {
        let output = Command::new(Guard::binary())
            .args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--inspect", bad])
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(2), "{bad}: {output:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("--inspect"),
            "{bad}: names the flag"
        );
    }
}
