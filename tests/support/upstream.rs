//! A fake LLM API upstream over real TLS, for integration tests and benchmarks.
//!
//! It speaks just enough of the Anthropic, OpenAI and Gemini APIs (JSON and SSE) for the official
//! SDKs and the coding agents to accept its replies, and it records every request so a test can
//! check what actually left the proxy. Each start mints its own CA and leaf (rcgen) into a tempdir,
//! so no key material is ever committed and no two tests share trust by accident.
//!
//! What it must never do: reach the network beyond 127.0.0.1, or make a test wait on a timer. The
//! SSE gate ([`FakeUpstream::gate_next_stream`]) is built on `Notify`, so a test that holds a stream
//! open is driven by events only.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::{JoinHandle, JoinSet};

/// The names the leaf certificate is valid for: the three providers' API hosts, a neutral host for
/// CONNECT-tunnel tests, and the loopback names a test client uses when it talks to us directly.
pub const HOSTS: &[&str] = &[
    "api.anthropic.com",
    "api.openai.com",
    "generativelanguage.googleapis.com",
    "tunnel.example.test",
    "localhost",
];

/// Largest `GET /bytes/{n}` we serve; a typo in a test should not allocate gigabytes.
const MAX_BYTES_REPLY: usize = 256 * 1024 * 1024;

/// One request as the upstream saw it, after TLS and HTTP decoding.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, e.g. `/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse`.
    pub path: String,
    /// The request headers; for HTTP/2, `host` holds the `:authority` the client sent.
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: Version,
    /// The TLS SNI when there was one, else the Host header (or the HTTP/2 authority).
    pub host: String,
}

impl Recorded {
    /// The body as UTF-8 (lossy), for `contains` checks.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON, or `Value::Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Holds the next streamed response after its first event until [`SseGate::release`].
///
/// Dropping the gate releases it too: a test that forgets to release should fail on its own
/// assertions, not hang the suite.
pub struct SseGate {
    inner: Arc<GateInner>,
}

#[derive(Default)]
struct GateInner {
    /// Signalled by the test; `notify_one` keeps a permit, so releasing before the stream reaches
    /// the gate is not lost.
    release: Notify,
    /// Signalled by the server once the first event is handed to the connection.
    held: Notify,
}

impl SseGate {
    /// Lets the held stream send the rest of its events.
    pub fn release(&self) {
        self.inner.release.notify_one();
    }

    /// Resolves once the gated stream has sent its first event and is waiting for `release`.
    /// Only one caller should await it (it consumes the signal).
    pub async fn held(&self) {
        self.inner.held.notified().await;
    }
}

impl Drop for SseGate {
    fn drop(&mut self) {
        self.inner.release.notify_one();
    }
}

struct Shared {
    /// Off for benchmarks, which would otherwise keep every body they send.
    recording: AtomicBool,
    requests: Mutex<Vec<Recorded>>,
    gates: Mutex<VecDeque<Arc<GateInner>>>,
    ids: AtomicU64,
    /// What arrived on WebSocket connections, in order; `ws_seen` counts it for waiters.
    ws_events: Mutex<Vec<WsEvent>>,
    ws_seen: tokio::sync::watch::Sender<usize>,
    /// Answer a `response.create` on `/v1/responses` with the Responses API's streamed events
    /// (as Codex CLI expects) instead of echoing it.
    ws_responses: AtomicBool,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            recording: AtomicBool::new(true),
            requests: Mutex::default(),
            gates: Mutex::default(),
            ids: AtomicU64::default(),
            ws_events: Mutex::default(),
            ws_seen: tokio::sync::watch::Sender::new(0),
            ws_responses: AtomicBool::new(false),
        }
    }
}

impl Shared {
    fn next_id(&self, prefix: &str) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let nonce = uuid::Uuid::now_v7().simple().to_string();
        format!("{prefix}{}{n:04}", &nonce[..20])
    }

    fn take_gate(&self) -> Option<Arc<GateInner>> {
        lock(&self.gates).pop_front()
    }

    fn ws_event(&self, event: WsEvent) {
        let mut events = lock(&self.ws_events);
        events.push(event);
        self.ws_seen.send_replace(events.len());
    }
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running fake. Dropping it stops the listener and every open connection.
pub struct FakeUpstream {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    ca_pem: PathBuf,
    leaf_pem: PathBuf,
    _dir: tempfile::TempDir,
    server: JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.server.abort();
    }
}

