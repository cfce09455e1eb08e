//! `gdq ingest s3://bucket[/prefix]`: a scheduled or backfill run over an export bucket.
//!
//! It lists only the folders the filters select ([`crate::listing`]), skips every object the
//! ledger already holds without downloading it (so it never duplicates what the SQS worker
//! committed, and after a worker outage it picks up exactly the missing objects), then
//! fetches, checks and decodes the rest concurrently through the worker's object path and
//! commits in groups of `commit_input_bytes`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::info;

use gdq_table::{Ledger, S3Location, Table, Warehouse};
use tokio::sync::RwLock;

use crate::batch::{BatchOptions, DEFAULT_MEMORY_BUDGET};
use crate::error::IngestError;
use crate::listing::{ExportFilter, ListError, ListedExport, list_exports};
use crate::notification::ObjectEvent;
use crate::progress::Progress;
use crate::run::IngestSummary;
use crate::s3::{AwsClients, s3_source_id};
use crate::worker::{
    ObjectResult, SharedTable, WorkerOptions, commit_shared, new_shared, process_object,
};

/// How an S3 ingest runs.
#[derive(Debug, Clone)]
pub struct S3IngestOptions {
    pub filter: ExportFilter,
    /// Objects must be encrypted with this KMS key (ARN or key id).
    pub kms_key: Option<String>,
    /// Objects fetched and decoded at once.
    pub concurrency: usize,
    /// Stored bytes of input covered by one commit.
    pub commit_input_bytes: u64,
    /// List and compare with the ledger only.
    pub dry_run: bool,
    pub batch: BatchOptions,
    pub progress: Arc<Progress>,
}

impl Default for S3IngestOptions {
    fn default() -> Self {
        let concurrency = 16;
        S3IngestOptions {
            filter: ExportFilter::default(),
            kms_key: None,
            concurrency,
            commit_input_bytes: 1 << 30,
            dry_run: false,
            // Up to `concurrency` objects are decoded at once, each into its own row buffers.
            batch: BatchOptions::default().with_memory_budget(DEFAULT_MEMORY_BUDGET, concurrency),
            progress: Arc::default(),
        }
    }
}

/// What an S3 ingest found and did.
#[derive(Debug, Default)]
pub struct S3IngestReport {
    pub summary: IngestSummary,
    /// Folders listed (the walk never lists outside the filters).
    pub prefixes_listed: Vec<String>,
    /// Objects not yet in the warehouse: what was (or, with `dry_run`, would be) ingested.
    pub new_objects: Vec<ListedExport>,
}

/// Why an S3 ingest could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum S3IngestError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    List(#[from] ListError),
}

