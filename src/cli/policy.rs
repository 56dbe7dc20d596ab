//! `egress-guard policy check|test`.
//!
//! `check` loads a policy directory exactly as `run --policy DIR` would (policy file, rule packs,
//! dictionaries, case files) and prints the first error with file:line:column. `test` runs the
//! detection rules' own cases and the policy's `[[case]]`s: each a request (host, path,
//! headers, body) and the action the policy must take.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;

use egress_guard::policy::decision::{AuditError, AuditSink, Decision};
use egress_guard::policy::loader::{self, LoadedPolicy};
use egress_guard::policy::model::Case;
use egress_guard::policy::PolicyGate;
use egress_guard::proxy::gate::Outbound;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy directory; errors name file and line.
    Check { dir: Option<PathBuf> },
    /// Run the policy's own test cases.
    Test { dir: Option<PathBuf> },
}

pub fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Check { dir } => check(dir.as_deref()),
        PolicyCommand::Test { dir } => test(dir.as_deref()),
    }
}

fn load(dir: Option<&Path>) -> Result<LoadedPolicy, loader::PolicyError> {
    match dir {
        Some(dir) => loader::load_dir(dir, &loader::builtin_scanner),
        None => loader::load_embedded(&loader::builtin_scanner),
    }
}

fn check(dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    match load(dir) {
        Ok(loaded) => {
            let p = &loaded.policy;
            println!(
                "{}: policy `{}` is valid: {} destinations, {} rules, {} cases (digest {})",
                loaded.source.display(),
                p.name,
                p.destinations.len(),
                p.rules.len(),
                loaded.cases.len(),
                &loaded.digest[..16]
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(2))
        }
    }
}

/// Decisions of test cases go nowhere.
struct Discard;

impl AuditSink for Discard {
    fn record(&self, _: &Decision) -> Result<(), AuditError> {
        Ok(())
    }
}

fn test(dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = match load(dir) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut failed = 0usize;

    // The detection rules' own examples and counter-examples.
    let scanner = match dir {
        Some(dir) => egress_guard::detect::Scanner::from_dir(dir),
        None => egress_guard::detect::Scanner::builtin(),
    };
    match scanner {
        Ok(scanner) => {
            let failures = scanner.check_rule_cases();
            for failure in &failures {
                println!("FAIL {failure}");
            }
            println!(
                "rules: {} rules checked, {} case failures",
                scanner.rules().len(),
                failures.len()
            );
            failed += failures.len();
        }
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    }

    // The policy's own cases.
    let cases = loaded.cases.clone();
    let gate = PolicyGate::new(loaded, Arc::new(Discard));
    let mut passed = 0usize;
    for case in &cases {
        match run_case(&gate, case) {
            Ok(()) => {
                passed += 1;
                println!("ok   {}", case.name);
            }
            Err(why) => {
                failed += 1;
                println!("FAIL {}: {why}", case.name);
            }
        }
    }
    println!(
        "policy cases: {passed} passed, {} failed",
        cases.len() - passed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Runs one case through the gate; `Err` says how the decision differed.
fn run_case(gate: &PolicyGate, case: &Case) -> Result<(), String> {
    let mut builder = http::Request::builder()
        .method(case.method.as_str())
        .uri(case.path.as_str());
    for (name, value) in &case.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    if !case
        .headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("content-type"))
    {
        builder = builder.header("content-type", "application/json");
    }
    let (parts, ()) = builder
        .body(())
        .map_err(|e| format!("the case's request is not valid HTTP: {e}"))?
        .into_parts();
    let outbound = Outbound {
        host: case.host.to_ascii_lowercase(),
        port: 443,
        parts,
        body: bytes::Bytes::from(case.body.clone()),
    };
    let (_, decision) = gate.decide(outbound);
    let expected = egress_guard::policy::decision::audit_action(case.expect);
    let found: Vec<&str> = decision
        .findings
        .iter()
        .map(|f| f.detector.as_str())
        .collect();
    let summary = || {
        format!(
            "got {} (rule {}, findings [{}]{})",
            decision.action,
            decision.rule.as_deref().unwrap_or("none"),
            found.join(", "),
            decision
                .reason
                .as_deref()
                .map(|r| format!(", reason: {r}"))
                .unwrap_or_default()
        )
    };
    if decision.action != expected {
        return Err(format!("expected {expected}, {}", summary()));
    }
    if let Some(rule) = &case.expect_rule {
        if decision.rule.as_deref() != Some(rule.as_str()) {
            return Err(format!("expected rule `{rule}`, {}", summary()));
        }
    }
    if let Some(detector) = &case.expect_detector {
        if !found.contains(&detector.as_str()) {
            return Err(format!("expected a {detector} finding, {}", summary()));
        }
    }
    Ok(())
}
