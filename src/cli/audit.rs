//! `egress-guard audit verify|pubkey|report`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Html,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain (and signatures) of an audit log file or directory.
    Verify { path: Option<PathBuf> },
    /// Print the public key that verifies the audit checkpoints.
    Pubkey {
        #[arg(long, env = "EGRESS_GUARD_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Summarise decisions for compliance review.
    Report {
        path: Option<PathBuf>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
    },
}

pub fn run(_command: AuditCommand) -> anyhow::Result<ExitCode> {
    super::not_built("audit")
}