impl FakeUpstream {
    /// Real TLS (rustls, ring) on 127.0.0.1:0 speaking HTTP/1.1 and HTTP/2 (ALPN h2, http/1.1),
    /// with a leaf for [`HOSTS`] (and 127.0.0.1) signed by its own fresh test CA.
    pub async fn start() -> FakeUpstream {
        Self::start_tls("egress-guard fake upstream test CA").await
    }

    /// Same, but with a CA the test never hands to the proxy (for "untrusted upstream").
    /// Every start mints a fresh CA, so this differs from `start` only in the CA's name, which
    /// makes a failing handshake easier to read in logs.
    pub async fn start_untrusted() -> FakeUpstream {
        Self::start_tls("egress-guard UNTRUSTED fake upstream CA").await
    }

    /// Plain HTTP (no TLS) on 127.0.0.1:0, for absolute-form `http://` proxy requests. It speaks
    /// HTTP/1.1 (and HTTP/2 with prior knowledge, which costs nothing to allow).
    pub async fn start_plain() -> FakeUpstream {
        let dir = tempfile::tempdir().expect("tempdir for the fake upstream");
        let ca_pem = dir.path().join("no-ca.pem");
        std::fs::write(&ca_pem, b"").expect("write placeholder CA file");
        Self::serve(None, dir, ca_pem.clone(), ca_pem).await
    }

    async fn start_tls(ca_name: &str) -> FakeUpstream {
        let dir = tempfile::tempdir().expect("tempdir for the fake upstream");
        let pki = mint_pki(ca_name).expect("mint the fake upstream's CA and leaf");
        let ca_pem = dir.path().join("ca.pem");
        let leaf_pem = dir.path().join("leaf.pem");
        std::fs::write(&ca_pem, &pki.ca_pem).expect("write CA PEM");
        std::fs::write(&leaf_pem, &pki.leaf_pem).expect("write leaf PEM");
        std::fs::write(dir.path().join("leaf.key"), &pki.leaf_key_pem).expect("write leaf key");

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![pki.leaf_der, pki.ca_der], pki.leaf_key)
            .expect("the minted leaf is a valid server certificate");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::serve(Some(acceptor), dir, ca_pem, leaf_pem).await
    }

    async fn serve(
        acceptor: Option<tokio_rustls::TlsAcceptor>,
        dir: tempfile::TempDir,
        ca_pem: PathBuf,
        leaf_pem: PathBuf,
    ) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake upstream on loopback");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared::default());
        let tls = acceptor.is_some();
        let server = tokio::spawn(accept_loop(listener, acceptor, shared.clone()));
        FakeUpstream {
            addr,
            tls,
            shared,
            ca_pem,
            leaf_pem,
            _dir: dir,
            server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM file of this upstream's CA (for `--upstream-ca`, or a test client talking direct).
    /// For a plain upstream it is an empty file.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem
    }

    /// PEM file of the leaf certificate (with no key), for tests that inspect what was presented.
    pub fn leaf_pem_path(&self) -> &Path {
        &self.leaf_pem
    }

    /// Whether this upstream speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `--resolve` values pinning every name in [`HOSTS`] to this server: on port 443 for a TLS
    /// upstream, port 80 for a plain one, e.g. `api.anthropic.com:443=127.0.0.1:40123`.
    pub fn resolve_args(&self) -> Vec<String> {
        let port = if self.tls { 443 } else { 80 };
        HOSTS
            .iter()
            .map(|h| format!("{h}:{port}={}", self.addr))
            .collect()
    }

    /// Every request received so far, in order of arrival (recorded once its body is read).
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// The last request received, if any.
    pub fn last_request(&self) -> Option<Recorded> {
        lock(&self.shared.requests).last().cloned()
    }

    /// The body of the last request as UTF-8 (lossy). Panics (test helper) if there was none.
    pub fn last_body(&self) -> String {
        self.last_request()
            .expect("the fake upstream has received no request")
            .body_text()
    }

    /// Forgets the requests recorded so far (benchmarks call it to keep memory flat).
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Turns recording of requests on (the default) or off. Benchmarks turn it off so memory
    /// stays flat over thousands of large bodies.
    pub fn set_recording(&self, on: bool) {
        self.shared.recording.store(on, Ordering::Relaxed);
    }

    /// Makes the NEXT streamed (SSE) response send its first event, then wait until
    /// [`SseGate::release`] before sending the rest. Gates queue up if called more than once.
    pub fn gate_next_stream(&self) -> SseGate {
        let inner = Arc::new(GateInner::default());
        lock(&self.shared.gates).push_back(inner.clone());
        SseGate { inner }
    }

    /// Makes `response.create` messages on `/v1/responses` sockets get the Responses API's
    /// events back (what a real agent needs), instead of an echo.
    pub fn answer_websockets_like_the_responses_api(&self) {
        self.shared.ws_responses.store(true, Ordering::Relaxed);
    }

    /// Everything received on WebSocket connections so far (messages, closes, ends).
    pub fn ws_events(&self) -> Vec<WsEvent> {
        lock(&self.shared.ws_events).clone()
    }

    /// Waits until at least `n` WebSocket events have arrived (woken by each one, never by a
    /// timer; the bound only keeps a broken test from hanging the suite) and returns them all.
    pub async fn wait_ws_events(&self, n: usize) -> Vec<WsEvent> {
        let mut seen = self.shared.ws_seen.subscribe();
        let waited = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            seen.wait_for(|count| *count >= n),
        )
        .await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "the fake upstream saw fewer than {n} WebSocket events: {:?}",
            self.ws_events()
        );
        self.ws_events()
    }
}

