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
use super::host::{self, Host};
use super::{listener, relay, sni, Shared};
use crate::act::reply::ErrorReply;
use crate::admin::metrics::metrics;
use crate::inspect::Provider;

/// How long a client may take to start TLS inside an intercepted tunnel.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<ProxyBody> {
    let Some((raw_host, port)) = req
        .uri()
        .authority()
        .map(|a| (a.host().to_string(), a.port_u16().unwrap_or(443)))
    else {
        return not_for_a_provider(
            StatusCode::BAD_REQUEST,
            "bad_connect",
            "egress-guard: CONNECT needs host:port",
        );
    };
    // Normalised once, here, before the gate, the leaf cache or a pin sees it: a trailing dot
    // or odd case must not turn an inspected host into a tunnelled one.
    let (host, route) = match destination_route(&shared, &raw_host, port) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let provider = Provider::from_host(&host);
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
            let idle = shared.config.tunnel_idle_timeout;
            let sni_shared = shared.clone();
            let span = tracing::info_span!("tunnel", %host, port);
            shared.tracker.spawn(
                async move {
                    let Some(upgraded) = tunnel_opened(on_upgrade).await else {
                        return;
                    };
                    let mut client = TokioIo::new(upgraded);
                    let first = tokio::select! {
                        first = tokio::time::timeout(
                            HANDSHAKE_TIMEOUT,
                            first_record(&mut client),
                        ) => first,
                        _ = stop.cancelled() => return,
                    };
                    let Ok(Ok(first)) = first else {
                        tracing::debug!("tunnel closed before its first record");
                        return;
                    };
                    if let Err(why) = check_hello(&sni_shared, &host, port, &first) {
                        metrics()
                            .tunnels_total
                            .with_label_values(&["refused"])
                            .inc();
                        tracing::warn!(%host, port, why, "tunnel refused after its ClientHello");
                        return;
                    }
                    let mut upstream = upstream;
                    if tokio::io::AsyncWriteExt::write_all(&mut upstream, &first)
                        .await
                        .is_err()
                    {
                        return;
                    }
                    // Tunnelled bytes have no request boundaries we could wait for, so a stop
                    // closes them at once rather than holding the process for its grace period;
                    // a tunnel nobody uses any more is closed after the idle timeout.
                    let ended = relay::both_ways(client, upstream, idle, &stop).await;
                    tracing::debug!(?ended, "tunnel closed");
                }
                .instrument(span),
            );
            Response::new(body::empty())
        }
    }
}

/// The normalised host and its route, or the answer refusing it: a name that is not a plain DNS
/// name is a `400`; an IP literal is never inspected (no leaf can name it), is refused when the
/// gate refuses hosts it does not inspect, and is logged when tunnelled.
#[allow(clippy::result_large_err)] // the answer is the point, as in `forward`
pub fn destination_route(
    shared: &Shared,
    raw_host: &str,
    port: u16,
) -> Result<(String, Route), Response<ProxyBody>> {
    let host = match host::normalize(raw_host) {
        Ok(host) => host,
        Err(error) => {
            tracing::info!(%error, "refusing a malformed destination");
            return Err(not_for_a_provider(
                StatusCode::BAD_REQUEST,
                "bad_host",
                "egress-guard: the destination is not a valid host name",
            ));
        }
    };
    let name = host.as_uri_host();
    let route = shared.gate.route(&name, port);
    match (host, route) {
        (Host::Name(_), route) => Ok((name, route)),
        (Host::Ip(_), Route::Tunnel) => {
            tracing::warn!(host = %name, port, "tunnelling to an IP address (not inspected)");
            Ok((name, Route::Tunnel))
        }
        (Host::Ip(_), _) => {
            metrics()
                .tunnels_total
                .with_label_values(&["refused"])
                .inc();
            Err(forward::reply(
                Provider::Generic,
                ErrorReply::new(
                    StatusCode::FORBIDDEN,
                    "destination_refused",
                    format!(
                        "egress-guard does not allow connections to the IP address {name};                          use the host name"
                    ),
                ),
            ))
        }
    }
}

/// Reads the tunnel's first TLS record whole (or, for a protocol that is not TLS, whatever
/// first arrived), at most [`sni::MAX_RECORD`] bytes.
async fn first_record<R: tokio::io::AsyncRead + Unpin>(client: &mut R) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf[0] != 0x16 {
            return Ok(buf);
        }
        if let Some(len) = sni::record_len(&buf) {
            if buf.len() >= len.min(sni::MAX_RECORD) {
                return Ok(buf);
            }
        }
    }
}

/// A tunnel may carry TLS only for the host it was opened to: a ClientHello naming another host
/// (or an inspected one) is domain fronting around the gate.
fn check_hello(shared: &Shared, host: &str, port: u16, first: &[u8]) -> Result<(), &'static str> {
    let len = sni::record_len(first)
        .unwrap_or(first.len())
        .min(first.len());
    match sni::parse(&first[..len]) {
        sni::Hello::NotTls | sni::Hello::NoName => Ok(()),
        sni::Hello::Unreadable => Err("unreadable ClientHello"),
        sni::Hello::Name(name) => {
            let Ok(name) = host::normalize(&name) else {
                return Err("invalid server name");
            };
            let name = name.as_uri_host();
            if shared.gate.route(&name, port) == Route::Inspect {
                return Err("the server name is an inspected host");
            }
            if name != host {
                return Err("the server name differs from the CONNECT host");
            }
            Ok(())
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
