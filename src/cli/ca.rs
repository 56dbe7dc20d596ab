//! `egress-guard ca init|path`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use egress_guard::tls::LocalCa;

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

pub fn run(command: CaCommand) -> anyhow::Result<ExitCode> {
    match command {
        CaCommand::Init(arg) => {
            let dir = super::run::data_dir(arg.data_dir)?;
            let ca = LocalCa::load_or_create(&dir).context("cannot set up the local CA")?;
            println!("{}", ca.path().display());
            Ok(ExitCode::SUCCESS)
        }
        CaCommand::Path(arg) => {
            let dir = super::run::data_dir(arg.data_dir)?;
            match super::run::existing_ca(&dir) {
                Some(path) => {
                    println!("{}", path.display());
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!(
                        "egress-guard: no CA in {} yet; create one with `egress-guard ca init`",
                        dir.display()
                    );
                    Ok(ExitCode::from(2))
                }
            }
        }
    }
}
