//! One intercepted request: collect the body (bounded) -> `Gate::check` -> forward upstream ->
//! stream the response back, stamped with the decision id.
//!
//! Each stage returns `Err(response)` when it answers the client itself; that answer is the
//! point of the stage, not an exceptional path, so it is not boxed.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tracing::Instrument;

use super::body::{self, ProxyBody};
use super::gate::{Forward, Outbound, ResponseFilter, Verdict};
use super::hop;
use super::upstream::UpstreamFailure;
use super::Shared;
use crate::act::reply::ErrorReply;
use crate::admin::metrics::metrics;
use crate::audit::{DecisionId, DECISION_HEADER};
use crate::inspect::Provider;

/// Where an intercepted request goes.
#[derive(Debug, Clone)]
pub struct Destination {
    /// `https` for every intercepted request (CONNECT, base-URL, and absolute-form `http://` to an
    /// inspected host); `http` only for absolute-form requests relayed to hosts not inspected.
    pub scheme: http::uri::Scheme,
    pub host: String,
    pub port: u16,
}

impl Destination {
    /// The destination a gate chose instead of the request's own.
    fn from_override(elsewhere: &super::gate::UpstreamOverride) -> Self {
        let https = elsewhere.scheme == http::uri::Scheme::HTTPS;
        Self {
            scheme: elsewhere.scheme.clone(),
            host: elsewhere.authority.host().to_ascii_lowercase(),
            port: elsewhere
                .authority
                .port_u16()
                .unwrap_or(if https { 443 } else { 80 }),
        }
    }

    fn authority(&self) -> String {
        let default = if self.scheme == http::uri::Scheme::HTTPS {
            443
        } else {
            80
        };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority())
            .path_and_query(path_and_query)
            .build()
    }
}

/// Runs one intercepted request through the gate and, if it may leave, upstream.
pub async fn intercept(
    shared: Arc<Shared>,
    dest: Destination,
    path_and_query: String,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let span = tracing::info_span!(
        "request",
        host = %dest.host,
        method = %req.method(),
        // The path only: a query string may carry an API key (Gemini's `?key=`).
        path = %path_and_query.split('?').next().unwrap_or(""),
        status = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    );
    let response = intercept_inner(shared, dest, path_and_query, req)
        .instrument(span.clone())
        .await;
    span.record("status", response.status().as_u16());
    span.record("duration_ms", started.elapsed().as_millis() as u64);
    span.in_scope(|| tracing::info!("response head sent"));
    response
}

/// The stages, in order; each either hands on or answers the client itself.
async fn intercept_inner(
    shared: Arc<Shared>,
    dest: Destination,
    path_and_query: String,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let provider = Provider::from_host(&dest.host);
    if let Err(answer) = plain_path(&path_and_query, provider) {
        return answer;
    }
    let upgrade = hop::is_websocket_upgrade(req.headers()) && req.version() == Version::HTTP_11;
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, incoming) = req.into_parts();

    let body = match read_body(
        &parts,
        incoming,
        shared.config.max_body,
        shared.config.body_idle_timeout,
        provider,
    )
    .await
    {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    if let Err(answer) = as_it_will_leave(&mut parts, &path_and_query, upgrade, provider) {
        return answer;
    }
    let mut forward = match ask_gate(&shared, &dest, parts, body, provider).await {
        Ok(forward) => forward,
        Err(answer) => return answer,
    };
    let decision_id = forward.decision_id;
    let filter = forward.response;
    let messages = forward.messages.take().filter(|_| upgrade);
    if messages.is_some() {
        // The message relay reads frames as sent; a compressed (permessage-deflate) message
        // could not be inspected, so the extension is never offered upstream.
        forward
            .parts
            .headers
            .remove(header::SEC_WEBSOCKET_EXTENSIONS);
    }
    // A gate may send the request elsewhere (a local model server chosen by policy); the proxy
    // honours that or nothing leaves, never the original destination by default.
    // Only such a policy-named endpoint (e.g. Ollama on localhost) may be plain http; the
    // request's own destination always goes over verified TLS.
    let (target, client) = match &forward.upstream {
        Some(elsewhere) => (Destination::from_override(elsewhere), &shared.client),
        None if upgrade => (dest.clone(), &shared.upgrade_client),
        None => (dest.clone(), &shared.intercept_client),
    };
    let response = match send_upstream(&shared, client, &target, forward.parts, forward.body).await
    {
        Ok(response) => response,
        Err(failure) => {
            return reply(
                provider,
                failure.into_reply(&dest.host).with_decision(decision_id),
            )
        }
    };
    let upgraded = client_upgrade.map(|client| Upgrade {
        client,
        messages,
        provider,
    });
    to_client(&shared, response, upgraded, filter, decision_id)
}

