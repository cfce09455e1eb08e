//! `gdq report`: the named reports of `gdq_query::reports`, listed or run.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use gdq_query::OutputFormat;
use gdq_query::reports::{REPORTS, ReportOptions, find, print_report};
use gdq_table::Warehouse;

use crate::cli::{query_failure, runtime, table_failure};
use crate::exit::{Failure, Status};
use crate::output::Stdout;

pub const REPORT_HELP: &str = "\
Examples:
  gdq report                                   # the reports, one line each
  gdq report top-types --since 30d
  gdq report open-past-age --account 123456789012 --format csv
  gdq report resource-timeline --resource i-99999999
  gdq report new-types --show-sql              # the SQL, to copy and change

Counts are distinct findings at their newest version unless the report is about versions.
--since and --until take a date (2024-05-01; --until includes that day), a timestamp
(2024-05-01T12:00:00Z) or a time ago (7d, 36h).";

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The report to run (without it: the list).
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub filters: crate::serve::Filters,
    /// resource-timeline: the instance id, access key id, user, bucket or cluster name.
    #[arg(long, value_name = "ID")]
    pub resource: Option<String>,
    /// spikes: findings an account-day must exceed.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub threshold: i64,
    /// open-past-age: days a High or Critical finding may stay open.
    #[arg(long, default_value_t = 1, value_name = "DAYS")]
    pub high_days: i64,
    /// open-past-age: days for Medium.
    #[arg(long, default_value_t = 7, value_name = "DAYS")]
    pub medium_days: i64,
    /// open-past-age: days for Low.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub low_days: i64,
    /// Print the report's SQL (with this run's filters and parameter values) instead of
    /// running it.
    #[arg(long)]
    pub show_sql: bool,
}

const DAY_MS: i64 = 86_400_000;

/// `--since`/`--until`: a date (its first instant; with `end`, the next day's), an RFC 3339
/// timestamp, or a time ago.
pub fn instant(flag: &str, text: &str, now_ms: i64, end: bool) -> Result<i64, Failure> {
    if let Some(ms) = gdq_schemas::parse_timestamp_ms(&format!("{text}T00:00:00Z")) {
        return Ok(if end { ms + DAY_MS } else { ms });
    }
    if let Some(ms) = gdq_schemas::parse_timestamp_ms(text) {
        return Ok(ms);
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(now_ms - ago.as_millis() as i64);
    }
    Err(Failure::new(
        Status::Usage,
        format!("{flag} {text:?}: expected a date (2024-05-01), a timestamp or a time ago (7d)"),
    ))
}

fn options(args: &ReportArgs) -> Result<ReportOptions, Failure> {
    for (flag, days) in [
        ("--high-days", args.high_days),
        ("--medium-days", args.medium_days),
        ("--low-days", args.low_days),
    ] {
        if days < 0 {
            return Err(Failure::new(
                Status::Usage,
                format!("{flag} {days}: days are 0 or more"),
            ));
        }
    }
    Ok(ReportOptions {
        resource: args.resource.clone(),
        threshold: args.threshold,
        age_days: [args.high_days, args.medium_days, args.low_days],
        ..crate::serve::options(&args.filters)?
    })
}

pub fn run(warehouse: &str, args: ReportArgs, format: OutputFormat) -> Result<ExitCode, Failure> {
    crate::allocator::purge_freed_memory_when_long_running();
    let Some(name) = &args.name else {
        let mut out = Stdout::lock();
        let width = REPORTS.iter().map(|r| r.name.len()).max().unwrap_or(0);
        let listed = REPORTS
            .iter()
            .try_for_each(|r| writeln!(out, "{:<width$}  {}", r.name, r.summary));
        return out.finish(listed.map(|()| Status::Ok.into()).map_err(|e| {
            Failure::new(Status::Failed, format!("writing to standard output: {e}"))
        }));
    };
    let report = find(name).ok_or_else(|| {
        Failure::new(
            Status::Usage,
            format!(
                "no report {name:?}; the reports: {}",
                REPORTS
                    .iter()
                    .map(|r| r.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let options = options(&args)?;
    if args.show_sql {
        let header = options.describe(report).map_err(query_failure)?;
        let mut out = Stdout::lock();
        let written = write!(out, "{header}{}", report.sql);
        return out.finish(written.map(|()| Status::Ok.into()).map_err(|e| {
            Failure::new(Status::Failed, format!("writing to standard output: {e}"))
        }));
    }
    runtime()?.block_on(async {
        let warehouse = Warehouse::open(warehouse).await.map_err(table_failure)?;
        let (ctx, warning) = gdq_query::open_session(&warehouse)
            .await
            .map_err(query_failure)?;
        if let Some(warning) = warning {
            eprintln!("gdq: {warning}");
        }
        let mut out = Stdout::lock();
        let printed = print_report(&ctx, report, &options, &mut out, format)
            .await
            .map(|_| Status::Ok.into())
            .map_err(query_failure);
        out.finish(printed)
    })
}
