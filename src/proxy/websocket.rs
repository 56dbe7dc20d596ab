//! The message relay for an inspected WebSocket (`settings.websocket = "inspect"`): after the
//! upstream's `101`, both connections are read as WebSocket frames (tungstenite), every whole
//! client message goes through the connection's [`MessageInspector`] before anything of it
//! leaves, and upstream text messages come back through it too (surrogates restored).
//!
//! What it must never do: let a client message, or any part of one, leave uninspected. A message
//! over the size limit, one that cannot be read (bad UTF-8, compressed or malformed frames), or an
//! inspector that fails closes the connection with the reason.
//!
//! One loop handles both directions, one message at a time, so the inspector needs no lock and
//! message order is kept; every send is bounded by the idle timeout, so a peer that stops reading
//! cannot hold the loop (or the proxy's drain) forever.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::gate::{MessageInspector, MessageVerdict, WsMessage, WsRefusal};
use crate::admin::metrics::metrics;
use crate::inspect::Provider;

/// A close frame's reason holds at most 123 bytes (RFC 6455 §5.5: 125 minus the code).
pub const MAX_CLOSE_REASON: usize = 123;

/// Client messages at least this big are inspected on the blocking pool (as request bodies are).
const CHECK_INLINE_MAX: usize = 256 * 1024;

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// What bounds one inspected WebSocket connection.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Largest client message (after reassembly) the proxy holds for inspection; a bigger one
    /// closes the connection (1009), since it could only leave uninspected.
    pub max_message: usize,
    /// Longest the connection may carry nothing either way, and longest one send may wait.
    pub idle: Duration,
}

/// How the relay ended, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed, or one went away.
    Closed,
    /// A client message was refused by policy (or could not be inspected).
    Refused,
    /// A client message was over the limit, or unreadable.
    Unreadable,
    Idle,
    Shutdown,
}