/// A client's pending upgrade, and what inspects its messages if the gate asked for that.
struct Upgrade {
    client: hyper::upgrade::OnUpgrade,
    messages: Option<Box<dyn super::gate::MessageInspector>>,
    provider: Provider,
}

fn count(provider: Provider, action: &str) {
    metrics()
        .requests_total
        .with_label_values(&[provider.as_str(), action])
        .inc();
}

/// Most a declared length may reserve before its bytes arrive: a client cannot make the proxy
/// hold more memory than it sends by declaring a large body and stalling. A larger body grows
/// the buffer past this as it arrives.
const RESERVE_MAX: usize = 4 * 1024 * 1024;

/// Collects a body frame by frame into one buffer sized from the declared length (`expected`),
/// so a 200 KB body is copied once, not again each time a growing buffer doubles; a body that
/// came in one frame is kept as it is, not copied at all. `None` when no frame arrived for
/// `idle` (a client that stalls mid-body must not hold a task and its buffer forever).
async fn collect_within<B>(
    mut body: B,
    idle: std::time::Duration,
    expected: usize,
) -> Result<Option<Bytes>, B::Error>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let mut first: Option<Bytes> = None;
    let mut collected = bytes::BytesMut::new();
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Ok(None),
            Ok(None) => {
                return Ok(Some(match first {
                    Some(only) if collected.is_empty() => only,
                    _ => collected.freeze(),
                }))
            }
            Ok(Some(frame)) => {
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                if first.is_none() && collected.is_empty() {
                    first = Some(data);
                    continue;
                }
                if let Some(head) = first.take() {
                    let wanted = expected.max(head.len() + data.len());
                    collected.reserve(wanted.min(RESERVE_MAX.max(head.len() + data.len())));
                    collected.extend_from_slice(&head);
                }
                collected.extend_from_slice(&data);
            }
        }
    }
}

/// Collects the request body, at most `limit` bytes: a declared length over it is refused before
/// reading, and a body that keeps coming is refused as soon as it passes the limit, never held
/// whole in memory.
async fn read_body(
    parts: &http::request::Parts,
    incoming: Incoming,
    limit: usize,
    idle: std::time::Duration,
    provider: Provider,
) -> Result<Bytes, Response<ProxyBody>> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        count(provider, "block");
        return Err(too_large(provider, limit));
    }
    let expected = declared.map_or(0, |n| n as usize);
    match collect_within(Limited::new(incoming, limit), idle, expected).await {
        Ok(Some(collected)) => Ok(collected),
        Ok(None) => {
            tracing::info!("client stopped sending its request body");
            Err(reply(
                provider,
                ErrorReply::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_body_timeout",
                    format!(
                        "egress-guard stopped waiting for the request body (nothing arrived for \
                         {}s); nothing was sent",
                        idle.as_secs()
                    ),
                ),
            ))
        }
        Err(error) if error.is::<LengthLimitError>() => {
            count(provider, "block");
            Err(too_large(provider, limit))
        }
        Err(error) => {
            tracing::info!(%error, "client request body broke off");
            Err(reply(
                provider,
                ErrorReply::new(
                    StatusCode::BAD_REQUEST,
                    "request_body_incomplete",
                    "egress-guard could not read the whole request body from the client; \
                     nothing was sent",
                ),
            ))
        }
    }
}

