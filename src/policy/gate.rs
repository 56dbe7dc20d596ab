//! The policy [`Gate`]: one request's whole path through inspection, in the order it happens:
//!
//! ```text
//! route -> (websocket? refuse) -> size limit -> decode -> read (provider) -> detect
//!   -> decide (rules, sanctioned keys, media) -> act (redact / pseudonymize / local / block)
//!   -> audit (before anything leaves) -> verdict (+ for an inspected WebSocket, the
//!      `websocket::MessageGate` that runs each client message through this same path)
//! ```
//!
//! Fail closed: a body that cannot be decoded or read, a scanner failure, a body over the limit
//! or an audit failure blocks the request with the reason, unless the destination chose
//! `fail_open`. Nothing here logs a detected value.
//!
//! Reading skips the message groups this gate already found clean (an agent re-sends its whole
//! history each turn), and the scan cache answers for groups scanned before; both are keyed by
//! the policy digest, so a reload starts afresh.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};

use crate::act::pseudonymize::{random_key, Pseudonymizer, RestoreFilter, RestoreTable};
use crate::act::redact::{self, Edit};
use crate::act::reply::ErrorReply;
use crate::audit::DecisionId;
use crate::detect::{Category, Severity};
use crate::inspect::content::{Document, SkipClean};
use crate::inspect::decode::{self, DecodeError};
use crate::inspect::{providers, Provider};
use crate::proxy::gate::{Forward, Gate, Outbound, Route, UpstreamOverride, Verdict};

use super::decision::{
    audit_action, now_rfc3339, user_and_device, AuditSink, Decision, FindingRecord, PolicyRef,
};
use super::evaluate::{self, FindingFacts, RequestFacts, Ruling};
use super::loader::{key_fingerprint, LoadedPolicy};
use super::model::{
    glob_match, is_ai_host, Action, Destination, Policy, RouteChoice, WebSocketMode,
};
use super::{client, Detect};

/// The rule name recorded when a personal (unsanctioned) API key decides a request.
pub const SANCTIONED_KEYS_RULE: &str = "sanctioned-keys";
/// The rule name recorded when the media setting decides a request.
pub const MEDIA_RULE: &str = "settings.media";

/// The policy engine behind the proxy's inspection seam. The policy can be swapped at any time
/// (reload); each request is decided entirely by the policy current when it arrived.
///
/// Cloning is cheap and a clone shares everything (policy in force, sink, keys, cache): an
/// inspected WebSocket holds one, so each of its messages is decided by the current policy.
#[derive(Clone)]
pub struct PolicyGate {
    current: Arc<ArcSwap<LoadedPolicy>>,
    sink: Arc<dyn AuditSink>,
    /// Hosts the command line adds to the inspected ones (`run --inspect HOST`).
    extra_inspect: Vec<String>,
    /// `run --refuse-others`: hosts the policy would tunnel are refused instead.
    refuse_others: bool,
    fingerprint_key: ring::hmac::Key,
    pseudonymizer: Arc<Pseudonymizer>,
    scan_cache: Arc<super::scan_cache::ScanCache>,
    clean_groups: Arc<super::scan_cache::CleanGroups>,
}

impl std::fmt::Debug for PolicyGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyGate")
            .field("policy", &self.current.load().policy.name)
            .finish_non_exhaustive()
    }
}

/// One finding, located and judged.
struct Judged {
    detector: String,
    category: Category,
    severity: Severity,
    location: String,
    value: String,
    raw: Vec<std::ops::Range<usize>>,
    ruling: Ruling,
}

impl PolicyGate {
    /// A gate with fresh random keys for fingerprints and surrogates.
    pub fn new(policy: LoadedPolicy, sink: Arc<dyn AuditSink>) -> Self {
        Self::with_key(policy, sink, &random_key())
    }