/// One thing the fake upstream saw on a WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame: its code and reason.
    Close(Option<(u16, String)>),
    /// The connection ended (after a close, or without one).
    Ended,
}

struct Pki {
    ca_pem: String,
    ca_der: rustls_pki_types::CertificateDer<'static>,
    leaf_pem: String,
    leaf_der: rustls_pki_types::CertificateDer<'static>,
    leaf_key_pem: String,
    leaf_key: rustls_pki_types::PrivateKeyDer<'static>,
}

fn mint_pki(ca_name: &str) -> Result<Pki, rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key)?;

    let leaf_key = KeyPair::generate()?;
    let mut names: Vec<String> = HOSTS.iter().map(|h| h.to_string()).collect();
    names.push("127.0.0.1".into());
    let mut leaf_params = CertificateParams::new(names)?;
    leaf_params.distinguished_name = rcgen::DistinguishedName::new();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "fake upstream");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.use_authority_key_identifier_extension = true;
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key)?;

    Ok(Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        leaf_pem: leaf.pem(),
        leaf_der: leaf.der().clone(),
        leaf_key_pem: leaf_key.serialize_pem(),
        leaf_key: rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    })
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((tcp, _peer)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        connections.spawn(serve_connection(tcp, acceptor.clone(), shared.clone()));
    }
}

async fn serve_connection(
    tcp: TcpStream,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    match acceptor {
        Some(acceptor) => {
            // A failed handshake is what the "untrusted upstream" tests provoke; nothing to serve.
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let sni = tls.get_ref().1.server_name().map(str::to_owned);
            let service =
                hyper::service::service_fn(move |req| handle(req, shared.clone(), sni.clone()));
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await;
        }
        None => {
            let service = hyper::service::service_fn(move |req| handle(req, shared.clone(), None));
            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
        }
    }
}

