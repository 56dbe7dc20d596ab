//! Accepting clients: the proxy listener (forward proxy + base-URL mode) and the connections
//! inside intercepted CONNECT tunnels. Both speak HTTP/1.1 and HTTP/2 (auto-detected, ALPN on
//! TLS) and both drain gracefully on stop.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::rt::{Read, Write};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tracing::Instrument;

use super::body::ProxyBody;
use super::forward::{self, Destination};
use super::gate::Route;
use super::{base_url, connect, Shared};
use crate::act::reply::ErrorReply;
use crate::inspect::Provider;

/// Pause after a failed accept (EMFILE...): long enough not to spin, short enough to be unseen.
pub(crate) const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// The largest HTTP/2 frame a client may send us (see [`serve`]).
const MAX_FRAME_SIZE: u32 = 256 * 1024;

/// Accepts until shutdown; each connection is served on its own task, tracked for the drain.
pub async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shared.shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors and the like: keep serving the connections we have,
                // and pause before trying again instead of spinning on the same error.
                tracing::warn!(%error, "accept failed");
                tokio::select! {
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    _ = shared.shutdown.cancelled() => break,
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn_shared = shared.clone();
        let span = tracing::info_span!("connection", %peer);
        shared.tracker.spawn(
            async move {
                let service_shared = conn_shared.clone();
                let service = service_fn(move |req| {
                    let shared = service_shared.clone();
                    async move { Ok::<_, Infallible>(route_client_request(shared, req).await) }
                });
                serve(&conn_shared, TokioIo::new(stream), service).await;
            }
            .instrument(span),
        );
    }
    // Closed before saying so: whoever reads this line can rely on new connections failing.
    drop(listener);
    tracing::info!("proxy listener closed");
}

/// Serves the requests inside an intercepted tunnel: every one goes to `dest` through the gate.
pub async fn serve_intercepted<I>(shared: Arc<Shared>, dest: Destination, io: I)
where
    I: Read + Write + Unpin + Send + 'static,
{
    let service_shared = shared.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let shared = service_shared.clone();
        let dest = dest.clone();
        async move {
            let path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            Ok::<_, Infallible>(forward::intercept(shared, dest, path, req).await)
        }
    });
    serve(&shared, io, service).await;
}

async fn serve<I, S>(shared: &Shared, io: I, service: S)
where
    I: Read + Write + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<ProxyBody>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    // A request body arrives in frames as large as we allow: at HTTP/2's 16 KiB default a
    // 200 KB body is thirteen frames, each read, queued and polled apart before the whole body
    // can be inspected. The flow-control windows (1 MiB, hyper's default) already let a whole
    // body come without waiting for a WINDOW_UPDATE, and they still bound what one stream holds.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_frame_size(MAX_FRAME_SIZE);
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shared.shutdown.cancelled() => {
            // Finish what is in flight (an HTTP/2 GOAWAY, or closing an HTTP/1.1 connection
            // after its current response), accept nothing new.
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "client connection ended with an error");
    }
}

/// A request on the proxy listener: CONNECT, absolute-form `http://`, or base-URL mode.
async fn route_client_request(shared: Arc<Shared>, req: Request<Incoming>) -> Response<ProxyBody> {
    if req.method() == Method::CONNECT {
        return connect::handle(shared, req).await;
    }
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    // HTTP/2 requests always carry scheme and authority, so only an HTTP/1 request with an
    // absolute target is a forward-proxy request; everything else is addressed to us.
    let absolute = req.version() != Version::HTTP_2 && req.uri().scheme().is_some();
    if absolute {
        if req.uri().scheme() != Some(&http::uri::Scheme::HTTP) {
            return connect::not_for_a_provider(
                StatusCode::BAD_REQUEST,
                "use_connect",
                "egress-guard: send https:// requests through CONNECT",
            );
        }
        let Some(authority) = req.uri().authority() else {
            return connect::not_for_a_provider(
                StatusCode::BAD_REQUEST,
                "no_host",
                "egress-guard: no host in the request target",
            );
        };
        let port = authority.port_u16().unwrap_or(80);
        let (host, route) = match connect::destination_route(&shared, authority.host(), port) {
            Ok(found) => found,
            Err(answer) => return answer,
        };
        let dest = Destination {
            scheme: http::uri::Scheme::HTTP,
            host,
            port,
        };
        return match route {
            // An inspected host is an API that takes credentials: whatever scheme the agent
            // wrote, the request leaves over verified TLS (443 unless it named another port).
            Route::Inspect => {
                let dest = Destination {
                    scheme: http::uri::Scheme::HTTPS,
                    port: if authority.port_u16().is_none() || dest.port == 80 {
                        443
                    } else {
                        dest.port
                    },
                    host: dest.host,
                };
                forward::intercept(shared, dest, path, req).await
            }
            Route::Tunnel => forward::relay_plain(shared, dest, path, req).await,
            Route::Deny => refused(&dest.host),
        };
    }
    // Checked before the prefix is stripped too: `/openai/../anthropic/...` must not pick a
    // provider by one reading and a path by another.
    if let Some((host, _)) = base_url::map(&path) {
        if let Err(answer) = forward::plain_path(&path, Provider::from_host(host)) {
            return answer;
        }
    }
    match base_url::map(&path) {
        Some((host, rest)) => {
            let dest = Destination {
                scheme: http::uri::Scheme::HTTPS,
                host: host.to_string(),
                port: 443,
            };
            // The client chose to send this here, so it is inspected whatever the route says
            // for CONNECT, unless policy refuses the host outright.
            if shared.gate.route(host, 443) == Route::Deny {
                return refused(host);
            }
            forward::intercept(shared, dest, rest, req).await
        }
        None => connect::not_for_a_provider(
            StatusCode::NOT_FOUND,
            "unknown_base_url",
            "egress-guard: this is a proxy. Use it as HTTPS_PROXY, or as a base URL with a \
             provider prefix: /anthropic, /openai or /gemini (see `egress-guard env`).",
        ),
    }
}

fn refused(host: &str) -> Response<ProxyBody> {
    crate::admin::metrics::metrics()
        .tunnels_total
        .with_label_values(&["refused"])
        .inc();
    forward::reply(
        Provider::from_host(host),
        ErrorReply::new(
            StatusCode::FORBIDDEN,
            "destination_refused",
            format!("egress-guard policy does not allow connections to {host}"),
        ),
    )
}