    /// A gate with a given local key (fingerprints and surrogates are derived from it).
    pub fn with_key(policy: LoadedPolicy, sink: Arc<dyn AuditSink>, key: &[u8]) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(policy)),
            sink,
            extra_inspect: Vec::new(),
            refuse_others: false,
            fingerprint_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            pseudonymizer: Arc::new(Pseudonymizer::with_key(&[key, b"surrogates"].concat())),
            // Every group is cached, short ones included: an agent's conversation holds a few
            // hundred, so this keeps dozens of conversations (about 1 MB: no text is kept).
            scan_cache: Arc::new(super::scan_cache::ScanCache::new(16_384)),
            clean_groups: Arc::new(super::scan_cache::CleanGroups::new(16_384)),
        }
    }

    /// Command-line additions to the policy's routes: more hosts to inspect, and refusing
    /// instead of tunnelling. They survive reloads.
    pub fn with_route_overrides(mut self, extra_inspect: Vec<String>, refuse_others: bool) -> Self {
        self.extra_inspect = extra_inspect;
        self.refuse_others = refuse_others;
        self
    }

    /// How many scanned message groups to remember (0: scan everything every time).
    pub fn with_scan_cache(mut self, capacity: usize) -> Self {
        self.scan_cache = Arc::new(super::scan_cache::ScanCache::new(capacity));
        self.clean_groups = Arc::new(super::scan_cache::CleanGroups::new(capacity));
        self
    }

    /// The policy deciding now.
    pub fn policy(&self) -> Arc<LoadedPolicy> {
        self.current.load_full()
    }

    /// Puts `policy` in force for every request that arrives from now on.
    pub fn replace(&self, policy: LoadedPolicy) {
        self.current.store(Arc::new(policy));
    }

    fn fingerprint(&self, value: &str) -> String {
        hex::encode(&ring::hmac::sign(&self.fingerprint_key, value.as_bytes()).as_ref()[..16])
    }

    /// Decides one request: the verdict for the proxy and the decision that was recorded.
    ///
    /// A WebSocket upgrade is refused (`settings.websocket = "refuse"`) or decided like any
    /// request (its headers and query) and, if it may go, given the inspector that decides each
    /// of the connection's messages.
    pub fn decide(&self, request: Outbound) -> (Verdict, Decision) {
        let upgrade = crate::proxy::is_websocket_upgrade(&request.parts.headers).then(|| {
            super::websocket::Connection::of(&request, client::recognise(&request.parts.headers))
        });
        let decided = self.decide_in(request, None);
        let (mut verdict, decision) = (decided.verdict, decided.decision);
        if let (Some(connection), Verdict::Forward(forward)) = (upgrade, &mut verdict) {
            forward.messages = Some(Box::new(super::websocket::MessageGate::new(
                self.clone(),
                connection,
                decision.id.clone(),
            )));
        }
        (verdict, decision)
    }

    /// Decides one request, or one WebSocket message (`message`), recording the decision;
    /// also returns the surrogates it put in, for a connection that restores them later.
    pub(super) fn decide_in(&self, request: Outbound, message: Option<&MessageOf>) -> Decided {
        let loaded = self.current.load_full();
        let policy = &loaded.policy;
        let id = DecisionId::new();
        let Outbound {
            host,
            port: _,
            mut parts,
            body,
        } = request;
        let destination = find_destination(policy, &host);
        let provider = provider_of(destination, &host);
        let fail_open = destination.is_some_and(|d| d.fail_open);
        let client = client::recognise(&parts.headers);
        let (user, device) = user_and_device();
        let mut decision = Decision {
            id: id.to_string(),
            ts: now_rfc3339(),
            action: "allow",
            host: host.clone(),
            method: parts.method.to_string(),
            path: String::new(),
            provider: provider.as_str(),
            model: None,
            client,
            user,
            device,
            policy: PolicyRef {
                name: policy.name.clone(),
                digest: loaded.digest.clone(),
            },
            findings: Vec::new(),
            rule: None,
            reason: None,
            upstream: None,
            would: None,
            websocket: None,
        };
        if let Some(message) = message {
            decision.client = message.client;
            decision.websocket = Some(super::decision::WebSocketRef {
                connection: message.connection.to_owned(),
                message: message.index,
            });
        }
        let ctx = Ctx {
            gate: self,
            id,
            provider,
        };
        // The provider a WebSocket message is read as: its API's own reading when the message
        // carries that API's request body, else every string in it.
        let reader = message.map_or(provider, |m| m.reader);

        if crate::proxy::is_websocket_upgrade(&parts.headers)
            && policy.settings.websocket == WebSocketMode::Refuse
        {
            // Passing an upgrade through uninspected would let every message of the connection
            // leave unseen; this policy refuses it, and agents (Codex CLI) fall back to HTTPS.
            decision.path = audit_path(&parts.uri, &[]);
            let message = format!(
                "egress-guard blocked a WebSocket connection to {host}: this policy refuses \
                 WebSockets to inspected hosts (settings.websocket = \"refuse\"), so only HTTPS \
                 requests are allowed. Clients that support it fall back to HTTPS automatically"
            );
            // 426 rather than 403: a client with an HTTPS fallback (Codex CLI) reads "upgrade
            // refused, use plain HTTPS" from it; any other client still shows a clear error.
            return ctx.refuse(
                decision,
                StatusCode::UPGRADE_REQUIRED,
                "websocket_refused",
                message,
            );
        }

        let limits = decode::Limits {
            max_decoded: policy.limits.max_body_bytes,
            max_ratio: policy.limits.max_ratio,
            ..decode::Limits::default()
        };
        if body.len() > limits.max_decoded {
            decision.path = audit_path(&parts.uri, &[]);
            let message = format!(
                "egress-guard blocked this request: its body ({} bytes) is over the policy's limit of {} bytes, and a body is never sent uninspected",
                body.len(),
                limits.max_decoded
            );
            return ctx.refuse(
                decision,
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                message,
            );
        }

        // Decode, read, scan. Any failure here is a request we cannot vouch for.
        let inspected = decode::decode(&parts.headers, &body, &limits)
            .map_err(Failure::Decode)
            .and_then(|decoded| {
                let is_clean = |key| self.clean_groups.contains(key);
                let read = if let Some(keyer) = self.clean_groups.keyer() {
                    let skip = SkipClean {
                        keyer,
                        digest: &loaded.digest,
                        is_clean: &is_clean,
                    };
                    providers::read_skipping_clean(reader, &parts, &decoded.bytes, &limits, skip)
                } else {
                    providers::read_within(reader, &parts, &decoded.bytes, &limits)
                };
                read.map(|content| (decoded, content))
                    .map_err(|e| Failure::Read(e.to_string()))
            })
            .and_then(|(decoded, content)| {
                let document = Document::build(&content.segments);
                let scanner: &dyn Detect = loaded.scanner.as_ref();
                std::panic::catch_unwind(AssertUnwindSafe(|| {
                    let found =
                        self.scan_cache
                            .scan(scanner, &loaded.digest, &document, &content.raw_keys);
                    self.clean_groups
                        .remember(&content.raw_keys, &document, &found);
                    found
                }))
                .map(|found| (decoded, content, document, found))
                .map_err(|_| Failure::Scanner)
            });
        let (decoded, content, document, found) = match inspected {
            Ok(v) => v,
            Err(failure) => {
                decision.path = audit_path(&parts.uri, &[]);
                let reason = failure.to_string();
                if fail_open {
                    decision.action = "monitor";
                    decision.reason = Some(format!(
                        "{reason}; forwarded uninspected because the destination is fail_open"
                    ));
                    return ctx.forward_unchanged(decision, parts, body, None);
                }
                let status = match failure {
                    Failure::Decode(DecodeError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
                    _ => StatusCode::FORBIDDEN,
                };
                let message =
                    format!("egress-guard blocked this request: {reason}. Nothing was sent");
                return ctx.refuse(decision, status, failure.code(), message);
            }
        };
        decision.model = content.model.clone();
        let facts = RequestFacts {
            host: &host,
            provider,
            model: content.model.as_deref(),
            client,
        };

        // Judge every finding.
        let mut judged: Vec<Judged> = Vec::with_capacity(found.len());
        for finding in found {
            let pieces = document.pieces(&content.segments, finding.span.clone());
            let Some(&(first, _)) = pieces.first() else {
                continue;
            };
            let location = content.segments[first].location.clone();
            let value = document
                .text
                .get(finding.span.clone())
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(
                        document
                            .text
                            .as_bytes()
                            .get(finding.span.clone())
                            .unwrap_or_default(),
                    )
                    .into_owned()
                });
            let rewritable = pieces
                .iter()
                .all(|(i, _)| content.segments[*i].rewritable());
            let raw = pieces
                .iter()
                .map(|(i, r)| content.segments[*i].text.source_range(r.clone()).0)
                .collect();
            let mut ruling = evaluate::for_finding(
                policy,
                &facts,
                &FindingFacts {
                    detector: &finding.detector,
                    category: finding.category,
                    severity: finding.severity,
                    location: &location,
                },
            );
            if !rewritable {
                // Cutting a match out of a base64 document, a header or a query string cannot
                // make the request safe: what would be redacted is blocked instead.
                if matches!(ruling.action, Action::Redact | Action::Pseudonymize) {
                    ruling.action = Action::Block;
                    ruling.message = Some(format!(
                        "It cannot be removed from {location} without changing what the rest of it means"
                    ));
                }
                if matches!(ruling.would, Some(Action::Redact | Action::Pseudonymize)) {
                    ruling.would = Some(Action::Block);
                }
            }
            judged.push(Judged {
                detector: finding.detector.to_string(),
                category: finding.category,
                severity: finding.severity,
                location,
                value,
                raw,
                ruling,
            });
        }

        // Request-level rulings: the first request rule, a personal key, unreadable media.
        let mut rulings: Vec<Ruling> = Vec::new();
        rulings.extend(evaluate::for_request(policy, &facts));
        let injected = loaded.injected_keys.get(&provider);
        if let Some(key) = injected {
            inject_key(&mut parts, provider, key);
        } else if let Some(ruling) = personal_key(policy, &parts, provider, &host) {
            rulings.push(ruling);
        }
        if !content.media.is_empty() && policy.settings.media != Action::Allow {
            let action = match policy.settings.media {
                Action::Redact | Action::Pseudonymize => Action::Block,
                other => other,
            };
            rulings.push(Ruling {
                action,
                would: None,
                rule: Some(MEDIA_RULE.to_owned()),
                local: None,
                message: Some(format!(
                    "The request carries an image or file at {} that egress-guard cannot read",
                    content.media[0]
                )),
            });
        }

        // The strongest action wins; among equals, the first (request rules, then findings).
        let deciding = rulings.iter().chain(judged.iter().map(|j| &j.ruling)).fold(
            None::<&Ruling>,
            |best, r| match best {
                Some(b) if b.action >= r.action => Some(b),
                _ => Some(r),
            },
        );
        let action = deciding.map_or(Action::Allow, |r| r.action);
        let would = rulings
            .iter()
            .chain(judged.iter().map(|j| &j.ruling))
            .filter_map(|r| r.would)
            .max()
            .filter(|w| *w > action);
        decision.rule = deciding.and_then(|r| r.rule.clone());
        decision.would = would.map(audit_action);
        decision.action = audit_action(action);
        let query_findings: Vec<&str> = judged
            .iter()
            .filter_map(|j| j.location.strip_prefix("query."))
            .collect();
        decision.path = audit_path(&parts.uri, &query_findings);
        decision.findings = judged
            .iter()
            .map(|j| FindingRecord {
                detector: j.detector.clone(),
                category: j.category,
                severity: j.severity,
                location: j.location.clone(),
                action: audit_action(j.ruling.action),
                fp: self.fingerprint(&j.value),
                rule: j.ruling.rule.clone(),
                would: j.ruling.would.map(audit_action),
            })
            .collect();

        for finding in &decision.findings {
            super::decision::findings_counter()
                .with_label_values(&[finding.detector.as_str(), finding.action])
                .inc();
        }

        match action {
            Action::Block => {
                let what = if message.is_some() {
                    "this WebSocket message"
                } else {
                    "this request"
                };
                let message = block_message(what, deciding, &judged);
                ctx.refuse(decision, StatusCode::FORBIDDEN, "blocked", message)
            }
            Action::Local => {
                let endpoint = deciding
                    .and_then(|r| r.local.as_deref())
                    .and_then(|name| policy.locals.iter().find(|l| l.name == name));
                let Some((upstream, prefix)) = endpoint.and_then(|l| local_upstream(&l.url)) else {
                    let message = "egress-guard blocked this request: the policy sends it to a local model, but that endpoint is not configured correctly".to_owned();
                    return ctx.refuse(decision, StatusCode::FORBIDDEN, "blocked", message);
                };
                if message.is_some() {
                    // A message belongs to a connection that is already open to its host; it
                    // cannot be sent elsewhere on its own.
                    let message = "egress-guard blocked this message: the policy sends it to a local model, which cannot be done for one message of a WebSocket to another host. Nothing was sent".to_owned();
                    return ctx.refuse(decision, StatusCode::FORBIDDEN, "blocked", message);
                }
                decision.upstream = endpoint.map(|l| format!("local:{}", l.name));
                if !prefix.is_empty() {
                    let path_and_query = parts
                        .uri
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_owned();
                    if let Ok(uri) = format!("{prefix}{path_and_query}").parse() {
                        parts.uri = uri;
                    }
                }
                ctx.forward_unchanged(decision, parts, body, Some(upstream))
            }
            Action::Redact | Action::Pseudonymize => {
                let mut edits = Vec::new();
                let mut table = RestoreTable::default();
                for j in &judged {
                    match j.ruling.action {
                        Action::Redact => edits.extend(j.raw.iter().map(|range| Edit {
                            range: range.clone(),
                            replacement: redact::placeholder(&j.detector),
                        })),
                        Action::Pseudonymize => {
                            let surrogate =
                                self.pseudonymizer
                                    .surrogate(&j.detector, j.category, &j.value);
                            for (k, range) in j.raw.iter().enumerate() {
                                edits.push(Edit {
                                    range: range.clone(),
                                    replacement: if k == 0 {
                                        surrogate.clone()
                                    } else {
                                        String::new()
                                    },
                                });
                            }
                            table.insert(surrogate, j.value.clone());
                        }
                        _ => {}
                    }
                }
                let new_body = Bytes::from(redact::apply(&decoded.bytes, edits));
                fix_body_headers(
                    &mut parts,
                    &new_body,
                    decoded.was_encoded,
                    decoded.transcoded,
                );
                let filter = if table.is_empty() {
                    None
                } else {
                    // The response must come back readable for the surrogates to be found.
                    parts.headers.insert(
                        header::ACCEPT_ENCODING,
                        HeaderValue::from_static("identity"),
                    );
                    Some(Box::new(RestoreFilter::new(&table)) as Box<_>)
                };
                let mut decided = ctx.forward(decision, parts, new_body, filter, None);
                decided.restore = table;
                decided
            }
            Action::Allow | Action::Monitor => ctx.forward_unchanged(decision, parts, body, None),
        }
    }
}