type ReplyBody = BoxBody<Bytes, Infallible>;

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    sni: Option<String>,
) -> Result<Response<ReplyBody>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        // The client went away mid-body; answer anyway, nobody will read it.
        Err(_) => Bytes::new(),
    };
    let host = sni
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| h.split(':').next().unwrap_or(h).to_owned())
        })
        .or_else(|| parts.uri.host().map(str::to_owned))
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let mut headers = parts.headers.clone();
    if !headers.contains_key(header::HOST) {
        // HTTP/2 carries the authority as a pseudo-header, not `Host`; record it under `host`
        // so a test reads the same field whichever version the proxy chose upstream.
        if let Some(authority) = parts.uri.authority() {
            if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
                headers.insert(header::HOST, value);
            }
        }
    }
    let recorded = Recorded {
        method: parts.method.to_string(),
        path,
        headers,
        body,
        version: parts.version,
        host,
    };
    if shared.recording.load(Ordering::Relaxed) {
        lock(&shared.requests).push(recorded.clone());
    }

    let mut response = match on_upgrade {
        Some(on_upgrade) if websocket::is_upgrade(&recorded.headers) => {
            websocket::accept(&recorded, on_upgrade, shared.clone())
        }
        _ => route(&parts.method, &recorded, &shared),
    };
    response
        .headers_mut()
        .insert("x-fake-upstream", HeaderValue::from_static("1"));
    Ok(response)
}

fn route(method: &Method, req: &Recorded, shared: &Shared) -> Response<ReplyBody> {
    let (path, query) = match req.path.split_once('?') {
        Some((p, q)) => (p, q),
        None => (req.path.as_str(), ""),
    };
    match (method, path) {
        (&Method::POST, "/echo") => echo(req),
        (&Method::GET, p) if p.starts_with("/bytes/") => bytes_reply(&p["/bytes/".len()..]),
        (&Method::POST, "/v1/messages") => anthropic::messages(req, shared),
        (&Method::POST, "/v1/messages/count_tokens") => anthropic::count_tokens(req, shared),
        (&Method::POST, "/v1/chat/completions") => openai::chat(req, shared),
        (&Method::POST, "/v1/responses") => openai::responses(req, shared),
        (&Method::GET, "/v1/models") => openai::models(shared),
        (&Method::POST, p) if p.starts_with("/v1beta/models/") || p.starts_with("/v1/models/") => {
            gemini::route(p, query, req, shared)
        }
        _ => not_found(method, path, shared),
    }
}

// ---------------------------------------------------------------------------------------------
// Response building blocks

fn full(body: impl Into<Bytes>) -> ReplyBody {
    Full::new(body.into()).boxed()
}

fn json_response(status: StatusCode, value: &Value) -> Response<ReplyBody> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn with_header(
    mut resp: Response<ReplyBody>,
    name: &'static str,
    value: &str,
) -> Response<ReplyBody> {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
    resp
}

fn echo(req: &Recorded) -> Response<ReplyBody> {
    let mut resp = Response::new(full(req.body.clone()));
    let ct = req
        .headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    resp
}

/// `n` bytes of `abcdefghijklmnopqrstuvwxyz0123456789\n` repeated, so a truncation shows.
fn bytes_reply(n: &str) -> Response<ReplyBody> {
    let Ok(n) = n.parse::<usize>() else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": {"message": "GET /bytes/{n}: n must be a number", "type": "invalid_request_error", "param": null, "code": null}}),
        );
    };
    let n = n.min(MAX_BYTES_REPLY);
    let pattern = b"abcdefghijklmnopqrstuvwxyz0123456789\n";
    let body: Vec<u8> = pattern.iter().copied().cycle().take(n).collect();
    let mut resp = Response::new(full(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

fn not_found(method: &Method, path: &str, shared: &Shared) -> Response<ReplyBody> {
    let resp = json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": {
            "message": format!("Unknown request URL: {method} {path}. (fake upstream)"),
            "type": "invalid_request_error",
            "param": null,
            "code": "unknown_url",
        }}),
    );
    with_header(resp, "x-request-id", &shared.next_id("req_"))
}

