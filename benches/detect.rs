//! Throughput of `Scanner::scan` with the full shipped rule set on three inputs built
//! deterministically at bench time:
//!
//! - `code`: Rust sources concatenated from the local cargo registry (~/.cargo/registry/src),
//!   sorted by path, up to 8 MiB; a generated stand-in if the registry is absent;
//! - `prose`: 8 MiB of generated English text;
//! - `agent_json`: a ~200 KB coding-agent request (messages with code, tool results, a few
//!   secrets and personal data).
//!
//! Run: `cargo bench --bench detect` (figures in BENCHMARKS.md, "Detection (issue 5)").

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use egress_guard::detect::Scanner;

const CODE_BYTES: usize = 8 << 20;
const PROSE_BYTES: usize = 8 << 20;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Ordinary source code: the registry's Rust files, or generated code if there is none.
pub fn code_corpus() -> Vec<u8> {
    let mut files = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        rust_files(&Path::new(&home).join(".cargo/registry/src"), &mut files);
    }
    files.sort();
    let mut out = Vec::with_capacity(CODE_BYTES);
    for file in files {
        if out.len() >= CODE_BYTES {
            break;
        }
        if let Ok(text) = std::fs::read(&file) {
            out.extend_from_slice(&text);
        }
    }
    let mut n = 0u64;
    while out.len() < CODE_BYTES {
        n += 1;
        out.extend_from_slice(
            format!(
                "pub fn handler_{n}(req: &Request, cfg: &Config) -> Result<Response, Error> {{\n    \
                 let user = req.header(\"x-user\").ok_or(Error::Missing)?;\n    \
                 let limit = cfg.limit.unwrap_or({});\n    \
                 tracing::debug!(%user, limit, \"handling request\");\n    \
                 Ok(Response::new(200, format!(\"{{}} of {{}}\", user, limit)))\n}}\n\n",
                n % 977
            )
            .as_bytes(),
        );
    }
    out.truncate(CODE_BYTES);
    out
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "a",
    "to",
    "in",
    "is",
    "you",
    "that",
    "it",
    "he",
    "was",
    "for",
    "on",
    "are",
    "as",
    "with",
    "his",
    "they",
    "at",
    "be",
    "this",
    "have",
    "from",
    "or",
    "one",
    "had",
    "by",
    "word",
    "but",
    "not",
    "what",
    "all",
    "were",
    "we",
    "when",
    "your",
    "can",
    "said",
    "there",
    "use",
    "an",
    "each",
    "which",
    "she",
    "do",
    "how",
    "their",
    "if",
    "will",
    "up",
    "other",
    "about",
    "out",
    "many",
    "then",
    "them",
    "these",
    "so",
    "some",
    "her",
    "would",
    "make",
    "like",
    "him",
    "into",
    "time",
    "has",
    "look",
    "two",
    "more",
    "write",
    "go",
    "see",
    "number",
    "no",
    "way",
    "could",
    "people",
    "my",
    "than",
    "first",
    "water",
    "been",
    "call",
    "who",
    "oil",
    "its",
    "now",
    "find",
    "long",
    "down",
    "day",
    "did",
    "get",
    "come",
    "made",
    "may",
    "part",
    "committee",
    "quarterly",
    "revenue",
    "forecast",
    "customer",
    "meeting",
];

/// English-like prose: sentences of common words, deterministic.
pub fn prose_corpus() -> Vec<u8> {
    let mut out = Vec::with_capacity(PROSE_BYTES);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut sentence = 0;
    while out.len() < PROSE_BYTES {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let word = WORDS[(state % WORDS.len() as u64) as usize];
        if sentence == 0 {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                out.extend(first.to_uppercase().to_string().bytes());
                out.extend(chars.as_str().bytes());
            }
        } else {
            out.push(b' ');
            out.extend_from_slice(word.as_bytes());
        }
        sentence += 1;
        if sentence > 8 + (state % 12) as usize {
            out.extend_from_slice(if state.is_multiple_of(5) {
                b".\n\n"
            } else {
                b". "
            });
            sentence = 0;
        }
    }
    out.truncate(PROSE_BYTES);
    out
}

/// A coding agent's request: a system prompt, a conversation with code and tool output, and a
/// few values that must be found (made up for the purpose).
pub fn agent_json() -> Vec<u8> {
    let code = code_corpus();
    let mut messages = Vec::new();
    let mut offset = 0;
    let mut turn = 0;
    let mut size = 0;
    while size < 190_000 {
        let chunk = &code[offset..offset + 6_000];
        offset += 6_000;
        let text = String::from_utf8_lossy(chunk).into_owned();
        let body = match turn % 4 {
            0 => format!(
                "Please refactor this file and keep the tests passing:\n```rust\n{text}\n```"
            ),
            1 => format!("I'll read the file first.\n{text}"),
            2 => format!("tool_result: cat src/lib.rs\n{text}"),
            _ => "Looks good, run the tests again and summarise the failures.".to_string(),
        };
        size += body.len();
        messages.push(serde_json::json!({
            "role": if turn % 2 == 0 { "user" } else { "assistant" },
            "content": [{"type": "text", "text": body}],
        }));
        turn += 1;
    }
    messages.push(serde_json::json!({
        "role": "user",
        "content": [{"type": "text", "text": "deploy with AWS_ACCESS_KEY_ID=AKIAQ3EGRTYU7IOPZXCV and \
            notify jane.doe@acme-corp.com, card on file 4526 0181 5908 3012"}],
    }));
    let request = serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 8192,
        "system": "You are a coding agent. Use the tools to read and edit files.",
        "messages": messages,
        "tools": [{"name": "bash", "description": "run a shell command", "input_schema": {"type": "object"}}],
    });
    serde_json::to_vec(&request).unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let scanner = Scanner::builtin().expect("shipped rules load");
    let inputs = [
        ("code", code_corpus()),
        ("prose", prose_corpus()),
        ("agent_json", agent_json()),
    ];
    let mut group = c.benchmark_group("scan");
    group.sample_size(20);
    for (name, input) in &inputs {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(*name, |b| b.iter(|| scanner.scan(input)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
