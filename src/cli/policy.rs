//! `egress-guard policy check|test`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy directory; errors name file and line.
    Check { dir: Option<PathBuf> },
    /// Run the policy's own test cases.
    Test { dir: Option<PathBuf> },
}

pub fn run(_command: PolicyCommand) -> anyhow::Result<ExitCode> {
    super::not_built("policy")
}