/// A streamed `text/event-stream` response whose events are produced by a task, so the body
/// reaches the client event by event (and can be held at a gate) instead of all at once.
fn sse_response(events: Vec<String>, shared: &Shared) -> Response<ReplyBody> {
    let gate = shared.take_gate();
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let mut events = events.into_iter();
        if let Some(first) = events.next() {
            if tx.send(Bytes::from(first)).await.is_err() {
                return;
            }
        }
        if let Some(gate) = gate {
            gate.held.notify_one();
            gate.release.notified().await;
        }
        for event in events {
            if tx.send(Bytes::from(event)).await.is_err() {
                return;
            }
        }
    });
    let mut resp = Response::new(ChannelBody { rx }.boxed());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// A response body fed by a channel: each message is one data frame, the end of the channel is
/// the end of the body.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

fn named_event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn data_event(data: &Value) -> String {
    format!("data: {data}\n\n")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A rough token count (4 bytes a token), enough for usage fields that SDKs require.
fn tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4).max(1)
}

/// Splits the reply into at most four pieces on char boundaries, so a stream has several deltas
/// and anything a proxy rewrites may straddle two of them.
fn chunks(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let size = chars.len().div_ceil(4).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

fn parse_json(req: &Recorded) -> Result<Value, String> {
    serde_json::from_slice(&req.body).map_err(|e| format!("request body is not valid JSON: {e}"))
}

/// Text of a content value that is either a string or a list of typed parts carrying `text`.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                other => other.get("text").and_then(Value::as_str),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

mod anthropic {
    use super::*;

    fn error(
        status: StatusCode,
        kind: &str,
        message: &str,
        shared: &Shared,
    ) -> Response<ReplyBody> {
        let resp = json_response(
            status,
            &json!({"type": "error", "error": {"type": kind, "message": message}}),
        );
        with_header(resp, "request-id", &shared.next_id("req_"))
    }

    /// The last user message's text: the fake replies with exactly this.
    fn last_user_text(body: &Value) -> String {
        body.get("messages")
            .and_then(Value::as_array)
            .and_then(|msgs| {
                msgs.iter()
                    .rev()
                    .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            })
            .and_then(|m| m.get("content"))
            .map(content_text)
            .unwrap_or_default()
    }

    pub(super) fn messages(req: &Recorded, shared: &Shared) -> Response<ReplyBody> {
        let body = match parse_json(req) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", &e, shared),
        };
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("claude-sonnet-4-5")
            .to_owned();
        let text = last_user_text(&body);
        let id = shared.next_id("msg_01");
        let input_tokens = tokens(&body.to_string());
        let output_tokens = tokens(&text);
        let request_id = shared.next_id("req_011");
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);

        let resp = if !stream {
            json_response(
                StatusCode::OK,
                &json!({
                    "id": id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": null,
                    "usage": {
                        "input_tokens": input_tokens,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": output_tokens,
                        "service_tier": "standard"
                    }
                }),
            )
        } else {
            let mut events = vec![
                named_event(
                    "message_start",
                    &json!({"type": "message_start", "message": {
                        "id": id, "type": "message", "role": "assistant", "model": model,
                        "content": [], "stop_reason": null, "stop_sequence": null,
                        "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                                  "cache_read_input_tokens": 0, "output_tokens": 1,
                                  "service_tier": "standard"}
                    }}),
                ),
                named_event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": 0,
                            "content_block": {"type": "text", "text": ""}}),
                ),
                named_event("ping", &json!({"type": "ping"})),
            ];
            for piece in chunks(&text) {
                events.push(named_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "text_delta", "text": piece}}),
                ));
            }
            events.push(named_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            events.push(named_event(
                "message_delta",
                &json!({"type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                        "usage": {"output_tokens": output_tokens}}),
            ));
            events.push(named_event(
                "message_stop",
                &json!({"type": "message_stop"}),
            ));
            sse_response(events, shared)
        };
        with_header(resp, "request-id", &request_id)
    }

    pub(super) fn count_tokens(req: &Recorded, shared: &Shared) -> Response<ReplyBody> {
        let body = match parse_json(req) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", &e, shared),
        };
        let resp = json_response(
            StatusCode::OK,
            &json!({"input_tokens": tokens(&body.to_string())}),
        );
        with_header(resp, "request-id", &shared.next_id("req_011"))
    }
}

