//! Subcommands, one file each. Only argument parsing and presentation live here; the work is
//! done by the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod audit;
mod ca;
mod dict;
mod doctor;
mod env;
mod policy;
mod rules;
mod run;
mod scan;

#[derive(Debug, Parser)]
#[command(
    name = "egress-guard",
    version,
    about = "A data-egress guard for AI coding agents"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy in the foreground until SIGINT/SIGTERM.
    Run(run::RunArgs),
    /// Manage the local certificate authority.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Print the environment lines that point agents at the proxy.
    Env(env::EnvArgs),
    /// Run a command with the environment `env` prints.
    Exec(env::ExecArgs),
    /// Check the set-up and say how to fix each problem.
    Doctor(doctor::DoctorArgs),
    /// Scan files (or stdin) with the policy's detectors.
    Scan(scan::ScanArgs),
    /// Validate a policy directory or run its test cases.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Verify, report on, or print the key of the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Manage detection rule packs.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Build exact-data-match dictionaries.
    #[command(subcommand)]
    Dict(dict::DictCommand),
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Ca(command) => ca::run(command),
        Command::Env(args) => env::print(args),
        Command::Exec(args) => env::exec(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Scan(args) => scan::run(args),
        Command::Policy(command) => policy::run(command),
        Command::Audit(command) => audit::run(command),
        Command::Rules(command) => rules::run(command),
        Command::Dict(command) => dict::run(command),
    }
}

/// For subcommands whose issue has not landed yet: say so plainly, exit 2.
fn not_built(command: &str) -> anyhow::Result<ExitCode> {
    eprintln!("egress-guard {command}: not built yet in this version");
    Ok(ExitCode::from(2))
}
