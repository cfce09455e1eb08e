//! `gdq ingest`: local files and folders, or an S3 export bucket, into the warehouse.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use gdq_ingest::listing::ExportFilter;
use gdq_ingest::s3::AwsClients;
use gdq_ingest::s3_ingest::{S3IngestError, S3IngestOptions, S3IngestReport, ingest_s3, parse_day};
use gdq_ingest::{IngestOptions, IngestSummary, ingest_local};
use gdq_table::S3Location;

use crate::cli::{IngestArgs, ingest_failure, open_warehouse};
use crate::exit::{Failure, Status};
use crate::progress::ProgressDisplay;

pub fn run(
    warehouse: &str,
    config: Option<PathBuf>,
    mut args: IngestArgs,
) -> Result<ExitCode, Failure> {
    let mut region = None;
    if args.paths.is_empty() {
        // No source given: the export bucket `gdq setup` built, read with its key.
        let (path, record) = crate::setup::require_record(config, "gdq ingest without paths")?;
        eprintln!(
            "gdq: ingesting {} (from {})",
            record.source(),
            path.display()
        );
        args.paths.push(record.source());
        args.kms_key_arn.get_or_insert(record.key_arn);
        region = Some(record.region);
    }
    let (remote, local): (Vec<&String>, Vec<&String>) =
        args.paths.iter().partition(|p| p.starts_with("s3://"));
    let s3_only = !args.accounts.is_empty()
        || !args.regions.is_empty()
        || args.since.is_some()
        || args.until.is_some()
        || args.dry_run
        || args.kms_key_arn.is_some();
    match (remote.is_empty(), local.is_empty()) {
        (false, false) => Err(Failure::new(
            Status::Usage,
            "give either local paths or s3:// sources, not both, in one ingest",
        )),
        (true, _) if s3_only => Err(Failure::new(
            Status::Usage,
            "--since, --until, --account, --region, --kms-key-arn and --dry-run apply to s3:// sources",
        )),
        (true, _) => {
            let paths: Vec<PathBuf> = local.iter().map(PathBuf::from).collect();
            run_local(warehouse, &paths, &args)
        }
        (false, true) => run_s3(warehouse, &remote, &args, region),
    }
}

fn day_arg(
    flag: &str,
    value: &Option<String>,
) -> Result<Option<gdq_ingest::listing::Day>, Failure> {
    value
        .as_deref()
        .map(|v| {
            parse_day(v).ok_or_else(|| {
                Failure::new(
                    Status::Usage,
                    format!("{flag} {v:?}: expected a date (2024-05-01) or a time ago (3d, 36h)"),
                )
            })
        })
        .transpose()
}

