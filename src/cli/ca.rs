//! `egress-guard ca init|path`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the local CA if there is none; print the certificate's path.
    Init(DataDirArg),
    /// Print the CA certificate's path (PEM).
    Path(DataDirArg),
}

#[derive(Debug, Args)]
pub struct DataDirArg {
    #[arg(long, env = "EGRESS_GUARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

pub fn run(_command: CaCommand) -> anyhow::Result<ExitCode> {
    super::not_built("ca")
}