/// What [`PolicyGate::decide`] needs to finish a verdict.
struct Ctx<'a> {
    gate: &'a PolicyGate,
    id: DecisionId,
    provider: Provider,
}

impl Ctx<'_> {
    /// Records the decision, then answers the client; nothing is sent upstream.
    fn refuse(
        &self,
        mut decision: Decision,
        status: StatusCode,
        code: &'static str,
        message: String,
    ) -> Decided {
        decision.action = "block";
        if decision.reason.is_none() && code != "blocked" {
            decision.reason = Some(message.clone());
        }
        // Even if recording fails the answer is the same block; the failure is logged.
        if let Err(e) = self.gate.sink.record(&decision) {
            tracing::error!(decision = %decision.id, error = %e, "could not record a block decision");
        }
        let reply = ErrorReply::new(status, code, message).with_decision(self.id);
        Decided::new(
            Verdict::Respond(reply.into_response(self.provider)),
            decision,
        )
    }

    fn forward_unchanged(
        &self,
        decision: Decision,
        parts: http::request::Parts,
        body: Bytes,
        upstream: Option<UpstreamOverride>,
    ) -> Decided {
        self.forward(decision, parts, body, None, upstream)
    }

    /// Records the decision, then lets the request go. If it cannot be recorded, it does not go.
    fn forward(
        &self,
        mut decision: Decision,
        parts: http::request::Parts,
        body: Bytes,
        response: Option<Box<dyn crate::proxy::gate::ResponseFilter>>,
        upstream: Option<UpstreamOverride>,
    ) -> Decided {
        if let Err(e) = self.gate.sink.record(&decision) {
            decision.action = "block";
            decision.reason = Some(e.to_string());
            let reply = ErrorReply::new(
                StatusCode::FORBIDDEN,
                "audit_failed",
                format!("egress-guard blocked this request because it could not record the decision ({e}). Nothing was sent"),
            )
            .with_decision(self.id);
            return Decided::new(
                Verdict::Respond(reply.into_response(self.provider)),
                decision,
            );
        }
        let forward = Forward {
            decision_id: self.id,
            parts,
            body,
            response,
            upstream,
            messages: None,
        };
        Decided::new(Verdict::Forward(forward), decision)
    }
}