mod openai {
    use super::*;

    fn error(status: StatusCode, message: &str, shared: &Shared) -> Response<ReplyBody> {
        let resp = json_response(
            status,
            &json!({"error": {"message": message, "type": "invalid_request_error",
                              "param": null, "code": null}}),
        );
        with_header(resp, "x-request-id", &shared.next_id("req_"))
    }

    fn ok_headers(resp: Response<ReplyBody>, shared: &Shared) -> Response<ReplyBody> {
        let resp = with_header(resp, "x-request-id", &shared.next_id("req_"));
        with_header(resp, "openai-processing-ms", "1")
    }

    fn last_user_chat_text(body: &Value) -> String {
        body.get("messages")
            .and_then(Value::as_array)
            .and_then(|msgs| {
                msgs.iter()
                    .rev()
                    .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            })
            .and_then(|m| m.get("content"))
            .map(content_text)
            .unwrap_or_default()
    }

    /// Responses API `input`: a string, or a list of items where user messages carry `content`
    /// as a string or a list of `input_text` parts.
    fn last_user_input_text(body: &Value) -> String {
        match body.get("input") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(items)) => items
                .iter()
                .rev()
                .find(|i| i.get("role").and_then(Value::as_str) == Some("user"))
                .and_then(|i| i.get("content"))
                .map(content_text)
                .unwrap_or_default(),
            _ => String::new(),
        }
    }

    pub(super) fn chat(req: &Recorded, shared: &Shared) -> Response<ReplyBody> {
        let body = match parse_json(req) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e, shared),
        };
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("gpt-4o")
            .to_owned();
        let text = last_user_chat_text(&body);
        let id = shared.next_id("chatcmpl-");
        let created = unix_now();
        let prompt_tokens = tokens(&body.to_string());
        let completion_tokens = tokens(&text);
        let usage = json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        });
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        if !stream {
            let resp = json_response(
                StatusCode::OK,
                &json!({
                    "id": id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": null,
                                    "annotations": []},
                        "logprobs": null,
                        "finish_reason": "stop"
                    }],
                    "usage": usage,
                    "service_tier": "default",
                    "system_fingerprint": "fp_fake0001"
                }),
            );
            return ok_headers(resp, shared);
        }
        let include_usage = body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let chunk = |delta: Value, finish: Value| {
            let mut c = json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "service_tier": "default", "system_fingerprint": "fp_fake0001",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
            });
            if include_usage {
                c["usage"] = Value::Null;
            }
            data_event(&c)
        };
        let mut events = vec![chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        )];
        for piece in chunks(&text) {
            events.push(chunk(json!({"content": piece}), Value::Null));
        }
        events.push(chunk(json!({}), json!("stop")));
        if include_usage {
            events.push(data_event(&json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "service_tier": "default", "system_fingerprint": "fp_fake0001",
                "choices": [], "usage": usage
            })));
        }
        events.push("data: [DONE]\n\n".to_owned());
        ok_headers(sse_response(events, shared), shared)
    }

    pub(super) fn responses(req: &Recorded, shared: &Shared) -> Response<ReplyBody> {
        let body = match parse_json(req) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e, shared),
        };
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("gpt-4.1")
            .to_owned();
        let text = last_user_input_text(&body);
        let resp_id = shared.next_id("resp_");
        let item_id = shared.next_id("msg_");
        let created = unix_now();
        let input_tokens = tokens(&body.to_string());
        let output_tokens = tokens(&text);
        let part = json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
        let item = json!({"id": item_id, "type": "message", "status": "completed",
                          "role": "assistant", "content": [part]});
        let response = |status: &str, output: Value, usage: Value| {
            json!({
                "id": resp_id, "object": "response", "created_at": created, "status": status,
                "background": false, "error": null, "incomplete_details": null,
                "instructions": body.get("instructions").cloned().unwrap_or(Value::Null),
                "max_output_tokens": null, "model": model, "output": output,
                "parallel_tool_calls": true, "previous_response_id": null,
                "reasoning": {"effort": null, "summary": null}, "service_tier": "default",
                "store": body.get("store").cloned().unwrap_or(json!(true)),
                "temperature": 1.0, "text": {"format": {"type": "text"}},
                "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
                "usage": usage, "user": null, "metadata": {}
            })
        };
        let usage = json!({
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens
        });
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        if !stream {
            let resp = json_response(StatusCode::OK, &response("completed", json!([item]), usage));
            return ok_headers(resp, shared);
        }
        let mut seq = 0u64;
        let mut event = |name: &str, mut data: Value| {
            data["type"] = json!(name);
            data["sequence_number"] = json!(seq);
            seq += 1;
            named_event(name, &data)
        };
        let in_progress = response("in_progress", json!([]), Value::Null);
        let mut events = vec![
            event("response.created", json!({"response": in_progress})),
            event("response.in_progress", json!({"response": in_progress})),
            event(
                "response.output_item.added",
                json!({"output_index": 0, "item": {"id": item_id, "type": "message",
                       "status": "in_progress", "role": "assistant", "content": []}}),
            ),
            event(
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0,
                       "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
            ),
        ];
        for piece in chunks(&text) {
            events.push(event(
                "response.output_text.delta",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0,
                       "delta": piece, "logprobs": []}),
            ));
        }
        events.push(event(
            "response.output_text.done",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0,
                   "text": text, "logprobs": []}),
        ));
        events.push(event(
            "response.content_part.done",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part}),
        ));
        events.push(event(
            "response.output_item.done",
            json!({"output_index": 0, "item": item}),
        ));
        events.push(event(
            "response.completed",
            json!({"response": response("completed", json!([item]), usage)}),
        ));
        ok_headers(sse_response(events, shared), shared)
    }

    pub(super) fn models(shared: &Shared) -> Response<ReplyBody> {
        let created = 1_700_000_000u64;
        let data: Vec<Value> = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-5", "o3"]
            .iter()
            .map(
                |id| json!({"id": id, "object": "model", "created": created, "owned_by": "system"}),
            )
            .collect();
        ok_headers(
            json_response(StatusCode::OK, &json!({"object": "list", "data": data})),
            shared,
        )
    }
}

