//! `egress-guard run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML config file with the same settings as these flags (flags win).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Proxy listener (forward proxy and base-URL mode).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin listener: /metrics, /healthz, /readyz, /proxy.pac, /ca.pem.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Policy directory (default: the shipped policy embedded in the binary).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Where the CA, audit log and state live.
    #[arg(long, env = "EGRESS_GUARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Extra trusted root for upstream TLS (repeatable); system and webpki roots stay trusted.
    #[arg(long = "upstream-ca")]
    pub upstream_ca: Vec<PathBuf>,
    /// HOST:PORT=ADDR:PORT: connect to ADDR:PORT whenever HOST:PORT is the upstream (repeatable).
    #[arg(long)]
    pub resolve: Vec<String>,
}

pub fn run(_args: RunArgs) -> anyhow::Result<ExitCode> {
    super::not_built("run")
}
