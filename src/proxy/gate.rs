//! The inspection seam: the one stage every intercepted request passes through before it leaves.
//!
//! The proxy knows sockets, TLS and HTTP; it never decides what may leave. It asks a [`Gate`]
//! where a destination may go ([`Gate::route`]) and, for an intercepted request with its body
//! collected, what to do with it ([`Gate::check`]). The policy engine is one `Gate`;
//! [`PassThrough`] is the trivial one that lets everything through unchanged.

use bytes::Bytes;
use http::{request, response};

use crate::audit::DecisionId;

/// What may happen to a connection to `host:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Terminate TLS with a minted leaf and pass each request through [`Gate::check`].
    Inspect,
    /// Relay bytes untouched; the proxy never sees inside.
    Tunnel,
    /// Refuse with `403`.
    Deny,
}

/// An intercepted request, body collected, about to leave.
#[derive(Debug)]
pub struct Outbound {
    /// The upstream host name (no port), normalised by `proxy::host::normalize` (lower-case, no
    /// trailing dot, a valid DNS name) from what the client named (CONNECT authority, absolute
    /// URI, or the base-URL prefix's destination). `Gate::route` gets the same form.
    pub host: String,
    pub port: u16,
    /// Method, URI (origin-form: path and query, as it will be sent upstream), version, headers
    /// (auth included, untouched).
    pub parts: request::Parts,
    /// The body exactly as the client sent it: still content-encoded.
    pub body: Bytes,
}

/// What the gate decided.
// A verdict is made once per request and moved a couple of times; boxing the larger variant
// would cost an allocation per request to save a few hundred bytes of stack.
#[allow(clippy::large_enum_variant)]
pub enum Verdict {
    /// Send this request upstream.
    Forward(Forward),
    /// Answer the client with this response; nothing is sent upstream.
    Respond(http::Response<Bytes>),
}

/// A request cleared to leave, possibly rewritten.
pub struct Forward {
    /// Stamped on the response as `x-egress-guard-decision`.
    pub decision_id: DecisionId,
    /// The head to send. A gate that rewrote the body has fixed `content-length` and
    /// `content-encoding` already.
    pub parts: request::Parts,
    pub body: Bytes,
    /// Rewrites the streamed response (e.g. restores pseudonyms), if the decision needs it.
    pub response: Option<Box<dyn ResponseFilter>>,
    /// Send the request here instead of to its own host (a local model server chosen by
    /// policy); `None` for the request's own destination.
    pub upstream: Option<UpstreamOverride>,
    /// For a WebSocket upgrade the gate lets through: what inspects each message of the
    /// connection once the upstream has answered `101`. `Some` means the proxy must run a
    /// message relay (frames reassembled, every client message through the inspector) instead
    /// of relaying bytes; `None` on an upgrade means the gate accepts the connection's bytes
    /// uninspected (e.g. [`PassThrough`]).
    ///
    /// It travels in the `Forward` (rather than being a second `Gate` method) because it is
    /// decided with the upgrade request: by the policy, the host, the client and the path that
    /// request named, and it carries state across the connection's messages (the surrogates to
    /// put back in later replies). The proxy owns the sockets and the framing; the inspector
    /// only ever sees whole messages.
    pub messages: Option<Box<dyn MessageInspector>>,
}

/// Another place to send a request: scheme and `host:port`. The request's path (already
/// rewritten by the gate if the endpoint has a prefix) is kept. For plain `http` the proxy
/// connects without TLS; for `https` it verifies the endpoint's certificate as for any upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamOverride {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
}

impl Forward {
    /// The request forwarded exactly as it came.
    pub fn unchanged(outbound: Outbound) -> Self {
        Self {
            decision_id: DecisionId::new(),
            parts: outbound.parts,
            body: outbound.body,
            response: None,
            upstream: None,
            messages: None,
        }
    }
}

/// One whole message from the client on an inspected WebSocket, reassembled from its frames
/// (our own type, so the policy side does not depend on the framing crate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    Text(String),
    Binary(Bytes),
}

impl WsMessage {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            WsMessage::Text(text) => text.as_bytes(),
            WsMessage::Binary(bytes) => bytes,
        }
    }
}

