//! `egress-guard env` and `egress-guard exec`.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Sh,
    Fish,
    Powershell,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    #[arg(long, value_enum, default_value = "sh")]
    pub shell: Shell,
    #[command(flatten)]
    pub run: super::run::RunArgs,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Start a proxy for the command's lifetime if none is running.
    #[arg(long)]
    pub start: bool,
    #[command(flatten)]
    pub run: super::run::RunArgs,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<OsString>,
}

pub fn print(_args: EnvArgs) -> anyhow::Result<ExitCode> {
    super::not_built("env")
}

pub fn exec(_args: ExecArgs) -> anyhow::Result<ExitCode> {
    super::not_built("exec")
}
