//! A whole ingest of local export files: discover, skip what the ledger holds, decode and
//! normalize on all cores into batches, and have the table commit each.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gdq_table::{Ledger, Recovery, Table, Warehouse};

use crate::batch::{Batch, BatchOptions, TypeBuffers};
use crate::error::IngestError;
use crate::progress::Progress;
use crate::source::{LocalExport, content_id, content_source_id, discover, read_export};

/// Exports up to this size are read once, whole, for both their identity and their rows
/// (GuardDuty's are well under 1 MiB); larger files are streamed twice so memory stays
/// bounded whatever a folder holds.
const READ_WHOLE_BYTES: u64 = 16 << 20;

/// Tuning of an ingest run.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Worker threads decoding objects (default: the number of cores).
    pub threads: usize,
    /// Input bytes (as stored, compressed) covered by one commit: bounds the work a crash
    /// can lose, at the price of one more file per type per commit.
    pub commit_input_bytes: u64,
    pub batch: BatchOptions,
    /// Live counters for a progress display.
    pub progress: Arc<Progress>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            commit_input_bytes: 4 << 30,
            batch: BatchOptions::default(),
            progress: Arc::default(),
        }
    }
}

/// What an ingest run did.
#[derive(Debug, Default, Clone)]
pub struct IngestSummary {
    /// Export objects found.
    pub objects: u64,
    /// Objects ingested in this run (including those read only in part).
    pub objects_ingested: u64,
    /// Objects skipped because the warehouse already holds them (or an identical copy).
    pub objects_skipped: u64,
    /// Objects read only in part (corrupt stream): rows before the error are in.
    pub objects_partial: u64,
    /// Objects that could not be read at all; nothing of them was committed.
    pub objects_failed: u64,
    /// Objects refused before reading (not SSE-KMS, wrong key); recorded in the quarantine.
    pub objects_refused: u64,
    /// Files under the given folders that are not exports.
    pub ignored_files: u64,
    /// Findings read and committed (rows written).
    pub rows: u64,
    pub lines_quarantined: u64,
    pub blank_lines: u64,
    /// Bytes read from the objects as stored, and after decompression.
    pub bytes_stored: u64,
    pub bytes_json: u64,
    pub files_written: u64,
    pub commits: u64,
    pub recovery: Recovery,
    /// One line per object that failed or was read in part.
    pub problems: Vec<String>,
    pub elapsed: Duration,
}

impl IngestSummary {
    /// Something did not make it into the table as rows (quarantined lines or objects).
    pub fn has_quarantine(&self) -> bool {
        self.lines_quarantined > 0 || self.objects_partial > 0 || self.objects_refused > 0
    }
}

/// Counters shared by the workers of one run.
#[derive(Default)]
struct Counters {
    rows: AtomicU64,
    quarantined: AtomicU64,
    blank: AtomicU64,
    bytes_stored: AtomicU64,
    bytes_json: AtomicU64,
    skipped: AtomicU64,
    partial: AtomicU64,
    failed: AtomicU64,
}

/// The work of one batch, shared by its threads.
struct LocalBatch<'a> {
    exports: &'a [LocalExport],
    next: AtomicUsize,
    ledger: &'a Ledger,
    claimed: &'a Mutex<HashSet<String>>,
    progress: &'a Progress,
    batch: Batch,
    problems: Mutex<Vec<String>>,
    counters: &'a Counters,
}

