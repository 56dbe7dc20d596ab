//! `CONNECT host:port`: the gate routes it to interception (TLS terminated with a minted leaf,
//! each request through the gate), a byte-for-byte tunnel, or a refusal.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use super::body::{self, ProxyBody};
use super::forward::{self, Destination};
use super::gate::Route;
use super::{listener, Shared};
use crate::act::reply::ErrorReply;
use crate::admin::metrics::metrics;
use crate::inspect::Provider;

/// How long a client may take to start TLS inside an intercepted tunnel.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<ProxyBody> {
    let Some((host, port)) = req
        .uri()
        .authority()
        .map(|a| (a.host().to_ascii_lowercase(), a.port_u16().unwrap_or(443)))
    else {
        return not_for_a_provider(
            StatusCode::BAD_REQUEST,
            "bad_connect",
            "egress-guard: CONNECT needs host:port",
        );
    };
    let provider = Provider::from_host(&host);
    let route = shared.gate.route(&host, port);
    tracing::debug!(%host, port, ?route, "CONNECT");
    match route {
        Route::Deny => {
            metrics()
                .tunnels_total
                .with_label_values(&["refused"])
                .inc();
            forward::reply(
                provider,
                ErrorReply::new(
                    StatusCode::FORBIDDEN,
                    "destination_refused",
                    format!("egress-guard policy does not allow connections to {host}"),
                ),
            )
        }
        Route::Inspect => match shared.leaves.get_or_mint(&host) {
            Ok(tls) => {
                let dest = Destination {
                    scheme: http::uri::Scheme::HTTPS,
                    host,
                    port,
                };
                let on_upgrade = hyper::upgrade::on(req);
                let span = tracing::info_span!("intercept", host = %dest.host, port);
                let task_shared = shared.clone();
                shared.tracker.spawn(
                    async move {
                        let Some(upgraded) = tunnel_opened(on_upgrade).await else {
                            return;
                        };
                        // A client that opens the tunnel but never starts TLS must not hold a
                        // task (or a drain) forever.
                        let handshake = TlsAcceptor::from(tls).accept(TokioIo::new(upgraded));
                        let handshake = tokio::select! {
                            done = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => done,
                            _ = task_shared.shutdown.cancelled() => return,
                        };
                        let Ok(handshake) = handshake else {
                            tracing::info!("client never completed the TLS handshake");
                            return;
                        };
                        let tls = match handshake {
                            Ok(tls) => tls,
                            Err(error) => {
                                // Usually a client that does not trust our CA yet: say how to fix.
                                tracing::warn!(
                                    %error,
                                    "client TLS handshake failed (does the client trust the \
                                     egress-guard CA? see `egress-guard env`)"
                                );
                                return;
                            }
                        };
                        listener::serve_intercepted(task_shared, dest, TokioIo::new(tls)).await;
                    }
                    .instrument(span),
                );
                Response::new(body::empty())
            }
            Err(error) => {
                tracing::warn!(%error, "refusing to intercept");
                metrics()
                    .tunnels_total
                    .with_label_values(&["refused"])
                    .inc();
                forward::reply(
                    provider,
                    ErrorReply::new(StatusCode::FORBIDDEN, "cannot_intercept", error.to_string()),
                )
            }
        },
        Route::Tunnel => {
            // Connect first, so a dead upstream is a 502 the client can read, not a tunnel that
            // opens and immediately closes.
            let upstream = match shared.tcp.connect(&host, port).await {
                Ok(stream) => stream,
                Err(error) => {
                    metrics().tunnels_total.with_label_values(&["failed"]).inc();
                    metrics().upstream_errors_total.inc();
                    tracing::warn!(%host, port, %error, "tunnel upstream unreachable");
                    return forward::reply(
                        provider,
                        ErrorReply::new(
                            StatusCode::BAD_GATEWAY,
                            "upstream_unreachable",
                            format!("egress-guard could not reach {host}:{port}: {error}"),
                        ),
                    );
                }
            };
            metrics()
                .tunnels_total
                .with_label_values(&["relayed"])
                .inc();
            let on_upgrade = hyper::upgrade::on(req);
            let stop = shared.shutdown.clone();
            let span = tracing::info_span!("tunnel", %host, port);
            shared.tracker.spawn(
                async move {
                    let Some(upgraded) = tunnel_opened(on_upgrade).await else {
                        return;
                    };
                    let mut client = TokioIo::new(upgraded);
                    let mut upstream = upstream;
                    // Tunnelled bytes have no request boundaries we could wait for, so a stop
                    // closes them at once rather than holding the process for its grace period.
                    tokio::select! {
                        result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                            if let Ok((up, down)) = result {
                                tracing::debug!(up, down, "tunnel closed");
                            }
                        }
                        _ = stop.cancelled() => tracing::debug!("tunnel closed by shutdown"),
                    }
                }
                .instrument(span),
            );
            Response::new(body::empty())
        }
    }
}

/// The client's side of the tunnel, once our `200` has gone out.
async fn tunnel_opened(on_upgrade: hyper::upgrade::OnUpgrade) -> Option<hyper::upgrade::Upgraded> {
    match on_upgrade.await {
        Ok(upgraded) => Some(upgraded),
        Err(error) => {
            tracing::debug!(%error, "CONNECT was not upgraded");
            None
        }
    }
}

/// An error about the request itself, before any provider is known: the generic (OpenAI-style)
/// error shape, which most agents can display.
pub fn not_for_a_provider(
    status: StatusCode,
    code: &'static str,
    message: &'static str,
) -> Response<ProxyBody> {
    forward::reply(Provider::Generic, ErrorReply::new(status, code, message))
}
