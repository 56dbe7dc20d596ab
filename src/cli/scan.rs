//! `egress-guard scan`: files, directories (respecting `.gitignore`) or stdin, scanned in
//! parallel as plain text with the policy's detectors.
//!
//! Never prints a value in json format; text format shows at most its first 4 characters.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::Context;
use clap::{Args, ValueEnum};
use egress_guard::detect::{Category, Finding, Scanner};
use ignore::{WalkBuilder, WalkState};
use serde::Serialize;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Policy directory whose rules to use (default: the shipped rules).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Files or directories to scan; `-` or nothing for stdin.
    pub paths: Vec<PathBuf>,
}

/// Files larger than this are skipped with a warning: `scan` is for source trees and requests,
/// and reading a multi-gigabyte file whole would take the machine's memory.
const MAX_FILE: u64 = 256 << 20;
/// A NUL byte in this many leading bytes marks a file as binary (as git and ripgrep do).
const BINARY_SNIFF: usize = 8 << 10;

/// One file's findings with what is needed to print them.
struct Report {
    path: String,
    findings: Vec<Finding>,
    text: Vec<u8>,
}

/// One line of `--format json`: exactly the contract's fields, in its order.
#[derive(Serialize)]
struct JsonFinding<'a> {
    path: &'a str,
    detector: &'a str,
    category: &'a str,
    severity: &'a str,
    start: usize,
    end: usize,
    line: usize,
    action: &'a str,
}

pub fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let scanner = match &args.policy {
        Some(dir) => {
            Scanner::from_dir(dir).with_context(|| format!("loading policy {}", dir.display()))?
        }
        None => Scanner::builtin().context("loading the shipped rules")?,
    };
    let reports = Mutex::new(Vec::new());
    let failed = AtomicBool::new(false);

    let mut paths = args.paths.clone();
    if paths.is_empty() {
        paths.push(PathBuf::from("-"));
    }
    let (stdin, files): (Vec<_>, Vec<_>) = paths.into_iter().partition(|p| p.as_os_str() == "-");
    if !stdin.is_empty() {
        let mut text = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut text)
            .context("reading stdin")?;
        let findings = scanner.scan(&text);
        lock(&reports).push(Report {
            path: "-".into(),
            findings,
            text,
        });
    }
    if let Some((first, rest)) = files.split_first() {
        let mut walk = WalkBuilder::new(first);
        for path in rest {
            walk.add(path);
        }
        walk.hidden(false).require_git(false);
        walk.filter_entry(|entry| entry.file_name() != ".git");
        walk.build_parallel().run(|| {
            let scanner = &scanner;
            let reports = &reports;
            let failed = &failed;
            Box::new(move |entry| {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(error) => {
                        eprintln!("egress-guard scan: {error}");
                        failed.store(true, Ordering::Relaxed);
                        return WalkState::Continue;
                    }
                };
                if entry.file_type().is_some_and(|t| t.is_file()) {
                    match scan_file(scanner, entry.path()) {
                        Ok(Some(report)) => lock(reports).push(report),
                        Ok(None) => {}
                        Err(error) => {
                            eprintln!("egress-guard scan: {}: {error}", entry.path().display());
                            failed.store(true, Ordering::Relaxed);
                        }
                    }
                }
                WalkState::Continue
            })
        });
    }

    let mut reports = reports.into_inner().unwrap_or_else(|p| p.into_inner());
    reports.sort_by(|a, b| a.path.cmp(&b.path));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut found = false;
    for report in &reports {
        found |= !report.findings.is_empty();
        print_report(&mut out, report, args.format)?;
    }
    out.flush()?;
    // The process exits next: freeing the rule set's automata and the read files one by one
    // would only delay that (it was a tenth of the start-up).
    std::mem::forget(scanner);
    std::mem::forget(reports);
    Ok(ExitCode::from(if failed.load(Ordering::Relaxed) {
        2
    } else if found {
        1
    } else {
        0
    }))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads and scans one file; `None` for files that are skipped (binary, too large, no finding).
fn scan_file(scanner: &Scanner, path: &Path) -> std::io::Result<Option<Report>> {
    let size = std::fs::metadata(path)?.len();
    if size > MAX_FILE {
        eprintln!(
            "egress-guard scan: {}: skipped, larger than {} MiB",
            path.display(),
            MAX_FILE >> 20
        );
        return Ok(None);
    }
    let text = std::fs::read(path)?;
    if text[..text.len().min(BINARY_SNIFF)].contains(&0) {
        return Ok(None);
    }
    let findings = scanner.scan(&text);
    if findings.is_empty() {
        return Ok(None);
    }
    Ok(Some(Report {
        path: path.display().to_string(),
        findings,
        text,
    }))
}

/// What the default policy would do with a finding of this category, until the policy engine
/// decides it: secrets are redacted, personal and customer data pseudonymised.
fn default_action(category: Category) -> &'static str {
    match category {
        Category::Secret => "redact",
        Category::Pii | Category::Custom => "pseudonymize",
    }
}

fn print_report(out: &mut impl Write, report: &Report, format: Format) -> anyhow::Result<()> {
    // Findings are sorted by start: count newlines incrementally.
    let (mut line, mut counted_to) = (1, 0);
    for finding in &report.findings {
        let start = finding.span.start.min(report.text.len());
        if start >= counted_to {
            line += report.text[counted_to..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            counted_to = start;
        }
        match format {
            Format::Json => {
                let record = JsonFinding {
                    path: &report.path,
                    detector: &finding.detector,
                    category: finding.category.as_str(),
                    severity: finding.severity.as_str(),
                    start: finding.span.start,
                    end: finding.span.end,
                    line,
                    action: default_action(finding.category),
                };
                serde_json::to_writer(&mut *out, &record)?;
                writeln!(out)?;
            }
            Format::Text => {
                let end = finding.span.end.min(report.text.len());
                let value = String::from_utf8_lossy(&report.text[start..end]);
                writeln!(
                    out,
                    "{}:{}: {} ({}, {}) {}",
                    report.path,
                    line,
                    finding.detector,
                    finding.category.as_str(),
                    finding.severity.as_str(),
                    mask(&value)
                )?;
            }
        }
    }
    Ok(())
}

/// The first 4 characters and `***`: enough to recognise a value, not to use it.
fn mask(value: &str) -> String {
    let shown: String = value
        .chars()
        .take(4)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    format!("{shown}***")
}