/// Runs the message relay over two upgraded connections until both close, a message is
/// refused, it idles out, or the proxy stops.
pub async fn relay(
    client: Upgraded,
    upstream: Upgraded,
    mut inspector: Box<dyn MessageInspector>,
    provider: Provider,
    bounds: Bounds,
    stop: &CancellationToken,
) -> Ended {
    let client_config = WebSocketConfig::default()
        .max_message_size(Some(bounds.max_message))
        .max_frame_size(Some(bounds.max_message));
    let mut client =
        WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, Some(client_config))
            .await;
    let mut upstream =
        WebSocketStream::from_raw_socket(TokioIo::new(upstream), Role::Client, None).await;
    let (mut client_done, mut upstream_done) = (false, false);
    while !(client_done && upstream_done) {
        tokio::select! {
            _ = stop.cancelled() => {
                let reason = "egress-guard is shutting down";
                close(&mut client, CloseCode::Away, reason, bounds.idle).await;
                close(&mut upstream, CloseCode::Away, reason, bounds.idle).await;
                return Ended::Shutdown;
            }
            _ = tokio::time::sleep(bounds.idle) => {
                let reason = "egress-guard closed an idle WebSocket";
                close(&mut client, CloseCode::Away, reason, bounds.idle).await;
                close(&mut upstream, CloseCode::Away, reason, bounds.idle).await;
                return Ended::Idle;
            }
            read = client.next(), if !client_done => match read {
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    let message = match message {
                        Message::Text(text) => WsMessage::Text(text.as_str().to_owned()),
                        other => WsMessage::Binary(other.into_data()),
                    };
                    match check(&mut inspector, message, provider).await {
                        Ok(forward) => {
                            if !send(&mut upstream, outgoing(forward), bounds.idle).await {
                                // The client would go on sending into a socket that leads
                                // nowhere: tell it, as when the upstream breaks off.
                                upstream_done = true;
                                client_done = true;
                                close(&mut client, CloseCode::Error, "the upstream connection failed", bounds.idle).await;
                            }
                        }
                        Err(refusal) => {
                            refuse(&mut client, &mut upstream, refusal, bounds.idle).await;
                            return Ended::Refused;
                        }
                    }
                }
                Some(Ok(control @ (Message::Ping(_) | Message::Pong(_) | Message::Close(_)))) => {
                    // Passed on so liveness and the closing handshake stay end to end, but
                    // without their payload: up to 125 bytes a client chooses (room for a key)
                    // would otherwise leave unread. A ping goes empty (tungstenite already
                    // answered the client's own), a pong empty (RFC 6455 §5.5.3 allows an
                    // unsolicited one), a close with its code only.
                    let bare = match control {
                        Message::Ping(_) => Message::Ping(Default::default()),
                        Message::Pong(_) => Message::Pong(Default::default()),
                        Message::Close(frame) => Message::Close(frame.map(|frame| {
                            CloseFrame {
                                code: frame.code,
                                reason: Default::default(),
                            }
                        })),
                        other => other,
                    };
                    let _ = send(&mut upstream, bare, bounds.idle).await;
                }
                Some(Ok(Message::Frame(_))) => {}
                Some(Err(error)) if !went_away(&error) => {
                    unreadable(&mut client, &mut upstream, &error, provider, bounds).await;
                    return Ended::Unreadable;
                }
                Some(Err(_)) | None => {
                    // Gone, with or without a closing handshake: nothing was half-read.
                    client_done = true;
                    if !upstream_done {
                        close(&mut upstream, CloseCode::Away, "the client went away", bounds.idle).await;
                    }
                }
            },
            read = upstream.next(), if !upstream_done => match read {
                Some(Ok(Message::Text(text))) => {
                    for text in inspector.upstream_text(text.as_str().to_owned()) {
                        if !send(&mut client, Message::text(text), bounds.idle).await {
                            client_done = true;
                            break;
                        }
                    }
                }
                Some(Ok(Message::Frame(_))) => {}
                Some(Ok(other)) => {
                    if !send(&mut client, other, bounds.idle).await {
                        client_done = true;
                    }
                }
                Some(Err(error)) => {
                    tracing::info!(%error, "the upstream WebSocket broke off");
                    upstream_done = true;
                    close(&mut client, CloseCode::Error, "the upstream connection failed", bounds.idle).await;
                }
                None => {
                    upstream_done = true;
                    if !client_done {
                        close(&mut client, CloseCode::Away, "the upstream closed the connection", bounds.idle).await;
                    }
                }
            },
        }
    }
    Ended::Closed
}

/// One client message through the inspector (on the blocking pool when large), timed and
/// counted like a request. `Err` is the refusal the client gets.
async fn check(
    inspector: &mut Box<dyn MessageInspector>,
    message: WsMessage,
    provider: Provider,
) -> Result<WsMessage, WsRefusal> {
    let size = message.as_bytes().len();
    metrics().bytes_inspected_total.inc_by(size as u64);
    let started = Instant::now();
    let verdict = if size >= CHECK_INLINE_MAX {
        // The inspector moves to the blocking pool and back; if it fails there (a panic) it is
        // gone, and so is the connection (fail closed).
        let placeholder: Box<dyn MessageInspector> = Box::new(Failed);
        let mut moved = std::mem::replace(inspector, placeholder);
        match tokio::task::spawn_blocking(move || {
            let verdict = moved.client_message(message);
            (moved, verdict)
        })
        .await
        {
            Ok((back, verdict)) => {
                *inspector = back;
                verdict
            }
            Err(error) => {
                tracing::error!(%error, "the inspection gate failed on a WebSocket message");
                inspector.client_message(WsMessage::Binary(Default::default()))
            }
        }
    } else {
        inspector.client_message(message)
    };
    metrics()
        .inspect_duration_seconds
        .observe(started.elapsed().as_secs_f64());
    let action = match verdict {
        MessageVerdict::Forward(_) => "allow",
        MessageVerdict::Close(_) => "block",
    };
    metrics()
        .requests_total
        .with_label_values(&[provider.as_str(), action])
        .inc();
    match verdict {
        MessageVerdict::Forward(message) => Ok(message),
        MessageVerdict::Close(refusal) => Err(refusal),
    }
}

