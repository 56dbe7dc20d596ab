//! `egress-guard rules import-gitleaks`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use egress_guard::detect::gitleaks;

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Convert a gitleaks TOML config into an egress-guard rule pack.
    ///
    /// Writes `DIR/<config name>.toml` (put it in a policy's `rules/` folder) or prints the pack;
    /// lists on stderr every rule it could not convert and why. Exit 0 all converted, 1 some
    /// not, 2 error.
    ImportGitleaks {
        file: PathBuf,
        /// Output directory for the rule pack (default: stdout).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
}

pub fn run(command: RulesCommand) -> anyhow::Result<ExitCode> {
    let RulesCommand::ImportGitleaks { file, output } = command;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let import = gitleaks::convert(&text)
        .with_context(|| format!("{}: not a gitleaks config", file.display()))?;
    let total = import.rules.len() + import.skipped.len();
    for warning in &import.warnings {
        eprintln!("warning: {warning}");
    }
    for (id, why) in &import.skipped {
        eprintln!("not converted: {id}: {why}");
    }
    eprintln!("converted {} of {total} rule(s)", import.rules.len());
    if import.rules.is_empty() {
        anyhow::bail!("{}: no rule could be converted", file.display());
    }
    let pack = import
        .to_toml(&file.display().to_string())
        .context("writing the rule pack")?;
    match output {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let stem = file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("gitleaks");
            let path = dir.join(format!("{stem}.toml"));
            std::fs::write(&path, pack).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{pack}"),
    }
    Ok(ExitCode::from(if import.skipped.is_empty() {
        0
    } else {
        1
    }))
}