/// Refuses a path the gate and the upstream could read differently: dot-segments, empty
/// segments, encoded slashes, dots or backslashes. The gate's rules match the path as written;
/// an upstream (or a CDN in front of it) that normalises it would act on another one.
pub fn plain_path(path_and_query: &str, provider: Provider) -> Result<(), Response<ProxyBody>> {
    if is_plain_path(path_and_query) {
        return Ok(());
    }
    Err(reply(
        provider,
        ErrorReply::new(
            StatusCode::BAD_REQUEST,
            "ambiguous_path",
            "egress-guard refused this request: its path has `.`/`..` segments, an empty \
             segment or an encoded `/`, `.` or `\\`, so it was not sent",
        ),
    ))
}

fn is_plain_path(path_and_query: &str) -> bool {
    let path = path_and_query.split('?').next().unwrap_or("");
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let lower = path.to_ascii_lowercase();
    if path.contains('\\')
        || ["%2f", "%2e", "%5c", "%00"]
            .iter()
            .any(|e| lower.contains(e))
    {
        return false;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    segments
        .iter()
        .enumerate()
        .all(|(i, seg)| *seg != "." && *seg != ".." && (!seg.is_empty() || i == last))
}

/// Turns the client's head into the one the gate sees and the upstream gets: end-to-end headers
/// only, origin-form target.
fn as_it_will_leave(
    parts: &mut http::request::Parts,
    path_and_query: &str,
    upgrade: bool,
    provider: Provider,
) -> Result<(), Response<ProxyBody>> {
    hop::strip(&mut parts.headers, upgrade);
    // The body is already here (the client got its `100 Continue` from us when we read it);
    // asking the upstream to confirm again would only add a round trip.
    parts.headers.remove(header::EXPECT);
    // The upstream client writes `Host` from the destination; the client's own value named the
    // proxy (base-URL mode) or duplicates the authority.
    parts.headers.remove(header::HOST);
    parts.uri = path_and_query.parse::<Uri>().map_err(|_| {
        reply(
            provider,
            ErrorReply::new(
                StatusCode::BAD_REQUEST,
                "bad_request_target",
                "egress-guard could not read the request's path",
            ),
        )
    })?;
    Ok(())
}

/// Bodies above this are checked on the blocking pool: scanning megabytes takes milliseconds,
/// which would stall every other connection sharing the async worker.
const CHECK_INLINE_MAX: usize = 256 * 1024;

/// The seam: the gate decides; its own answer goes back as is.
async fn ask_gate(
    shared: &Shared,
    dest: &Destination,
    parts: http::request::Parts,
    body: Bytes,
    provider: Provider,
) -> Result<Forward, Response<ProxyBody>> {
    metrics().bytes_inspected_total.inc_by(body.len() as u64);
    let gate_started = Instant::now();
    let large = body.len() > CHECK_INLINE_MAX;
    let outbound = Outbound {
        host: dest.host.clone(),
        port: dest.port,
        parts,
        body,
    };
    let verdict = if large {
        let gate = shared.gate.clone();
        match tokio::task::spawn_blocking(move || gate.check(outbound)).await {
            Ok(verdict) => verdict,
            Err(error) => {
                // The gate failed (panicked): fail closed.
                tracing::error!(%error, "the inspection gate failed; request not sent");
                count(provider, "block");
                return Err(reply(
                    provider,
                    ErrorReply::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "inspection_failed",
                        "egress-guard could not inspect this request, so it was not sent",
                    ),
                ));
            }
        }
    } else {
        shared.gate.check(outbound)
    };
    metrics()
        .inspect_duration_seconds
        .observe(gate_started.elapsed().as_secs_f64());
    match verdict {
        Verdict::Respond(response) => {
            count(provider, "block");
            Err(response.map(body::full))
        }
        Verdict::Forward(forward) => {
            count(provider, "allow");
            Ok(forward)
        }
    }
}