/// Stands in for an inspector lost to a failure: refuses everything.
struct Failed;

impl MessageInspector for Failed {
    fn client_message(&mut self, _message: WsMessage) -> MessageVerdict {
        MessageVerdict::Close(WsRefusal {
            reason: "egress-guard could not inspect this message; nothing was sent".into(),
            notice: None,
        })
    }
}

fn outgoing(message: WsMessage) -> Message {
    match message {
        WsMessage::Text(text) => Message::text(text),
        WsMessage::Binary(bytes) => Message::Binary(bytes),
    }
}

/// Tells the client why (its notice, then close 1008 with the reason) and closes upstream.
async fn refuse(client: &mut Socket, upstream: &mut Socket, refusal: WsRefusal, idle: Duration) {
    tracing::info!(reason = %refusal.reason, "WebSocket message refused; connection closed");
    if let Some(notice) = refusal.notice {
        let _ = send(client, Message::text(notice), idle).await;
    }
    close(client, CloseCode::Policy, &refusal.reason, idle).await;
    close(
        upstream,
        CloseCode::Policy,
        "closed by the client's egress policy",
        idle,
    )
    .await;
}

/// A client message that could not be read whole: too big, not UTF-8, or framed in a way the
/// proxy cannot read (e.g. compressed). Nothing of it was sent.
async fn unreadable(
    client: &mut Socket,
    upstream: &mut Socket,
    error: &WsError,
    provider: Provider,
    bounds: Bounds,
) {
    let (code, reason) = match error {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => (
            CloseCode::Size,
            format!(
                "egress-guard blocked a message over the {} it can inspect; nothing was sent",
                super::forward::human_size(bounds.max_message)
            ),
        ),
        WsError::Utf8(_) => (
            CloseCode::Invalid,
            "egress-guard blocked a text message that is not UTF-8; nothing was sent".into(),
        ),
        _ => (
            CloseCode::Protocol,
            "egress-guard could not read a message on this WebSocket; nothing was sent".into(),
        ),
    };
    tracing::info!(%error, "unreadable WebSocket message; connection closed");
    metrics()
        .requests_total
        .with_label_values(&[provider.as_str(), "block"])
        .inc();
    close(client, code, &reason, bounds.idle).await;
    close(
        upstream,
        CloseCode::Policy,
        "closed by the client's egress policy",
        bounds.idle,
    )
    .await;
}

/// Whether a read error only means the peer went away (dropped the connection, with or without
/// a closing handshake), as opposed to sending something that cannot be read.
fn went_away(error: &WsError) -> bool {
    matches!(
        error,
        WsError::Io(_)
            | WsError::ConnectionClosed
            | WsError::AlreadyClosed
            | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
    )
}

/// Sends one message, waiting at most `idle`; false when the peer is gone or stuck.
async fn send(socket: &mut Socket, message: Message, idle: Duration) -> bool {
    matches!(
        tokio::time::timeout(idle, socket.send(message)).await,
        Ok(Ok(()))
    )
}

/// Sends a close frame (best effort: the peer may be gone already).
async fn close(socket: &mut Socket, code: CloseCode, reason: &str, idle: Duration) {
    let frame = CloseFrame {
        code,
        reason: close_reason(reason).into(),
    };
    let _ = tokio::time::timeout(idle, socket.close(Some(frame))).await;
}

/// `reason` cut to what a close frame can carry, at a character boundary.
pub fn close_reason(reason: &str) -> &str {
    if reason.len() <= MAX_CLOSE_REASON {
        return reason;
    }
    let mut end = MAX_CLOSE_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::close_reason;

    #[test]
    fn close_reasons_fit_a_close_frame_without_splitting_a_character() {
        assert_eq!(close_reason("short"), "short");
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= 123);
        assert_eq!(cut.len(), 122);
    }
}
