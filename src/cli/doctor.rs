//! `egress-guard doctor`.

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Skip the checks that need a running proxy.
    #[arg(long)]
    pub offline: bool,
}

pub fn run(_args: DoctorArgs) -> anyhow::Result<ExitCode> {
    super::not_built("doctor")
}