/// What [`PolicyGate::decide_in`] decided: the verdict, the decision as recorded, and the
/// surrogates it put in the request (empty unless it pseudonymized).
pub(super) struct Decided {
    pub verdict: Verdict,
    pub decision: Decision,
    pub restore: RestoreTable,
}

impl Decided {
    fn new(verdict: Verdict, decision: Decision) -> Self {
        Self {
            verdict,
            decision,
            restore: RestoreTable::default(),
        }
    }
}

/// A WebSocket message being decided, and the connection it belongs to.
pub(super) struct MessageOf<'a> {
    /// The decision id of the upgrade that opened the connection.
    pub connection: &'a str,
    /// 1 for the connection's first client message.
    pub index: u64,
    /// The agent, recognised from the upgrade request.
    pub client: &'static str,
    /// How to read the message (see `websocket::reader_for`).
    pub reader: Provider,
}

/// Why a body could not be inspected.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("its body could not be decoded: {0}")]
    Decode(DecodeError),
    #[error("its body could not be read: {0}")]
    Read(String),
    #[error("the detection engine failed on it")]
    Scanner,
}

impl Failure {
    fn code(&self) -> &'static str {
        match self {
            Failure::Decode(DecodeError::TooLarge { .. }) => "body_too_large",
            Failure::Decode(_) => "undecodable_body",
            Failure::Read(_) => "unreadable_body",
            Failure::Scanner => "scanner_error",
        }
    }
}

