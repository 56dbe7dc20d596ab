//! What inspection adds before a request leaves: the whole `Gate::check` (decode, read, scan,
//! decide, audit) on a 200 KB Claude Code-shaped request, and the cost of restoring surrogates
//! in one SSE event of a streamed reply.
//!
//! `cargo bench --bench inspect`; results in BENCHMARKS.md.
//!
//! On a shared machine, `INSPECT_BENCH_CLOCK=cpu` times the request path in this thread's CPU
//! time instead of wall time, so other builds competing for the cores do not inflate it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Bencher, Criterion, Throughput};
use egress_guard::act::pseudonymize::{RestoreFilter, RestoreTable};
use egress_guard::policy::decision::{AuditError, AuditSink, Decision};
use egress_guard::policy::loader;
use egress_guard::policy::PolicyGate;
use egress_guard::proxy::gate::{Gate, Outbound, ResponseFilter};
use serde_json::json;

struct Discard;
impl AuditSink for Discard {
    fn record(&self, decision: &Decision) -> Result<(), AuditError> {
        std::hint::black_box(decision);
        Ok(())
    }
}

/// A Claude Code-like conversation: a long system prompt, tool calls and file contents, about
/// `target` bytes, with nothing secret in it (the common case).
fn claude_code_body(target: usize) -> Bytes {
    let code = "fn parse(input: &str) -> Result<Vec<Token>, Error> {\n    let mut tokens = Vec::new();\n    for (i, c) in input.char_indices() {\n        match c {\n            '(' => tokens.push(Token::Open(i)),\n            ')' => tokens.push(Token::Close(i)),\n            _ if c.is_whitespace() => continue,\n            _ => tokens.push(Token::Atom(i)),\n        }\n    }\n    Ok(tokens)\n}\n";
    let mut messages = Vec::new();
    let mut size = 0;
    let mut i = 0;
    while size < target {
        messages.push(json!({"role": "assistant", "content": [
            {"type": "text", "text": "Let me read the parser module."},
            {"type": "tool_use", "id": format!("toolu_{i:04}"), "name": "Read", "input": {"file_path": format!("src/parser/mod{i}.rs")}}
        ]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": format!("toolu_{i:04}"), "content": code.repeat(3)}
        ]}));
        size += code.len() * 3 + 200;
        i += 1;
    }
    messages.push(json!({"role": "user", "content": "Now fix the off-by-one in the tokenizer."}));
    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": true,
        "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude. ".repeat(40)}],
        "messages": messages,
    });
    Bytes::from(body.to_string())
}

/// Whether to time in this thread's CPU time (`INSPECT_BENCH_CLOCK=cpu`) rather than wall time.
fn cpu_clock() -> bool {
    std::env::var("INSPECT_BENCH_CLOCK").is_ok_and(|v| v == "cpu")
}

/// This thread's CPU time so far.
fn thread_cpu_time() -> Duration {
    let mut ts = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Times `routine` on a fresh input from `setup` each iteration; setup and dropping the
/// output are not timed (as `iter_batched`), and the clock is wall or CPU time (see above).
fn measure<I, O>(b: &mut Bencher, setup: impl Fn() -> I, routine: impl Fn(I) -> O) {
    let cpu = cpu_clock();
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let input = setup();
            let output = if cpu {
                let start = thread_cpu_time();
                let output = routine(input);
                total += thread_cpu_time().saturating_sub(start);
                output
            } else {
                let start = Instant::now();
                let output = routine(input);
                total += start.elapsed();
                output
            };
            drop(std::hint::black_box(output));
        }
        total
    })
}

fn outbound(body: &Bytes) -> Outbound {
    let (parts, ()) = http::Request::builder()
        .method("POST")
        .uri("/v1/messages")
        .header("content-type", "application/json")
        .header("user-agent", "claude-cli/2.0.0 (external, cli)")
        .header("x-api-key", "sk-ant-api03-bench")
        .header("anthropic-version", "2023-06-01")
        .body(())
        .unwrap()
        .into_parts();
    Outbound {
        host: "api.anthropic.com".into(),
        port: 443,
        parts,
        body: body.clone(),
    }
}