/// What happens to one client message on an inspected WebSocket.
#[derive(Debug)]
pub enum MessageVerdict {
    /// Send this upstream: the message as it came, or rewritten (redacted).
    Forward(WsMessage),
    /// Send nothing of it: the proxy closes the client's connection and the upstream one with
    /// close code 1008 (policy violation).
    Close(WsRefusal),
}

/// Why a WebSocket connection is closed, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsRefusal {
    /// The close frame's reason. A close reason holds at most 123 bytes, so this is short:
    /// detector, rule and decision id, never a value. The proxy cuts a longer one (at a
    /// character boundary).
    pub reason: String,
    /// A last text message sent before the close frame, shaped as the provider's own error
    /// event: many clients show a server's error event but only log a close reason.
    pub notice: Option<String>,
}

/// Inspects the messages of one WebSocket connection, in order. Synchronous for the same
/// reason as [`Gate::check`]; the proxy moves a large message's check off the async workers.
pub trait MessageInspector: Send + 'static {
    /// A whole client -> upstream text or binary message (pings, pongs and closes are not
    /// inspected: they carry no content beyond 125 control bytes).
    fn client_message(&mut self, message: WsMessage) -> MessageVerdict;
    /// An upstream -> client text message; returns the messages the client gets in its place
    /// (e.g. with the connection's surrogates put back; a restore may hold back the tail of a
    /// streamed delta and send it with, or as, a later message). The default passes it on.
    fn upstream_text(&mut self, text: String) -> Vec<String> {
        vec![text]
    }
}

/// Rewrites a response as it streams back to the client, chunk by chunk, never buffering it
/// whole (it may hold back a few bytes that could begin a value it has to rewrite).
pub trait ResponseFilter: Send + 'static {
    /// Called once with the response head before any body byte; typically drops
    /// `content-length`, since the body's length will change.
    fn head(&mut self, parts: &mut response::Parts);
    /// A chunk of the body as it arrived from upstream; returns what to send on now.
    fn data(&mut self, chunk: Bytes) -> Bytes;
    /// The upstream body ended; returns whatever was held back.
    fn finish(&mut self) -> Bytes;
}

/// The decision point between the proxy and the outside world.
///
/// Synchronous on purpose: inspection is CPU-bound and short (a 200 KB body scans in well under
/// a millisecond), so an async detour would only add latency.
pub trait Gate: Send + Sync + 'static {
    /// Where a connection to `host:port` may go.
    fn route(&self, host: &str, port: u16) -> Route;
    /// What to do with an intercepted request.
    fn check(&self, request: Outbound) -> Verdict;
    /// The hosts this gate inspects, for the admin listener's `/proxy.pac` (which sends only
    /// these to the proxy). Exact names, or `*.domain` for a domain and its subdomains. Asked on
    /// every PAC request, so a gate whose policy reloads can answer with the current list.
    fn inspect_hosts(&self) -> Vec<String> {
        DEFAULT_INSPECT_HOSTS
            .iter()
            .map(|h| h.to_string())
            .collect()
    }
}

/// The trivial gate: inspects the default AI API hosts, tunnels everything else, lets every
/// request through unchanged with a fresh decision id.
#[derive(Debug, Clone)]
pub struct PassThrough {
    inspect_hosts: Vec<String>,
    others: Route,
}

/// The API hosts inspected when no policy says otherwise.
pub const DEFAULT_INSPECT_HOSTS: &[&str] = &[
    "api.anthropic.com",
    "api.openai.com",
    "generativelanguage.googleapis.com",
];

impl PassThrough {
    pub fn new(inspect_hosts: Vec<String>, others: Route) -> Self {
        Self {
            inspect_hosts,
            others,
        }
    }
}

impl Default for PassThrough {
    fn default() -> Self {
        Self::new(
            DEFAULT_INSPECT_HOSTS
                .iter()
                .map(|h| h.to_string())
                .collect(),
            Route::Tunnel,
        )
    }
}

impl Gate for PassThrough {
    fn route(&self, host: &str, _port: u16) -> Route {
        if self
            .inspect_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
        {
            Route::Inspect
        } else {
            self.others
        }
    }

    fn check(&self, request: Outbound) -> Verdict {
        Verdict::Forward(Forward::unchanged(request))
    }

    fn inspect_hosts(&self) -> Vec<String> {
        self.inspect_hosts.clone()
    }
}
