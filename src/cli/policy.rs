//! `egress-guard policy check|test`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use egress_guard::detect::Scanner;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy directory; errors name file and line.
    Check { dir: Option<PathBuf> },
    /// Run the policy's own test cases.
    Test { dir: Option<PathBuf> },
}

pub fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Check { .. } => super::not_built("policy check"),
        PolicyCommand::Test { dir } => test(dir),
    }
}

/// Runs every rule's `match` / `no_match` cases (shipped rules plus `DIR/rules/*.toml`) and
/// names each failing rule; exit 0 all pass, 1 a case fails, 2 the policy does not load.
fn test(dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let scanner = match &dir {
        Some(dir) => {
            Scanner::from_dir(dir).with_context(|| format!("loading policy {}", dir.display()))?
        }
        None => Scanner::builtin().context("loading the shipped rules")?,
    };
    let failures = scanner.check_rule_cases();
    let rules = scanner.rules();
    let cases: usize = rules
        .iter()
        .map(|r| r.spec.tests.matches.len() + r.spec.tests.no_match.len())
        .sum();
    for failure in &failures {
        println!("FAIL {failure}");
    }
    if failures.is_empty() {
        println!("rules: {} rules, {cases} cases, all pass", rules.len());
        Ok(ExitCode::SUCCESS)
    } else {
        let mut failing: Vec<_> = failures.iter().map(|f| f.rule.as_str()).collect();
        failing.dedup();
        println!(
            "rules: {} rules, {cases} cases, {} failing case(s) in {} rule(s)",
            rules.len(),
            failures.len(),
            failing.len()
        );
        Ok(ExitCode::from(1))
    }
}
