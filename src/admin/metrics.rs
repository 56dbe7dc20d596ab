//! The process-wide Prometheus registry and the metrics the contract names.
//!
//! One registry for the whole process, so any module can count without plumbing: add a field
//! here, register it in [`Metrics::new`], and it appears on `/metrics`. Never a label whose value
//! could be a detected value: labels are providers, actions, detector ids and results.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    /// `egress_guard_requests_total{provider,action}`: intercepted requests by outcome. The proxy
    /// counts `allow` for a forwarded request and `block` for one answered by the gate or by a
    /// limit; a policy gate may refine actions (`redact`, ...) as it learns them.
    pub requests_total: IntCounterVec,
    /// `egress_guard_upstream_errors_total`: upstream connect, TLS, timeout and stream errors.
    pub upstream_errors_total: IntCounter,
    /// `egress_guard_inspect_duration_seconds`: time the gate took before a request could leave.
    pub inspect_duration_seconds: Histogram,
    /// `egress_guard_bytes_inspected_total`: request body bytes handed to the gate.
    pub bytes_inspected_total: IntCounter,
    /// `egress_guard_tunnels_total{result}`: non-inspected connections relayed or refused.
    pub tunnels_total: IntCounterVec,
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let requests_total = IntCounterVec::new(
            Opts::new(
                "egress_guard_requests_total",
                "Intercepted requests by provider and action.",
            ),
            &["provider", "action"],
        )
        .expect("static metric definition");
        let upstream_errors_total = IntCounter::new(
            "egress_guard_upstream_errors_total",
            "Upstream connect, TLS, timeout and stream errors.",
        )
        .expect("static metric definition");
        let inspect_duration_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "egress_guard_inspect_duration_seconds",
                "Time the proxy adds before forwarding (gate decision).",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )
        .expect("static metric definition");
        let bytes_inspected_total = IntCounter::new(
            "egress_guard_bytes_inspected_total",
            "Request body bytes handed to the inspection gate.",
        )
        .expect("static metric definition");
        let tunnels_total = IntCounterVec::new(
            Opts::new(
                "egress_guard_tunnels_total",
                "Connections to non-inspected hosts, by result (relayed, refused, failed).",
            ),
            &["result"],
        )
        .expect("static metric definition");
        for collector in [
            Box::new(requests_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(upstream_errors_total.clone()),
            Box::new(inspect_duration_seconds.clone()),
            Box::new(bytes_inspected_total.clone()),
            Box::new(tunnels_total.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Self {
            registry,
            requests_total,
            upstream_errors_total,
            inspect_duration_seconds,
            bytes_inspected_total,
            tunnels_total,
        }
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding our own registry into a Vec cannot fail short of a bug in the encoder; an
        // empty page is the honest answer then.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}
