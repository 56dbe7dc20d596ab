//! WebSocket-style upgrades on an intercepted host (OpenAI's Realtime API, Codex CLI's Responses
//! socket). A policy that refuses them answers 426 without reaching the upstream, so the agent
//! falls back to HTTPS and nothing leaves uninspected; a gate that allows one without inspecting
//! its messages (the pass-through gate) gets both directions relayed as bytes after `101`. The
//! shipped policy inspects them message by message: `tests/proxy_websocket.rs`.

mod support;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use egress_guard::proxy::gate::PassThrough;
use egress_guard::proxy::{Drained, Proxy, ProxyConfig};
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use support::guard::{wire, Guard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An HTTP/1.1-only TLS upstream for api.openai.com that accepts upgrades and echoes bytes.
struct EchoUpgradeServer {
    addr: std::net::SocketAddr,
    ca_pem: tempfile::NamedTempFile,
    /// TCP connections accepted so far: proves that a refused upgrade never reached us.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoUpgradeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo_upgrade_server() -> EchoUpgradeServer {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).expect("CA");
    let leaf_key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["api.openai.com".to_string()])
        .expect("params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("leaf");
    let mut ca_pem = tempfile::NamedTempFile::new().expect("temp");
    std::io::Write::write_all(&mut ca_pem, ca.pem().as_bytes()).expect("write CA");

    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .expect("cert");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|mut req: Request<Incoming>| async move {
                    let on_upgrade = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        if let Ok(upgraded) = on_upgrade.await {
                            let mut io = TokioIo::new(upgraded);
                            let mut buf = [0u8; 1024];
                            while let Ok(n) = io.read(&mut buf).await {
                                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    });
                    let mut response = Response::new(Empty::<Bytes>::new());
                    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                    response
                        .headers_mut()
                        .insert("upgrade", "websocket".parse().expect("value"));
                    response
                        .headers_mut()
                        .insert("connection", "Upgrade".parse().expect("value"));
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    EchoUpgradeServer {
        addr,
        ca_pem,
        accepted,
        task,
    }
}

const UPGRADE_REQUEST: &[u8] =
    b"GET /v1/realtime?model=gpt-realtime HTTP/1.1\r\nHost: api.openai.com\r\n\
      Connection: Upgrade\r\nUpgrade: websocket\r\nAuthorization: Bearer sk-rt\r\n\r\n";

#[tokio::test]
async fn a_policy_that_refuses_websockets_answers_426_and_nothing_reaches_the_upstream() {
    let server = echo_upgrade_server().await;
    let policy = tempfile::tempdir().expect("policy dir");
    std::fs::write(
        policy.path().join("policy.toml"),
        support::policies::REFUSE_WEBSOCKETS,
    )
    .expect("write policy");
    let guard = Guard::for_upstream(
        vec![format!("api.openai.com:443={}", server.addr)],
        server.ca_pem.path(),
        &["--policy", policy.path().to_str().expect("UTF-8 path")],
    );

    let (head, _tls) = upgrade_through(guard.proxy, &guard.ca_pem()).await;
    assert!(head.starts_with("http/1.1 426"), "{head}");
    assert!(head.contains("x-egress-guard-decision: "), "{head}");
    assert_eq!(
        server.accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a refused upgrade never opens a connection upstream"
    );
}

#[tokio::test]
async fn an_upgrade_a_gate_allows_is_relayed_both_ways() {
    let server = echo_upgrade_server().await;
    let data = tempfile::tempdir().expect("data dir");
    let proxy = in_process(&server, data.path(), Duration::from_secs(10)).await;
    let ca_pem = std::fs::read(&proxy.ca_path).expect("CA");
    let (head, mut tls) = upgrade_through(proxy.proxy_addr, &ca_pem).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("x-egress-guard-decision: "), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");

    for message in [&b"hello realtime"[..], &b"second frame"[..]] {
        tls.write_all(message).await.expect("send");
        let mut echoed = vec![0u8; message.len()];
        tls.read_exact(&mut echoed).await.expect("echo");
        assert_eq!(echoed, message);
    }
}

#[tokio::test]
async fn an_open_websocket_does_not_hold_up_a_stop() {
    let server = echo_upgrade_server().await;
    let data = tempfile::tempdir().expect("data dir");
    // A grace period longer than the test's own patience: only a relay that stops at shutdown
    // lets the drain finish in time.
    let proxy = in_process(&server, data.path(), Duration::from_secs(600)).await;
    let ca_pem = std::fs::read(&proxy.ca_path).expect("CA");
    let (head, mut tls) = upgrade_through(proxy.proxy_addr, &ca_pem).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    tls.write_all(b"open").await.expect("send");
    let mut echoed = [0u8; 4];
    tls.read_exact(&mut echoed).await.expect("echo");

    // The WebSocket stays open on the client's side; the proxy still stops cleanly.
    let drained = tokio::time::timeout(Duration::from_secs(60), proxy.stop())
        .await
        .expect("the proxy stops while a WebSocket is open");
    assert_eq!(drained, Drained::Clean);
    drop(tls);
}

/// The proxy in-process with the pass-through gate, which lets an upgrade request through
/// unchanged: what the proxy then does with the connection is what these tests are about.
async fn in_process(
    server: &EchoUpgradeServer,
    data_dir: &std::path::Path,
    drain: Duration,
) -> Proxy {
    let config = ProxyConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin: "127.0.0.1:0".parse().expect("addr"),
        data_dir: data_dir.to_path_buf(),
        upstream_ca: vec![server.ca_pem.path().to_path_buf()],
        resolve: vec![format!("api.openai.com:443={}", server.addr)],
        max_body: ProxyConfig::DEFAULT_MAX_BODY,
        connect_timeout: Duration::from_secs(10),
        response_timeout: Duration::from_secs(60),
        drain_timeout: drain,
        leaf_cache_size: 16,
        body_idle_timeout: ProxyConfig::DEFAULT_BODY_IDLE_TIMEOUT,
        tunnel_idle_timeout: ProxyConfig::DEFAULT_TUNNEL_IDLE_TIMEOUT,
    };
    Proxy::start(config, Arc::new(PassThrough::default()))
        .await
        .expect("proxy starts")
}

/// Opens an intercepted tunnel to api.openai.com through the proxy at `proxy`, trusting only
/// `ca_pem`, and sends the upgrade request; returns the response head (lower-case) and the
/// connection.
async fn upgrade_through(
    proxy: std::net::SocketAddr,
    ca_pem: &[u8],
) -> (
    String,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    let (head, tunnel) = wire::connect(proxy, "api.openai.com:443").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Upgrades are an HTTP/1.1 mechanism: offer only that.
    let mut tls = wire::tls(tunnel, "api.openai.com", ca_pem, &[b"http/1.1"]).await;
    tls.write_all(UPGRADE_REQUEST)
        .await
        .expect("upgrade request");
    let head = wire::read_head(&mut tls).await.to_ascii_lowercase();
    (head, tls)
}