impl Gate for PolicyGate {
    fn route(&self, host: &str, _port: u16) -> Route {
        let loaded = self.current.load();
        let extra = self.extra_inspect.iter().any(|p| glob_match(p, host));
        let chosen = if extra {
            Some(RouteChoice::Inspect)
        } else {
            find_destination(&loaded.policy, host).map(|d| d.route)
        };
        // A host named for inspection that the name-constrained CA cannot sign for stays
        // `Inspect`: the proxy then refuses it with a clear 403 (fail closed), it is never
        // quietly tunnelled.
        let route = match chosen {
            Some(RouteChoice::Inspect) => Route::Inspect,
            Some(RouteChoice::Deny) => Route::Deny,
            Some(RouteChoice::Tunnel) | None => Route::Tunnel,
        };
        if route == Route::Tunnel {
            if self.refuse_others {
                return Route::Deny;
            }
            if is_ai_host(host) {
                tracing::warn!(%host, "connection to a known AI API is tunnelled uninspected");
            } else if looks_like_ai_api(host) {
                tracing::warn!(%host, "connection to an unknown service that looks like an AI API is tunnelled uninspected");
            }
        }
        route
    }

    fn inspect_hosts(&self) -> Vec<String> {
        let loaded = self.current.load();
        let mut hosts: Vec<String> = self.extra_inspect.clone();
        for destination in &loaded.policy.destinations {
            if destination.route != RouteChoice::Inspect {
                continue;
            }
            for pattern in &destination.hosts {
                if pattern == "@ai" {
                    hosts.extend(super::model::AI_CATALOGUE.iter().map(|h| h.to_string()));
                } else if pattern != "*" {
                    hosts.push(pattern.clone());
                }
            }
        }
        // The PAC file understands exact names and `*.domain`; other globs are left out, and
        // so are hosts the CA cannot sign for.
        hosts.retain(|h| {
            let name = h.strip_prefix("*.").unwrap_or(h);
            !name.contains('*') && crate::tls::is_interceptable(name)
        });
        hosts.sort();
        hosts.dedup();
        hosts
    }