mod gemini {
    use super::*;

    fn error(status: StatusCode, message: &str) -> Response<ReplyBody> {
        let code = status.as_u16();
        let reason = if code == 404 {
            "NOT_FOUND"
        } else {
            "INVALID_ARGUMENT"
        };
        json_response(
            status,
            &json!({"error": {"code": code, "message": message, "status": reason}}),
        )
    }

    /// Text of the last `contents` entry from the user (role `user`, or no role at all).
    fn last_user_text(body: &Value) -> String {
        body.get("contents")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .rev()
                    .find(|c| matches!(c.get("role").and_then(Value::as_str), None | Some("user")))
            })
            .and_then(|c| c.get("parts"))
            .map(content_text)
            .unwrap_or_default()
    }

    pub(super) fn route(
        path: &str,
        query: &str,
        req: &Recorded,
        shared: &Shared,
    ) -> Response<ReplyBody> {
        let rest = path
            .strip_prefix("/v1beta/models/")
            .or_else(|| path.strip_prefix("/v1/models/"))
            .unwrap_or_default();
        let Some((model, method)) = rest.split_once(':') else {
            return error(StatusCode::NOT_FOUND, &format!("no method in {path}"));
        };
        let body = match parse_json(req) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e),
        };
        let text = last_user_text(&body);
        let prompt = tokens(&body.to_string());
        let answer = tokens(&text);
        let response_id = shared.next_id("");
        let candidate = |t: &str, finish: Option<&str>| {
            let mut c = json!({"content": {"parts": [{"text": t}], "role": "model"}, "index": 0});
            if let Some(f) = finish {
                c["finishReason"] = json!(f);
            }
            c
        };
        let usage = json!({"promptTokenCount": prompt, "candidatesTokenCount": answer,
                           "totalTokenCount": prompt + answer,
                           "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]});
        let reply = |candidates: Value, usage: Value| {
            json!({"candidates": candidates, "usageMetadata": usage,
                   "modelVersion": model, "responseId": response_id})
        };
        match method {
            "generateContent" => json_response(
                StatusCode::OK,
                &reply(json!([candidate(&text, Some("STOP"))]), usage),
            ),
            "streamGenerateContent" => {
                let pieces = chunks(&text);
                let last = pieces.len() - 1;
                let partial_usage = json!({"promptTokenCount": prompt, "totalTokenCount": prompt});
                let messages: Vec<Value> = pieces
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        if i == last {
                            reply(json!([candidate(p, Some("STOP"))]), usage.clone())
                        } else {
                            reply(json!([candidate(p, None)]), partial_usage.clone())
                        }
                    })
                    .collect();
                if query.split('&').any(|kv| kv == "alt=sse") {
                    sse_response(messages.iter().map(data_event).collect(), shared)
                } else {
                    // Without `alt=sse` the API streams one JSON array.
                    json_response(StatusCode::OK, &Value::Array(messages))
                }
            }
            "countTokens" => json_response(StatusCode::OK, &json!({"totalTokens": prompt})),
            other => error(
                StatusCode::NOT_FOUND,
                &format!("method `{other}` is not served by the fake upstream"),
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket (OpenAI's Responses socket and Realtime API): any path

mod websocket {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::WebSocketStream;

    pub fn is_upgrade(headers: &HeaderMap) -> bool {
        headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }

    /// Answers `101` and serves the socket: records every message and close, and echoes each
    /// text or binary message back unchanged (so a test sees both directions through the proxy),
    /// or answers a `response.create` like the Responses API when asked to.
    pub fn accept(
        req: &Recorded,
        on_upgrade: hyper::upgrade::OnUpgrade,
        shared: Arc<Shared>,
    ) -> Response<ReplyBody> {
        let Some(key) = req.headers.get(header::SEC_WEBSOCKET_KEY) else {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": {"message": "no Sec-WebSocket-Key"}}),
            );
        };
        let accept = derive_accept_key(key.as_bytes());
        let responses =
            req.path.starts_with("/v1/responses") && shared.ws_responses.load(Ordering::Relaxed);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut socket =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            while let Some(Ok(message)) = socket.next().await {
                match message {
                    Message::Text(text) => {
                        shared.ws_event(WsEvent::Text(text.as_str().to_owned()));
                        let replies = if responses {
                            response_events(text.as_str(), &shared).await
                        } else {
                            vec![text.as_str().to_owned()]
                        };
                        for reply in replies {
                            if socket.send(Message::text(reply)).await.is_err() {
                                break;
                            }
                        }
                    }
                    Message::Binary(bytes) => {
                        shared.ws_event(WsEvent::Binary(bytes.to_vec()));
                        if socket.send(Message::Binary(bytes)).await.is_err() {
                            break;
                        }
                    }
                    Message::Close(frame) => {
                        shared.ws_event(WsEvent::Close(
                            frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())),
                        ));
                    }
                    _ => {}
                }
            }
            shared.ws_event(WsEvent::Ended);
        });
        let mut response = Response::new(full(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }

    /// The events `POST /v1/responses` would stream for this `response.create`, one JSON
    /// document each (the data of each SSE event).
    async fn response_events(message: &str, shared: &Shared) -> Vec<String> {
        let Ok(mut body) = serde_json::from_str::<Value>(message) else {
            return vec![json!({"type": "error", "error": {"message": "not JSON"}}).to_string()];
        };
        if let Some(object) = body.as_object_mut() {
            object.remove("type");
            object.insert("stream".into(), Value::Bool(true));
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let request = Recorded {
            method: "POST".into(),
            path: "/v1/responses".into(),
            headers,
            body: Bytes::from(body.to_string()),
            version: Version::HTTP_11,
            host: "api.openai.com".into(),
        };
        let streamed = super::openai::responses(&request, shared).into_body();
        // The body type cannot fail (`Infallible`).
        let Ok(collected) = streamed.collect().await;
        String::from_utf8_lossy(&collected.to_bytes())
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .map(str::to_owned)
            .collect()
    }
}
