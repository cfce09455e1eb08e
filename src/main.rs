//! `gdq`: GuardDuty findings exports → a queryable Parquet history.
//!
//! Argument parsing and wiring only: the work lives in the `gdq-ingest`, `gdq-query` and
//! `gdq-setup` crates, the table contract in `gdq-schemas`.

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

/// mimalloc instead of glibc's malloc: the ingest allocates and frees page buffers of 135
/// open Parquet writers from two threads, which glibc's arenas fragment into hundreds of
/// MiB of resident memory (docs/benchmarks.md has the measured numbers).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