    fn check(&self, request: Outbound) -> Verdict {
        self.decide(request).0
    }
}

/// The API a host's requests are read as: the destination's `provider` if policy names one,
/// else the one the host name implies.
pub fn provider_of(destination: Option<&Destination>, host: &str) -> Provider {
    destination
        .and_then(|d| d.provider)
        .map(Provider::from)
        .unwrap_or_else(|| Provider::from_host(host))
}

/// The first destination whose hosts match.
pub fn find_destination<'p>(policy: &'p Policy, host: &str) -> Option<&'p Destination> {
    let host = host.trim_end_matches('.');
    policy.destinations.iter().find(|d| {
        d.hosts.iter().any(|pattern| {
            if pattern == "@ai" {
                // Only the catalogue hosts the local CA may sign for: the others cannot be
                // inspected, so they fall through to later destinations (and are logged as
                // AI APIs reached uninspected when tunnelled).
                is_ai_host(host) && crate::tls::is_interceptable(host)
            } else {
                glob_match(pattern, host)
            }
        })
    })
}

/// Host names that are probably AI APIs though not in the catalogue, so they show up in logs.
fn looks_like_ai_api(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let api_like = host.starts_with("api.") || host.contains("inference") || host.contains("llm");
    let ai_like = host.ends_with(".ai")
        || [
            "llm",
            "gpt",
            "openai",
            "anthropic",
            "model",
            "inference",
            "chat",
            "claude",
            "gemini",
        ]
        .iter()
        .any(|w| host.contains(w));
    api_like && ai_like
}

