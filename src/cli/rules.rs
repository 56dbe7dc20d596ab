//! `egress-guard rules import-gitleaks`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Convert a gitleaks TOML config into an egress-guard rule pack.
    ImportGitleaks {
        file: PathBuf,
        /// Output directory for the rule pack (default: stdout).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
}

pub fn run(_command: RulesCommand) -> anyhow::Result<ExitCode> {
    super::not_built("rules")
}
