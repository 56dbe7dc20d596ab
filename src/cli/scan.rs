//! `egress-guard scan`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

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

pub fn run(_args: ScanArgs) -> anyhow::Result<ExitCode> {
    super::not_built("scan")
}
