//! `egress-guard dict build`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DictCommand {
    /// Build an exact-data-match file of keyed hashes from customer data.
    Build {
        #[arg(required = true)]
        csv: Vec<PathBuf>,
        #[arg(short = 'o', long = "output", required = true)]
        output: PathBuf,
    },
}

pub fn run(_command: DictCommand) -> anyhow::Result<ExitCode> {
    super::not_built("dict")
}