/// Sends the cleared request over the pooled, verified client; waits for the response head at
/// most `response_timeout`.
async fn send_upstream(
    shared: &Shared,
    client: &super::upstream::UpstreamClient,
    dest: &Destination,
    mut parts: http::request::Parts,
    body: Bytes,
) -> Result<Response<Incoming>, UpstreamFailure> {
    parts.uri = dest
        .uri(parts.uri.path_and_query().map_or("/", |p| p.as_str()))
        .map_err(|e| UpstreamFailure::Unreachable(format!("bad upstream address: {e}")))?;
    // The length is the body we send, not whatever the client or a gate left in the head: a
    // stale value would cut the body short upstream or smuggle the rest as another request.
    parts.headers.remove(header::TRANSFER_ENCODING);
    if body.is_empty() && !parts.headers.contains_key(header::CONTENT_LENGTH) {
        // A bodiless request (GET) stays without one.
    } else {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    // The upstream side negotiates its own version by ALPN; HTTP/1.1 here means "let the
    // connection decide", which lets an HTTP/2 client reach an HTTP/1.1-only upstream and back.
    parts.version = Version::HTTP_11;
    let request = Request::from_parts(
        parts,
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    let sent = tokio::time::timeout(shared.config.response_timeout, client.request(request));
    match sent.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(error)) => {
            metrics().upstream_errors_total.inc();
            let failure = UpstreamFailure::from_client_error(&dest.host, &error);
            tracing::warn!(error = %error, ?failure, "upstream request failed");
            Err(failure)
        }
        Err(_elapsed) => {
            metrics().upstream_errors_total.inc();
            tracing::warn!("upstream response timed out");
            Err(UpstreamFailure::Timeout)
        }
    }
}

/// The upstream's response as the client gets it: hop-by-hop headers dropped, the filter's head
/// applied, the decision stamped, the body streamed frame by frame (or, after `101`, the
/// connection relayed both ways).
fn to_client(
    shared: &Shared,
    mut response: Response<Incoming>,
    client_upgrade: Option<Upgrade>,
    mut filter: Option<Box<dyn ResponseFilter>>,
    decision_id: DecisionId,
) -> Response<ProxyBody> {
    let decision = HeaderValue::from_str(&decision_id.to_string()).ok();
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if let (true, Some(client_upgrade)) = (switching, client_upgrade) {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let inspected = client_upgrade.messages.is_some();
        let span = tracing::info_span!("upgraded", inspected, decision = %decision_id);
        shared.tracker.spawn(
            relay_upgraded(
                client_upgrade,
                upstream_upgrade,
                super::websocket::Bounds {
                    max_message: shared.config.max_body,
                    idle: shared.config.tunnel_idle_timeout,
                },
                shared.shutdown.clone(),
            )
            .instrument(span),
        );
        let (mut head, _) = response.into_parts();
        hop::strip(&mut head.headers, true);
        if inspected {
            // Not offered upstream, so an upstream that names an extension anyway is answered
            // by frames the relay refuses; the client is never told to compress.
            head.headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
        }
        if let Some(decision) = decision {
            head.headers.insert(DECISION_HEADER, decision);
        }
        return Response::from_parts(head, body::empty());
    }

    let (mut head, incoming) = response.into_parts();
    hop::strip(&mut head.headers, false);
    if let Some(filter) = filter.as_mut() {
        filter.head(&mut head);
        // A filter may change the body's length; never trust it to have said so.
        head.headers.remove(header::CONTENT_LENGTH);
    }
    if let Some(decision) = decision {
        head.headers.insert(DECISION_HEADER, decision);
    }
    Response::from_parts(head, body::relay(incoming, filter))
}

/// Relays an upgraded connection (WebSocket, ...) both ways until both sides close, it idles
/// out, or the proxy stops (an open WebSocket must not hold a drain for its grace period): as
/// WebSocket messages through the gate's inspector when it gave one, else as bytes.
async fn relay_upgraded(
    client: Upgrade,
    upstream: hyper::upgrade::OnUpgrade,
    bounds: super::websocket::Bounds,
    stop: tokio_util::sync::CancellationToken,
) {
    let Upgrade {
        client,
        messages,
        provider,
    } = client;
    let both = tokio::select! {
        both = async { tokio::try_join!(client, upstream) } => both,
        _ = stop.cancelled() => return,
    };
    let (client, upstream) = match both {
        Ok(both) => both,
        Err(error) => {
            tracing::info!(%error, "upgrade did not complete");
            return;
        }
    };
    if let Some(inspector) = messages {
        let ended =
            super::websocket::relay(client, upstream, inspector, provider, bounds, &stop).await;
        tracing::debug!(?ended, "inspected WebSocket closed");
        return;
    }
    let ended = super::relay::both_ways(
        TokioIo::new(client),
        TokioIo::new(upstream),
        bounds.idle,
        &stop,
    )
    .await;
    tracing::debug!(?ended, "upgraded connection closed");
}