/// Splits objects into commit groups of about `limit` stored bytes.
fn commit_groups(objects: &[ListedExport], limit: u64) -> Vec<&[ListedExport]> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, o) in objects.iter().enumerate() {
        if i > start && bytes + o.size > limit {
            groups.push(&objects[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += o.size;
    }
    if start < objects.len() {
        groups.push(&objects[start..]);
    }
    groups
}

/// Ingests the export objects under `source` (`s3://bucket[/prefix]`) that the filter
/// selects and the warehouse does not hold yet.
pub async fn ingest_s3(
    clients: &AwsClients,
    warehouse: &Warehouse,
    source: &S3Location,
    options: &S3IngestOptions,
) -> Result<S3IngestReport, S3IngestError> {
    let started = Instant::now();
    let listing =
        list_exports(&clients.s3, &source.bucket, &source.prefix, &options.filter).await?;
    // A dry run writes nothing: it reads the ledger of an existing table, if any.
    let table = if options.dry_run {
        match warehouse.snapshot().await.map_err(IngestError::from)? {
            Some(_) => Some(Table::load(warehouse).await.map_err(IngestError::from)?),
            None => None,
        }
    } else {
        Some(Table::open(warehouse).await.map_err(IngestError::from)?)
    };
    let empty = Ledger::default();
    let ledger = table.as_ref().map_or(&empty, Table::ledger);
    let recovery = table
        .as_ref()
        .map(|t| t.recovery().clone())
        .unwrap_or_default();
    let (new_objects, already): (Vec<ListedExport>, Vec<ListedExport>) = listing
        .exports
        .into_iter()
        .partition(|o| !ledger.contains_source(&s3_source_id(&source.bucket, &o.key, &o.etag)));
    let mut report = S3IngestReport {
        summary: IngestSummary {
            objects: (new_objects.len() + already.len()) as u64,
            objects_skipped: already.len() as u64,
            recovery,
            ..IngestSummary::default()
        },
        prefixes_listed: listing.prefixes_listed,
        new_objects,
    };
    info!(
        listed_folders = report.prefixes_listed.len(),
        new = report.new_objects.len(),
        already_committed = already.len(),
        "listing done"
    );
    let Some(table) = table.filter(|_| !options.dry_run) else {
        report.summary.elapsed = started.elapsed();
        return Ok(report);
    };
    options.progress.set_total(
        report.new_objects.len() as u64,
        report.new_objects.iter().map(|o| o.size).sum(),
    );

    let table: SharedTable = Arc::new(RwLock::new(table));
    let worker_options = WorkerOptions {
        kms_key: options.kms_key.clone(),
        concurrency: options.concurrency.max(1),
        batch: options.batch.clone(),
        ..WorkerOptions::new(String::new())
    };
    let summary = &mut report.summary;
    for group in commit_groups(&report.new_objects, options.commit_input_bytes.max(1)) {
        let shared = new_shared(clients, &worker_options, warehouse)?;
        let semaphore = Arc::new(Semaphore::new(worker_options.concurrency));
        let mut tasks = JoinSet::new();
        for object in group {
            let permit = Arc::clone(&semaphore)
                .acquire_owned()
                .await
                .map_err(|e| IngestError::Internal(e.to_string()))?;
            let event = ObjectEvent {
                bucket: source.bucket.clone(),
                key: object.key.clone(),
                etag: Some(object.etag.clone()),
                size: Some(object.size),
                event_name: "ObjectCreated:Listed".into(),
            };
            let (shared, table) = (Arc::clone(&shared), Arc::clone(&table));
            let progress = Arc::clone(&options.progress);
            let size = object.size;
            tasks.spawn(async move {
                let result = process_object(shared, table, event).await;
                let rows = match &result {
                    ObjectResult::Ingested { rows, .. } => *rows,
                    _ => 0,
                };
                progress.object_done(size, rows);
                drop(permit);
                (size, result)
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (size, result) = done.map_err(|e| IngestError::Internal(e.to_string()))?;
            match result {
                ObjectResult::Ingested { rows, quarantined } => {
                    summary.rows += rows;
                    summary.lines_quarantined += quarantined;
                    summary.bytes_stored += size;
                }
                ObjectResult::AlreadyCommitted => summary.objects_skipped += 1,
                ObjectResult::Refused => summary.objects_refused += 1,
                ObjectResult::Failed(problem) => {
                    summary.objects_failed += 1;
                    summary.problems.push(problem);
                }
            }
        }
        if let Some(committed) = commit_shared(shared, &table).await? {
            summary.commits += 1;
            summary.files_written += committed.files.len() as u64;
            summary.objects_ingested += committed.sources.len() as u64;
            summary.objects_skipped += committed.already_committed.len() as u64;
            summary.objects_partial += committed
                .sources
                .iter()
                .filter(|s| s.error.is_some())
                .count() as u64;
            info!(attempt = %committed.attempt, version = committed.version, objects = committed.sources.len(), "committed");
        }
    }
    summary.elapsed = started.elapsed();
    Ok(report)
}

/// Parses `--since`/`--until`: a date (`2024-05-01`) or a time ago (`3d`, `36h`), in UTC.
pub fn parse_day(text: &str) -> Option<crate::listing::Day> {
    if let Some(day) = crate::listing::Day::parse(text) {
        return Some(day);
    }
    let ago: Duration = humantime::parse_duration(text).ok()?;
    let now = gdq_table::layout::now_ms();
    Some(crate::listing::Day::from_epoch_ms(
        now - ago.as_millis() as i64,
    ))
}