/// The API key a request is authenticated with, if any.
fn api_key(parts: &http::request::Parts, provider: Provider) -> Option<String> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(key) = header("x-api-key")
        .or_else(|| header("x-goog-api-key"))
        .or_else(|| header("api-key"))
    {
        return Some(key.to_owned());
    }
    if let Some(auth) = header("authorization") {
        if let Some(token) = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
        {
            return Some(token.trim().to_owned());
        }
        if provider == Provider::Bedrock {
            // SigV4: the access key id is the identity; the secret never travels.
            let credential = auth.split("Credential=").nth(1)?;
            return credential.split('/').next().map(str::to_owned);
        }
        return Some(auth.to_owned());
    }
    parts.uri.query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("key="))
            .map(str::to_owned)
    })
}

/// A ruling for a request to an LLM host made with a key that is not sanctioned.
fn personal_key(
    policy: &Policy,
    parts: &http::request::Parts,
    provider: Provider,
    host: &str,
) -> Option<Ruling> {
    let keys = &policy.sanctioned_keys;
    if keys.fingerprints.is_empty() || (provider == Provider::Generic && !is_ai_host(host)) {
        return None;
    }
    let key = api_key(parts, provider)?;
    let fingerprint = key_fingerprint(&keys.salt, &key);
    if keys
        .fingerprints
        .iter()
        .any(|f| f.eq_ignore_ascii_case(&fingerprint))
    {
        return None;
    }
    Some(Ruling {
        action: keys.action.unwrap_or(Action::Block),
        would: None,
        rule: Some(SANCTIONED_KEYS_RULE.to_owned()),
        local: None,
        message: Some(keys.message.clone().unwrap_or_else(|| {
            "This request uses a personal API key. Use your organisation's sanctioned key for this service".to_owned()
        })),
    })
}

