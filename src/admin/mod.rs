//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/proxy.pac`, `/ca.pem`.
//!
//! For operators and scripts, never for agents' traffic: nothing here forwards anything, and
//! nothing here shows request content.

pub mod metrics;
mod pac;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::proxy::gate::Gate;

/// What the admin endpoints read.
#[derive(Clone)]
pub struct AdminState {
    /// Set once the proxy listener is bound, the CA loaded and the gate constructed.
    pub ready: Arc<AtomicBool>,
    /// Cancelled when the proxy starts stopping: from then on it is alive but not ready.
    pub stopping: CancellationToken,
    pub ca_pem: String,
    pub gate: Arc<dyn Gate>,
    pub proxy_addr: SocketAddr,
}

/// Serves the admin endpoints until `stop` is cancelled.
pub async fn serve(state: AdminState, listener: TcpListener, stop: CancellationToken) {
    let state = Arc::new(state);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, &req)) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            if state.ready.load(Ordering::SeqCst) && !state.stopping.is_cancelled() {
                text(StatusCode::OK, "text/plain", "ready\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "starting\n".into(),
                )
            }
        }
        "/ca.pem" => text(
            StatusCode::OK,
            "application/x-pem-file",
            state.ca_pem.clone(),
        ),
        "/proxy.pac" => {
            let host_header = req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok());
            let proxy = pac::proxy_address(state.proxy_addr, host_header);
            text(
                StatusCode::OK,
                "application/x-ns-proxy-autoconfig",
                pac::render(&state.gate.inspect_hosts(), &proxy),
            )
        }
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics::metrics().render(),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /healthz, /readyz, /metrics, /proxy.pac, /ca.pem\n".into(),
        ),
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