fn too_large(provider: Provider, limit: usize) -> Response<ProxyBody> {
    reply(
        provider,
        ErrorReply::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "egress-guard blocked this request: its body is larger than the {} limit it can \
                 inspect, so it was not sent. Send less at once, or raise --max-body.",
                human_size(limit)
            ),
        ),
    )
}

pub fn reply(provider: Provider, reply: ErrorReply) -> Response<ProxyBody> {
    reply.into_response(provider).map(body::full)
}

pub fn human_size(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

/// A plain `http://` request to a host the gate does not inspect: relayed as a classic forward
/// proxy would, body streamed both ways, never looked at.
pub async fn relay_plain(
    shared: Arc<Shared>,
    dest: Destination,
    path_and_query: String,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let provider = Provider::from_host(&dest.host);
    let (mut parts, incoming) = req.into_parts();
    hop::strip(&mut parts.headers, false);
    parts.headers.remove(header::HOST);
    parts.version = Version::HTTP_11;
    parts.uri = match dest.uri(&path_and_query) {
        Ok(uri) => uri,
        Err(_) => {
            return reply(
                provider,
                ErrorReply::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request_target",
                    "egress-guard could not read the request's target",
                ),
            )
        }
    };
    let request = Request::from_parts(parts, incoming.map_err(Into::into).boxed_unsync());
    let sent = tokio::time::timeout(
        shared.config.response_timeout,
        shared.client.request(request),
    )
    .await;
    match sent {
        Ok(Ok(response)) => {
            metrics()
                .tunnels_total
                .with_label_values(&["relayed"])
                .inc();
            let (mut head, incoming) = response.into_parts();
            hop::strip(&mut head.headers, false);
            Response::from_parts(head, body::relay(incoming, None))
        }
        Ok(Err(error)) => {
            metrics().upstream_errors_total.inc();
            let failure = UpstreamFailure::from_client_error(&dest.host, &error);
            reply(provider, failure.into_reply(&dest.host))
        }
        Err(_) => {
            metrics().upstream_errors_total.inc();
            reply(provider, UpstreamFailure::Timeout.into_reply(&dest.host))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{collect_within, is_plain_path};
    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::StreamBody;
    use std::convert::Infallible;
    use std::time::Duration;

    fn body(
        parts: &[&'static [u8]],
    ) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>>> {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_body_comes_out_whole_and_in_order_however_it_was_framed() {
        let idle = Duration::from_secs(5);
        for (parts, declared) in [
            (&[][..], 0),
            (&[&b"one frame"[..]][..], 9),
            (&[&b"two "[..], &b"frames"[..]][..], 10),
            (
                &[
                    &b"a "[..],
                    &b""[..],
                    &b"declared "[..],
                    &b"length that lies"[..],
                ][..],
                3,
            ),
            (&[&b"no "[..], &b"declared "[..], &b"length"[..]][..], 0),
        ] {
            let whole: Vec<u8> = parts.concat();
            let got = collect_within(body(parts), idle, declared)
                .await
                .expect("no error")
                .expect("not idle");
            assert_eq!(&got[..], &whole[..], "{parts:?}");
        }
    }

    #[test]
    fn only_plain_paths_pass() {
        for ok in [
            "/",
            "/v1/messages",
            "/v1/models/",
            "/v1/x:generate?alt=sse&a=..%2F",
        ] {
            assert!(is_plain_path(ok), "{ok}");
        }
        for bad in [
            "",
            "*",
            "//v1/messages",
            "/v1//messages",
            "/./v1",
            "/v1/../x",
            "/v1/..",
            "/v1/%2e%2e/x",
            "/v1%2Fmessages",
            "/v1\\..\\x",
            "/v1/%5c",
        ] {
            assert!(!is_plain_path(bad), "{bad}");
        }
    }
}
