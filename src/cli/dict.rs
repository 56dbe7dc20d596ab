//! `egress-guard dict build`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use egress_guard::detect::dict;

#[derive(Debug, Subcommand)]
pub enum DictCommand {
    /// Build an exact-data-match file of keyed hashes from customer data.
    ///
    /// Every cell of every CSV (the first row of each is taken as the header and skipped) is
    /// normalised and stored only as a keyed hash (HMAC-SHA256): the values themselves are never
    /// written. Put the file in your policy's `dictionaries/` folder.
    Build {
        #[arg(required = true)]
        csv: Vec<PathBuf>,
        #[arg(short = 'o', long = "output", required = true)]
        output: PathBuf,
    },
}

pub fn run(command: DictCommand) -> anyhow::Result<ExitCode> {
    let DictCommand::Build { csv, output } = command;
    let summary = dict::build_exact(&csv, &output)
        .with_context(|| format!("building {}", output.display()))?;
    println!(
        "{}: {} value(s) hashed from {} file(s); {} cell(s) skipped (too short, or more than {} words)",
        output.display(),
        summary.values,
        csv.len(),
        summary.skipped,
        dict::MAX_WORDS
    );
    Ok(ExitCode::SUCCESS)
}
