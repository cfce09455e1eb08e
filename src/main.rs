//! `gdq`: GuardDuty findings exports → a queryable Parquet history.
//!
//! Argument parsing and wiring only: the work lives in the `gdq-ingest`, `gdq-query` and
//! `gdq-setup` crates, the table contract in `gdq-schemas`.

mod allocator;
mod choices;
mod cli;
mod dashboard;
mod exit;
mod ingest;
mod output;
mod progress;
mod report;
mod serve;
mod setup;
mod shell;
mod worker;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("gdq: {}", failure.message);
            failure.code.into()
        }
    }
}