fn run_s3(
    warehouse: &str,
    sources: &[&String],
    args: &IngestArgs,
    region: Option<String>,
) -> Result<ExitCode, Failure> {
    let filter = ExportFilter {
        accounts: args.accounts.clone(),
        regions: args.regions.clone(),
        since: day_arg("--since", &args.since)?,
        until: day_arg("--until", &args.until)?,
    };
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && since > until
    {
        return Err(Failure::new(
            Status::Usage,
            format!("--since {since} is after --until {until}"),
        ));
    }
    let sources = sources
        .iter()
        .map(|s| S3Location::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(crate::cli::table_failure)?;
    let mut options = S3IngestOptions {
        filter,
        kms_key: args.kms_key_arn.clone(),
        concurrency: args.concurrency.max(1),
        commit_input_bytes: args.commit_mib.unwrap_or(1024) << 20,
        dry_run: args.dry_run,
        ..S3IngestOptions::default()
    };
    options.batch.target_file_bytes = args.target_file_mib.max(1) << 20;
    options.batch = options.batch.with_memory_budget(
        args.memory_mib.saturating_mul(1 << 20),
        args.concurrency.max(1),
    );
    let warehouse = open_warehouse(warehouse)?;
    let runtime = crate::cli::runtime()?;
    let display = if args.dry_run {
        None
    } else {
        Some(ProgressDisplay::start(
            args.progress,
            Arc::clone(&options.progress),
        ))
    };
    let reports = runtime.block_on(async {
        let clients = AwsClients::in_region(region).await;
        let mut reports = Vec::new();
        for source in &sources {
            reports.push(ingest_s3(&clients, &warehouse, source, &options).await?);
        }
        Ok::<_, S3IngestError>(reports)
    });
    if let Some(display) = display {
        display.finish();
    }
    let reports = reports.map_err(|e| match e {
        S3IngestError::Ingest(e) => ingest_failure(e),
        S3IngestError::List(e) => Failure::new(Status::Failed, e),
    })?;
    let mut status = Status::Ok;
    for (source, report) in sources.iter().zip(&reports) {
        if args.dry_run {
            print_plan(&source.url(), report);
            continue;
        }
        for problem in &report.summary.problems {
            eprintln!("gdq: {problem}");
        }
        print_summary(&warehouse.name(), &report.summary);
        let this = exit_status(&report.summary);
        if this == Status::Failed || status == Status::Ok {
            status = this;
        }
    }
    Ok(status.into())
}

fn print_plan(source: &str, report: &S3IngestReport) {
    for prefix in &report.prefixes_listed {
        eprintln!("gdq: listed {prefix}");
    }
    let mut out = std::io::stdout().lock();
    let bucket = source
        .trim_start_matches("s3://")
        .split('/')
        .next()
        .unwrap_or_default();
    for object in &report.new_objects {
        let _ = writeln!(out, "s3://{bucket}/{}\t{}", object.key, object.size);
    }
    let bytes: u64 = report.new_objects.iter().map(|o| o.size).sum();
    let _ = writeln!(
        out,
        "dry run: {} new objects ({}) would be ingested from {source}; {} already in the warehouse; {} folders listed",
        report.new_objects.len(),
        mb(bytes),
        report.summary.objects_skipped,
        report.prefixes_listed.len()
    );
}

fn run_local(warehouse: &str, paths: &[PathBuf], args: &IngestArgs) -> Result<ExitCode, Failure> {
    let mut options = IngestOptions {
        commit_input_bytes: args.commit_mib.unwrap_or(4096) << 20,
        ..IngestOptions::default()
    };
    options.batch.target_file_bytes = args.target_file_mib.max(1) << 20;
    if let Some(threads) = args.threads {
        options.threads = threads.max(1);
    }
    options.batch = options
        .batch
        .with_memory_budget(args.memory_mib.saturating_mul(1 << 20), options.threads);
    let warehouse = open_warehouse(warehouse)?;
    let display = ProgressDisplay::start(args.progress, Arc::clone(&options.progress));
    let summary = ingest_local(&warehouse, paths, &options);
    display.finish();
    let summary = summary.map_err(ingest_failure)?;
    for problem in &summary.problems {
        eprintln!("gdq: {problem}");
    }
    print_summary(&warehouse.name(), &summary);
    Ok(exit_status(&summary).into())
}

fn exit_status(summary: &IngestSummary) -> Status {
    Status::of_run(
        summary.objects_failed,
        summary.lines_quarantined + summary.objects_partial + summary.objects_refused,
    )
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn print_summary(warehouse: &str, s: &IngestSummary) {
    let secs = s.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        s.rows as f64 / secs
    } else {
        0.0
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ingest into {warehouse}");
    crate::cli::print_recovery(&mut out, &s.recovery);
    let _ = writeln!(
        out,
        "  objects     {} found: {} ingested, {} already in the warehouse, {} refused, {} failed, {} read in part",
        s.objects,
        s.objects_ingested,
        s.objects_skipped,
        s.objects_refused,
        s.objects_failed,
        s.objects_partial
    );
    let _ = writeln!(
        out,
        "  findings    {} rows written in {} files, {} commit(s)",
        s.rows, s.files_written, s.commits
    );
    let _ = writeln!(
        out,
        "  quarantined {} lines, {} objects (in {warehouse}/_gdq/quarantine/)",
        s.lines_quarantined,
        s.objects_partial + s.objects_refused,
    );
    if s.bytes_json > 0 {
        let _ = writeln!(
            out,
            "  read        {} stored, {} of JSON; {} blank lines",
            mb(s.bytes_stored),
            mb(s.bytes_json),
            s.blank_lines
        );
    } else {
        let _ = writeln!(out, "  read        {} stored", mb(s.bytes_stored));
    }
    if s.ignored_files > 0 {
        let _ = writeln!(
            out,
            "  ignored     {} files that are not .jsonl or .jsonl.gz",
            s.ignored_files
        );
    }
    let _ = writeln!(out, "  elapsed     {secs:.2} s ({rate:.0} findings/s)");
}
