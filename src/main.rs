//! The `egress-guard` command line: parse, call the library, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("egress-guard: {error:#}");
            ExitCode::from(2)
        }
    }
}
