//! `gdq worker`: logging, signals and the summary around the ingest crate's SQS loop.

use std::path::PathBuf;
use std::process::ExitCode;

use gdq_ingest::batch::DEFAULT_MEMORY_BUDGET;
use gdq_ingest::s3::AwsClients;
use gdq_ingest::worker::{WorkerOptions, WorkerStats, run_worker};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

/// What the worker logs when `GDQ_LOG` is not set.
const DEFAULT_LOG_FILTER: &str = "warn,gdq=info,gdq_ingest=info,gdq_table=info,gdq_query=info";

use crate::choices::LogFormatChoice;
use crate::cli::WorkerArgs;
use crate::exit::{Failure, Status};

fn init_logging(format: LogFormatChoice) {
    // gdq's own progress at info; the libraries below it (delta-rs, the Delta kernel, the
    // AWS SDK) only when something is wrong. `GDQ_LOG=debug` shows everything.
    let filter =
        EnvFilter::try_from_env("GDQ_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormatChoice::Json => builder.json().init(),
        LogFormatChoice::Text => builder.init(),
    }
}

pub fn run(
    warehouse: &str,
    config: Option<PathBuf>,
    args: WorkerArgs,
) -> Result<ExitCode, Failure> {
    init_logging(args.log_format);
    let (queue_url, kms_key, region) = match args.queue_url {
        Some(url) => (url, args.kms_key_arn, None),
        None => {
            // The queue `gdq setup` built, with the key its exports must carry.
            let (path, record) =
                crate::setup::require_record(config, "gdq worker without --queue-url")?;
            tracing::info!(record = %path.display(), queue = %record.queue_url, "queue from the setup record");
            (
                record.queue_url,
                args.kms_key_arn.or(Some(record.key_arn)),
                Some(record.region),
            )
        }
    };
    let mut options = WorkerOptions::new(&queue_url);
    options.once = args.once;
    options.kms_key = kms_key;
    options.accounts = args.accounts;
    options.concurrency = args.concurrency.max(1);
    options.batch = options
        .batch
        .with_memory_budget(DEFAULT_MEMORY_BUDGET, options.concurrency);
    options.flush_rows = args.flush_rows.max(1);
    options.flush_interval = args.flush_interval;
    options.wait = args.wait.unwrap_or(if args.once {
        std::time::Duration::from_secs(1)
    } else {
        std::time::Duration::from_secs(20)
    });
    options.progress_interval = args.progress_interval;

    let warehouse = crate::cli::open_warehouse(warehouse)?;
    let runtime = crate::cli::runtime()?;
    let stats = runtime.block_on(async {
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = stop.send(true);
        });
        let clients = AwsClients::in_region(region).await;
        run_worker(clients, warehouse, options, shutdown).await
    });
    let stats = stats.map_err(|e| Failure::new(Status::Failed, e))?;
    if args.once {
        print_summary(&stats);
    }
    // The table of src/exit.rs: a failed object (left on the queue, retried) is a failure,
    // as in `ingest`; refused objects and quarantined lines are kept, and say so with 3.
    Ok(Status::of_run(
        stats.objects_failed,
        stats.objects_refused + stats.lines_quarantined,
    )
    .into())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn print_summary(s: &WorkerStats) {
    println!("worker drained the queue");
    println!(
        "  messages    {} received, {} deleted, {} left for retry or the dead-letter queue, {} test events",
        s.messages, s.messages_deleted, s.messages_left, s.test_events
    );
    println!(
        "  objects     {} ingested, {} already committed, {} ignored (not new exports), {} refused, {} failed",
        s.objects_ingested,
        s.objects_already_committed,
        s.objects_ignored,
        s.objects_refused,
        s.objects_failed
    );
    println!(
        "  rows        {} committed in {} commit(s); {} lines quarantined",
        s.rows_committed, s.commits, s.lines_quarantined
    );
    println!("  errors      {}", s.errors);
}