fn gate_check(c: &mut Criterion) {
    let policy = loader::load_embedded(&loader::builtin_scanner).expect("default policy");
    let gate = PolicyGate::new(policy, Arc::new(Discard));
    let body = claude_code_body(200 * 1024);
    let mut group = c.benchmark_group("gate_check");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function(format!("anthropic_{}KB_benign", body.len() / 1024), |b| {
        measure(b, || outbound(&body), |o| gate.check(o))
    });
    // Without the scan cache: every byte scanned on every request (a conversation's first
    // request, or one whose history changed).
    let cold = PolicyGate::new(
        loader::load_embedded(&loader::builtin_scanner).expect("default policy"),
        Arc::new(Discard),
    )
    .with_scan_cache(0);
    group.bench_function(
        format!("anthropic_{}KB_benign_cold", body.len() / 1024),
        |b| measure(b, || outbound(&body), |o| cold.check(o)),
    );
    // The same request with a key and an email in its last message: redact + pseudonymize.
    let text = body.slice(..).to_vec();
    let with_findings = String::from_utf8(text).unwrap().replace(
        "Now fix the off-by-one in the tokenizer.",
        "Now fix it; key AKIAQ7RZ4MXW2KPL5TDN, owner jane.doe@acme-corp.com.",
    );
    let with_findings = Bytes::from(with_findings);
    group.bench_function(
        format!(
            "anthropic_{}KB_redact_pseudonymize",
            with_findings.len() / 1024
        ),
        |b| measure(b, || outbound(&with_findings), |o| gate.check(o)),
    );
    group.finish();

    // Where the time goes: reading the body (parse, decode strings, build the scan text) and
    // the scan of that text by the detection engine.
    let mut parts = c.benchmark_group("gate_check_parts");
    let head = outbound(&body).parts;
    parts.bench_function("read_body_to_document", |b| {
        measure(
            b,
            || (),
            |()| {
                let content = egress_guard::inspect::providers::read(
                    egress_guard::inspect::Provider::Anthropic,
                    &head,
                    &body,
                )
                .unwrap();
                egress_guard::inspect::content::Document::build(&content.segments)
            },
        )
    });
    let content = egress_guard::inspect::providers::read(
        egress_guard::inspect::Provider::Anthropic,
        &head,
        &body,
    )
    .unwrap();
    let document = egress_guard::inspect::content::Document::build(&content.segments);
    let scanner = egress_guard::detect::Scanner::builtin().unwrap();
    parts.bench_function(
        format!("scan_document_{}KB", document.text.len() / 1024),
        |b| measure(b, || (), |()| scanner.scan(document.text.as_bytes())),
    );
    parts.finish();
}

fn sse_restore(c: &mut Criterion) {
    let mut table = RestoreTable::default();
    table.insert(
        "user.3f9a2c11@example.invalid".into(),
        "jane.doe@acme-corp.com".into(),
    );
    table.insert("CUSTOMER_3F9A2C11".into(), "Acme Corp".into());
    let plain = Bytes::from(
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"The tokenizer skips the last character because the loop bound\"}}\n\n",
    );
    let with_surrogate = Bytes::from(
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"I wrote to user.3f9a2c11@example.invalid about CUSTOMER_3F9A2C11.\"}}\n\n",
    );
    let mut group = c.benchmark_group("sse_restore_per_event");
    for (name, event) in [("plain", plain), ("with_surrogates", with_surrogate)] {
        let mut filter = RestoreFilter::new(&table);
        let (mut head, ()) = http::Response::builder()
            .header("content-type", "text/event-stream")
            .body(())
            .unwrap()
            .into_parts();
        filter.head(&mut head);
        group.bench_function(name, |b| b.iter(|| filter.data(event.clone())));
    }
    group.finish();
}

criterion_group!(benches, gate_check, sse_restore);
criterion_main!(benches);