/// Puts the sanctioned key on the request, replacing whatever the client sent.
fn inject_key(parts: &mut http::request::Parts, provider: Provider, key: &str) {
    let Ok(value) = HeaderValue::from_str(key) else {
        return;
    };
    let headers = &mut parts.headers;
    match provider {
        Provider::Anthropic => {
            headers.remove(header::AUTHORIZATION);
            headers.insert("x-api-key", value);
        }
        Provider::Gemini => {
            headers.insert("x-goog-api-key", value);
        }
        // Bedrock signs each request with SigV4: a key cannot simply be swapped in.
        Provider::Bedrock => {}
        Provider::OpenAi | Provider::Generic => {
            if let Ok(bearer) = HeaderValue::from_str(&format!("Bearer {key}")) {
                headers.insert(header::AUTHORIZATION, bearer);
            }
        }
    }
}

/// Headers for a rewritten body: decoded, so no content-encoding; the new length; UTF-8.
fn fix_body_headers(
    parts: &mut http::request::Parts,
    body: &Bytes,
    was_encoded: bool,
    transcoded: bool,
) {
    let headers = &mut parts.headers;
    if was_encoded {
        headers.remove(header::CONTENT_ENCODING);
    }
    headers.remove(header::TRANSFER_ENCODING);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    if transcoded {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| ct.split(';').next())
            .unwrap_or("application/json")
            .to_owned();
        if let Ok(v) = HeaderValue::from_str(&format!("{content_type}; charset=utf-8")) {
            headers.insert(header::CONTENT_TYPE, v);
        }
    }
}

/// `(scheme + authority, path prefix)` of a local endpoint URL.
fn local_upstream(url: &str) -> Option<(UpstreamOverride, String)> {
    let uri: http::Uri = url.parse().ok()?;
    let upstream = UpstreamOverride {
        scheme: uri.scheme()?.clone(),
        authority: uri.authority()?.clone(),
    };
    Some((upstream, uri.path().trim_end_matches('/').to_owned()))
}

/// Query parameter names whose values are credentials by convention.
const SECRET_QUERY_NAMES: &[&str] = &[
    "key",
    "api_key",
    "apikey",
    "token",
    "access_token",
    "secret",
    "sig",
    "signature",
    "password",
    "auth",
    "code",
];

/// Path and query for the audit record, with values that may be secret masked.
fn audit_path(uri: &http::Uri, flagged: &[&str]) -> String {
    let path = uri.path().to_owned();
    let Some(query) = uri.query() else {
        return path;
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _))
                if SECRET_QUERY_NAMES.contains(&name.to_ascii_lowercase().as_str())
                    || flagged.contains(&name) =>
            {
                format!("{name}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", masked.join("&"))
}

/// What the user reads: what was found and where (never the value), which rule, what to do.
fn block_message(what: &str, deciding: Option<&Ruling>, judged: &[Judged]) -> String {
    let mut message = format!("egress-guard blocked {what}");
    let blocked: Vec<&Judged> = judged
        .iter()
        .filter(|j| j.ruling.action == Action::Block)
        .collect();
    if let Some(first) = blocked.first() {
        message.push_str(&format!(": {} found in {}", first.detector, first.location));
        if blocked.len() > 1 {
            message.push_str(&format!(" (and {} more)", blocked.len() - 1));
        }
    }
    if let Some(rule) = deciding.and_then(|r| r.rule.as_deref()) {
        message.push_str(&format!(" by policy rule `{rule}`"));
    }
    message.push('.');
    if let Some(extra) = deciding.and_then(|r| r.message.as_deref()) {
        message.push(' ');
        message.push_str(extra.trim_end_matches('.'));
        message.push('.');
    }
    message.push_str(" Nothing was sent");
    message
}