impl LocalBatch<'_> {
    fn problem(&self, line: String) {
        self.problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    fn work(&self) -> Result<(), IngestError> {
        let mut buffers = self.batch.buffers();
        let mut bytes = Vec::new();
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(export) = self.exports.get(i) else {
                break;
            };
            let rows = self.ingest_object(export, &mut buffers, &mut bytes)?;
            self.progress.object_done(export.size, rows);
        }
        buffers.flush()
    }

    /// Ingests one export; `bytes` is this thread's reused file buffer.
    fn ingest_object(
        &self,
        export: &LocalExport,
        buffers: &mut TypeBuffers,
        bytes: &mut Vec<u8>,
    ) -> Result<u64, IngestError> {
        let failed = |e: IngestError| {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            self.problem(e.to_string());
        };
        let whole = export.size <= READ_WHOLE_BYTES;
        let identified = if whole {
            read_export(&export.path, bytes).map(|()| content_id(bytes))
        } else {
            content_source_id(&export.path)
        };
        let source_id = match identified {
            Ok(id) => id,
            Err(e) => {
                failed(e);
                return Ok(0);
            }
        };
        let fresh = !self.ledger.contains_source(&source_id)
            && self
                .claimed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(source_id.clone());
        if !fresh {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(0);
        }
        let ingested = if whole {
            self.batch
                .ingest_object(buffers, &export.uri, &source_id, &bytes[..])
        } else {
            match std::fs::File::open(&export.path) {
                Ok(file) => self
                    .batch
                    .ingest_stream(buffers, &export.uri, &source_id, file),
                Err(source) => {
                    failed(IngestError::Input {
                        path: export.path.clone(),
                        source,
                    });
                    return Ok(0);
                }
            }
        };
        let outcome = match ingested {
            Ok(outcome) => outcome,
            Err(IngestError::Object { source, .. }) => {
                failed(IngestError::Input {
                    path: export.path.clone(),
                    source,
                });
                return Ok(0);
            }
            // The batch leaves the object's rows out; a later run ingests it again.
            Err(e) => {
                failed(IngestError::Internal(format!(
                    "{}: {e}; nothing of it was committed",
                    export.path.display()
                )));
                return Ok(0);
            }
        };
        if let Some(reason) = &outcome.error {
            self.counters.partial.fetch_add(1, Ordering::Relaxed);
            self.problem(format!(
                "{}: {reason} ({} rows before it were ingested)",
                export.path.display(),
                outcome.rows
            ));
        }
        self.counters
            .rows
            .fetch_add(outcome.rows, Ordering::Relaxed);
        self.counters
            .quarantined
            .fetch_add(outcome.quarantined, Ordering::Relaxed);
        self.counters
            .blank
            .fetch_add(outcome.counts.blank_lines, Ordering::Relaxed);
        self.counters
            .bytes_stored
            .fetch_add(export.size, Ordering::Relaxed);
        self.counters
            .bytes_json
            .fetch_add(outcome.counts.bytes, Ordering::Relaxed);
        Ok(outcome.rows)
    }
}

/// Splits the exports into commit-sized groups by stored size.
fn commit_groups(exports: &[LocalExport], limit: u64) -> Vec<&[LocalExport]> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, e) in exports.iter().enumerate() {
        if i > start && bytes + e.size > limit {
            groups.push(&exports[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += e.size;
    }
    if start < exports.len() {
        groups.push(&exports[start..]);
    }
    groups
}

/// Ingests export files and folders into a warehouse (local or S3). Returns an error only
/// for what stops the whole run (a missing input path, an unwritable warehouse, a failed
/// commit); objects that cannot be read are counted and listed in the summary, and the rest
/// is ingested. Call it from a thread that is not running async code.
pub fn ingest_local(
    warehouse: &Warehouse,
    inputs: &[PathBuf],
    options: &IngestOptions,
) -> Result<IngestSummary, IngestError> {
    let started = Instant::now();
    let discovery = discover(inputs)?;
    let mut table = gdq_table::block_on(Table::open(warehouse))?;
    let recovery = table.recovery().clone();
    let counters = Counters::default();
    let claimed = Mutex::new(HashSet::new());
    let mut summary = IngestSummary {
        objects: discovery.exports.len() as u64,
        ignored_files: discovery.ignored_files,
        recovery,
        ..IngestSummary::default()
    };
    options.progress.set_total(
        discovery.exports.len() as u64,
        discovery.exports.iter().map(|e| e.size).sum(),
    );

    for group in commit_groups(&discovery.exports, options.commit_input_bytes.max(1)) {
        let run = LocalBatch {
            exports: group,
            next: AtomicUsize::new(0),
            ledger: table.ledger(),
            claimed: &claimed,
            progress: &options.progress,
            batch: Batch::new(warehouse, &options.batch)?,
            problems: Mutex::new(Vec::new()),
            counters: &counters,
        };
        let threads = options.threads.clamp(1, group.len().max(1));
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads).map(|_| scope.spawn(|| run.work())).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(IngestError::Internal("an ingest thread panicked".into()))
                    })
                })
                .collect::<Result<Vec<()>, IngestError>>()
        })?;
        let LocalBatch {
            batch, problems, ..
        } = run;
        summary
            .problems
            .extend(problems.into_inner().unwrap_or_else(|p| p.into_inner()));
        let staged = batch.finish()?;
        if let Some(committed) = gdq_table::block_on(table.commit_append(staged))? {
            summary.files_written += committed.files.len() as u64;
            summary.commits += 1;
            summary.objects_ingested += committed.sources.len() as u64;
            summary.objects_skipped += committed.already_committed.len() as u64;
            summary.rows += committed.rows();
        }
    }

    summary.lines_quarantined = counters.quarantined.load(Ordering::Relaxed);
    summary.blank_lines = counters.blank.load(Ordering::Relaxed);
    summary.bytes_stored = counters.bytes_stored.load(Ordering::Relaxed);
    summary.bytes_json = counters.bytes_json.load(Ordering::Relaxed);
    summary.objects_skipped += counters.skipped.load(Ordering::Relaxed);
    summary.objects_partial = counters.partial.load(Ordering::Relaxed);
    summary.objects_failed = counters.failed.load(Ordering::Relaxed);
    summary.elapsed = started.elapsed();
    Ok(summary)
}
