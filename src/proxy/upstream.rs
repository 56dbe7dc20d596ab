//! The upstream side: a pooled HTTP/1.1 + HTTP/2 client over verified TLS, with `--resolve`
//! pinning and bounded connect and response times.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::{BoxError, ProxyError};

/// `HOST:PORT=ADDR:PORT` pins: where to connect when HOST:PORT is the destination. TLS is still
/// verified for HOST, so a pin can redirect traffic but never weaken it.
#[derive(Debug, Clone, Default)]
pub struct ResolveMap(HashMap<(String, u16), SocketAddr>);

impl ResolveMap {
    pub fn parse(pins: &[String]) -> Result<Self, ProxyError> {
        let mut map = HashMap::new();
        for pin in pins {
            let bad = || ProxyError::BadResolve(pin.clone());
            let (name, addr) = pin.split_once('=').ok_or_else(bad)?;
            let (host, port) = name.rsplit_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            let addr: SocketAddr = addr.trim().parse().map_err(|_| bad())?;
            // Pinned under the same normalised name the proxy looks up.
            let host = super::host::normalize(host.trim()).map_err(|_| bad())?;
            map.insert((host.as_uri_host(), port), addr);
        }
        Ok(Self(map))
    }

    fn get(&self, host: &str, port: u16) -> Option<SocketAddr> {
        self.0.get(&(host.to_ascii_lowercase(), port)).copied()
    }
}

/// Opens TCP connections to upstreams, honouring the pins; used by the pooled client and by
/// tunnels alike, so `--resolve` means the same thing for both.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    resolve: Arc<ResolveMap>,
    connect_timeout: Duration,
}

impl TcpConnector {
    pub fn new(resolve: ResolveMap, connect_timeout: Duration) -> Self {
        Self {
            resolve: Arc::new(resolve),
            connect_timeout,
        }
    }

    pub async fn connect(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let pinned = self.resolve.get(host, port);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let attempt = async {
            match pinned {
                Some(addr) => TcpStream::connect(addr).await,
                None => TcpStream::connect((host, port)).await,
            }
        };
        let stream = tokio::time::timeout(self.connect_timeout, attempt)
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no connection to {host}:{port} within {}s",
                        self.connect_timeout.as_secs()
                    ),
                )
            })??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

impl tower_service::Service<Uri> for TcpConnector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host in URI"))?
                .to_string();
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            connector.connect(&host, port).await.map(TokioIo::new)
        })
    }
}

pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// The pooled client: keep-alive, one pool per (scheme, authority), HTTP/2 whenever the
/// upstream offers it by ALPN, HTTP/1.1 otherwise, whatever the client side speaks.
pub type UpstreamClient = Client<HttpsConnector<TcpConnector>, UpstreamBody>;

///
/// With `https_only` the connector refuses any `http://` URI: the client that carries
/// intercepted (credential-bearing) requests can then never send one in cleartext, whatever a
/// bug upstream of it builds.
pub fn client(tls: rustls::ClientConfig, tcp: TcpConnector, https_only: bool) -> UpstreamClient {
    let builder = HttpsConnectorBuilder::new().with_tls_config(tls);
    let builder = if https_only {
        builder.https_only()
    } else {
        builder.https_or_http()
    };
    let https = builder.enable_http1().enable_http2().wrap_connector(tcp);
    pooled(https)
}

/// A client that speaks only HTTP/1.1 (and only https), for upgrade requests: a WebSocket
/// upgrade is an HTTP/1.1 mechanism, and an upstream that offers HTTP/2 by ALPN (as the AI
/// APIs do) would otherwise get it on a connection where it cannot work.
pub fn upgrade_client(tls: rustls::ClientConfig, tcp: TcpConnector) -> UpstreamClient {
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(tcp);
    pooled(https)
}

fn pooled(https: HttpsConnector<TcpConnector>) -> UpstreamClient {
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(https)
}

/// Why an upstream exchange failed, as the client will be told.
#[derive(Debug)]
pub enum UpstreamFailure {
    /// Could not connect, or the upstream's certificate is not trusted: 502.
    Unreachable(String),
    /// No response head in time: 504.
    Timeout,
}

impl UpstreamFailure {
    pub fn from_client_error(host: &str, error: &hyper_util::client::legacy::Error) -> Self {
        let untrusted = |tls: &rustls::Error| {
            Self::Unreachable(format!(
                "the TLS certificate of {host} is not trusted ({tls}); egress-guard never \
                 sends a request to an upstream it cannot verify"
            ))
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
        let mut detail = String::new();
        while let Some(e) = cause {
            if let Some(tls) = e.downcast_ref::<rustls::Error>() {
                return untrusted(tls);
            }
            if let Some(io) = e.downcast_ref::<io::Error>() {
                if io.kind() == io::ErrorKind::TimedOut {
                    return Self::Timeout;
                }
                // An io::Error hides the error it wraps from `source()`: step inside instead.
                if let Some(inner) = io.get_ref() {
                    detail = e.to_string();
                    cause = Some(inner as &(dyn std::error::Error + 'static));
                    continue;
                }
            }
            detail = e.to_string();
            cause = e.source();
        }
        Self::Unreachable(format!("could not reach {host}: {detail}"))
    }
}

impl UpstreamFailure {
    /// The provider-neutral error reply for this failure (the caller shapes it per provider).
    pub fn into_reply(self, host: &str) -> crate::act::reply::ErrorReply {
        use crate::act::reply::ErrorReply;
        use http::StatusCode;
        match self {
            Self::Unreachable(message) => ErrorReply::new(
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                format!("egress-guard: {message}"),
            ),
            Self::Timeout => ErrorReply::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                format!("egress-guard: {host} did not answer in time"),
            ),
        }
    }
}
