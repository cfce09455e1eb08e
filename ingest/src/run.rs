//! A whole ingest of local export files: discover, skip what the ledger holds, decode and
//! normalize on all cores, stage Parquet per type, commit, publish.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gdq_schemas::{FindingRows, format_rfc3339_ms};

use crate::decode::{Event, for_each_finding, maybe_gunzip};
use crate::error::IngestError;
use crate::fault::crash_point;
use crate::ledger::{COMMIT_FORMAT, CommitRecord, FileRecord, Ledger, SourceRecord, write_commit};
use crate::quarantine::QuarantineWriter;
use crate::source::{LocalExport, content_source_id, discover};
use crate::warehouse::{Recovery, Warehouse};
use crate::writer::PartitionWriter;

/// Tuning of an ingest run. The defaults fit a 2-core machine with room to spare.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Worker threads decoding objects (default: the number of cores).
    pub threads: usize,
    /// A type's buffered rows become a row group at this many rows …
    pub batch_rows: usize,
    /// … or at this many bytes of JSON, whichever comes first.
    pub batch_bytes: usize,
    /// Bytes of buffered rows one worker may hold; beyond it the largest types are flushed.
    pub worker_budget_bytes: usize,
    /// A data file is closed and a new one started past this size.
    pub target_file_bytes: u64,
    /// Input bytes (as stored, compressed) covered by one commit: bounds the work a crash
    /// can lose, at the price of one more file per type per commit.
    pub commit_input_bytes: u64,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            batch_rows: 65_536,
            batch_bytes: 32 << 20,
            worker_budget_bytes: 64 << 20,
            target_file_bytes: 512 << 20,
            commit_input_bytes: 4 << 30,
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
        self.lines_quarantined > 0 || self.objects_partial > 0
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Time-sortable, unique batch name: `20240102T030405Z-1a2b3c4d`.
fn new_batch_id() -> String {
    let ms = now_ms();
    let stamp = format_rfc3339_ms(ms);
    let compact: String = stamp[..19]
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let salt = xxhash_rust::xxh3::xxh3_64(format!("{nanos}-{}", std::process::id()).as_bytes());
    format!("{compact}Z-{:08x}", salt as u32)
}

/// The per-type writers of one batch, shared by the worker threads.
struct BatchWriters {
    staging_root: PathBuf,
    batch: String,
    target_file_bytes: u64,
    writers: Mutex<HashMap<String, Arc<Mutex<PartitionWriter>>>>,
}

impl BatchWriters {
    fn writer(&self, finding_type: &str) -> Arc<Mutex<PartitionWriter>> {
        let mut map = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(finding_type.to_string()).or_insert_with(|| {
            Arc::new(Mutex::new(PartitionWriter::new(
                finding_type,
                &self.staging_root,
                &self.batch,
                self.target_file_bytes,
            )))
        }))
    }

    fn write(&self, finding_type: &str, rows: &mut FindingRows) -> Result<(), IngestError> {
        let batch = rows.finish()?;
        let writer = self.writer(finding_type);
        let mut writer = writer.lock().unwrap_or_else(|p| p.into_inner());
        writer.write(&batch)
    }

    fn finish(self) -> Result<Vec<FileRecord>, IngestError> {
        let map = self.writers.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut files = Vec::new();
        for (_, writer) in map {
            let writer = Arc::try_unwrap(writer).map_err(|_| {
                IngestError::warehouse(&self.staging_root)(std::io::Error::other(
                    "writer still shared",
                ))
            })?;
            let writer = writer.into_inner().unwrap_or_else(|p| p.into_inner());
            files.extend(writer.finish()?.into_iter().map(|f| FileRecord {
                path: f.relative_path,
                rows: f.rows,
                bytes: f.bytes,
            }));
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }
}

/// One worker's buffered rows, per type, with a memory budget.
struct TypeBuffers<'w> {
    writers: &'w BatchWriters,
    options: &'w IngestOptions,
    ingested_at_ms: i64,
    by_type: HashMap<String, FindingRows>,
    bytes: usize,
}

impl<'w> TypeBuffers<'w> {
    fn new(writers: &'w BatchWriters, options: &'w IngestOptions, ingested_at_ms: i64) -> Self {
        TypeBuffers {
            writers,
            options,
            ingested_at_ms,
            by_type: HashMap::new(),
            bytes: 0,
        }
    }

    fn append(
        &mut self,
        finding: &gdq_schemas::ParsedFinding<'_>,
        source: &str,
    ) -> Result<(), IngestError> {
        let finding_type = finding.finding_type();
        let rows = match self.by_type.get_mut(finding_type) {
            Some(rows) => rows,
            None => self
                .by_type
                .entry(finding_type.to_string())
                .or_insert_with(|| FindingRows::new(self.ingested_at_ms)),
        };
        let before = rows.approx_bytes();
        rows.append(finding, source);
        self.bytes += rows.approx_bytes() - before;
        if rows.len() >= self.options.batch_rows || rows.approx_bytes() >= self.options.batch_bytes
        {
            self.bytes -= rows.approx_bytes();
            self.writers.write(finding_type, rows)?;
        }
        if self.bytes > self.options.worker_budget_bytes {
            self.shrink_to(self.options.worker_budget_bytes / 2)?;
        }
        Ok(())
    }

    /// Flushes the largest buffers until at most `target` bytes are held.
    fn shrink_to(&mut self, target: usize) -> Result<(), IngestError> {
        let mut sizes: Vec<(usize, String)> = self
            .by_type
            .iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(t, r)| (r.approx_bytes(), t.clone()))
            .collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        for (size, finding_type) in sizes {
            if self.bytes <= target {
                break;
            }
            if let Some(rows) = self.by_type.get_mut(&finding_type) {
                self.writers.write(&finding_type, rows)?;
                self.bytes -= size;
            }
        }
        Ok(())
    }

    fn flush_all(&mut self) -> Result<(), IngestError> {
        self.shrink_to(0)?;
        self.by_type.clear();
        Ok(())
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

/// State shared by the workers of one batch.
struct BatchRun<'a> {
    exports: &'a [LocalExport],
    next: AtomicUsize,
    ledger: &'a Ledger,
    claimed: Mutex<HashSet<String>>,
    writers: BatchWriters,
    quarantine: Mutex<QuarantineWriter>,
    sources: Mutex<Vec<SourceRecord>>,
    problems: Mutex<Vec<String>>,
    counters: &'a Counters,
    options: &'a IngestOptions,
    ingested_at_ms: i64,
}

impl BatchRun<'_> {
    fn quarantine(
        &self,
        source: &str,
        line: Option<u64>,
        reason: &str,
        bytes: &[u8],
    ) -> Result<(), IngestError> {
        self.counters
            .quarantined
            .fetch_add(u64::from(line.is_some()), Ordering::Relaxed);
        self.quarantine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(source, line, reason, bytes)
    }

    fn problem(&self, line: String) {
        self.problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    fn work(&self) -> Result<(), IngestError> {
        let mut buffers = TypeBuffers::new(&self.writers, self.options, self.ingested_at_ms);
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(export) = self.exports.get(i) else {
                break;
            };
            self.ingest_object(export, &mut buffers)?;
        }
        buffers.flush_all()
    }

    fn ingest_object(
        &self,
        export: &LocalExport,
        buffers: &mut TypeBuffers<'_>,
    ) -> Result<(), IngestError> {
        let source_id = match content_source_id(&export.path) {
            Ok(id) => id,
            Err(e) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                self.problem(e.to_string());
                return Ok(());
            }
        };
        let fresh = !self.ledger.contains(&source_id)
            && self
                .claimed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(source_id.clone());
        if !fresh {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let file = match std::fs::File::open(&export.path).and_then(maybe_gunzip) {
            Ok(reader) => reader,
            Err(source) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                self.problem(
                    IngestError::Input {
                        path: export.path.clone(),
                        source,
                    }
                    .to_string(),
                );
                return Ok(());
            }
        };
        let mut rows = 0u64;
        let mut quarantined = 0u64;
        let mut failure: Option<IngestError> = None;
        let result = for_each_finding(file, |event| {
            if failure.is_some() {
                return;
            }
            let outcome = match event {
                Event::Finding { finding, .. } => {
                    rows += 1;
                    buffers.append(finding, &export.uri)
                }
                Event::Bad(bad) => {
                    quarantined += 1;
                    self.quarantine(
                        &export.uri,
                        Some(bad.line),
                        &bad.reason.to_string(),
                        &bad.bytes,
                    )
                }
            };
            if let Err(e) = outcome {
                failure = Some(e);
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        let (counts, error) = match result {
            Ok(counts) => (counts, None),
            Err((io_error, counts)) => {
                let reason = format!("stream unreadable after line {}: {io_error}", counts.lines);
                self.quarantine(&export.uri, None, &reason, &[])?;
                self.counters.partial.fetch_add(1, Ordering::Relaxed);
                self.problem(format!(
                    "{}: {reason} ({rows} rows before it were ingested)",
                    export.path.display()
                ));
                (counts, Some(reason))
            }
        };
        self.counters.rows.fetch_add(rows, Ordering::Relaxed);
        self.counters
            .blank
            .fetch_add(counts.blank_lines, Ordering::Relaxed);
        self.counters
            .bytes_stored
            .fetch_add(export.size, Ordering::Relaxed);
        self.counters
            .bytes_json
            .fetch_add(counts.bytes, Ordering::Relaxed);
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(SourceRecord {
                id: source_id,
                uri: export.uri.clone(),
                rows,
                quarantined,
                error,
            });
        Ok(())
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

/// Ingests export files and folders into a local warehouse. Returns an error only for what
/// stops the whole run (a missing input path, an unwritable warehouse); objects that cannot
/// be read are counted and listed in the summary, and the rest is ingested.
pub fn ingest_local(
    warehouse: &Warehouse,
    inputs: &[PathBuf],
    options: &IngestOptions,
) -> Result<IngestSummary, IngestError> {
    let started = Instant::now();
    let discovery = discover(inputs)?;
    let lock = warehouse.lock()?;
    let recovery = warehouse.recover(&lock)?;
    let (mut ledger, _) = Ledger::load(&warehouse.commits_dir())?;
    let counters = Counters::default();
    let mut summary = IngestSummary {
        objects: discovery.exports.len() as u64,
        ignored_files: discovery.ignored_files,
        recovery,
        ..IngestSummary::default()
    };

    for group in commit_groups(&discovery.exports, options.commit_input_bytes.max(1)) {
        let batch = new_batch_id();
        let staging_root = warehouse.staging_dir(&batch);
        let quarantine_rel = warehouse.quarantine_path(&batch);
        let quarantine_rel = quarantine_rel
            .strip_prefix(warehouse.root())
            .unwrap_or(&quarantine_rel)
            .to_path_buf();
        let ingested_at_ms = now_ms();
        let run = BatchRun {
            exports: group,
            next: AtomicUsize::new(0),
            ledger: &ledger,
            claimed: Mutex::new(HashSet::new()),
            writers: BatchWriters {
                staging_root: staging_root.clone(),
                batch: batch.clone(),
                target_file_bytes: options.target_file_bytes,
                writers: Mutex::new(HashMap::new()),
            },
            quarantine: Mutex::new(QuarantineWriter::new(&staging_root.join(&quarantine_rel))),
            sources: Mutex::new(Vec::new()),
            problems: Mutex::new(Vec::new()),
            counters: &counters,
            options,
            ingested_at_ms,
        };
        let threads = options.threads.clamp(1, group.len().max(1));
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads).map(|_| scope.spawn(|| run.work())).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(IngestError::warehouse(&staging_root)(
                            std::io::Error::other("worker panicked"),
                        ))
                    })
                })
                .collect::<Result<Vec<()>, IngestError>>()
        })?;

        let BatchRun {
            writers,
            quarantine,
            sources,
            problems,
            ..
        } = run;
        let files = writers.finish()?;
        quarantine
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .finish()?;
        summary
            .problems
            .extend(problems.into_inner().unwrap_or_else(|p| p.into_inner()));
        let mut sources = sources.into_inner().unwrap_or_else(|p| p.into_inner());
        if sources.is_empty() {
            if staging_root.exists() {
                std::fs::remove_dir_all(&staging_root)
                    .map_err(IngestError::warehouse(&staging_root))?;
            }
            continue;
        }
        sources.sort_by(|a, b| a.uri.cmp(&b.uri));
        summary.files_written += files.len() as u64;
        let record = CommitRecord {
            format: COMMIT_FORMAT,
            batch: batch.clone(),
            committed_at: format_rfc3339_ms(now_ms()),
            sources,
            files,
        };
        crash_point("before-commit");
        write_commit(&warehouse.commits_dir(), &record)?;
        crash_point("after-commit");
        warehouse.publish(&record)?;
        ledger.add(&record);
        summary.commits += 1;
        summary.objects_ingested += record.sources.len() as u64;
    }

    summary.rows = counters.rows.load(Ordering::Relaxed);
    summary.lines_quarantined = counters.quarantined.load(Ordering::Relaxed);
    summary.blank_lines = counters.blank.load(Ordering::Relaxed);
    summary.bytes_stored = counters.bytes_stored.load(Ordering::Relaxed);
    summary.bytes_json = counters.bytes_json.load(Ordering::Relaxed);
    summary.objects_skipped = counters.skipped.load(Ordering::Relaxed);
    summary.objects_partial = counters.partial.load(Ordering::Relaxed);
    summary.objects_failed = counters.failed.load(Ordering::Relaxed);
    summary.elapsed = started.elapsed();
    drop(lock);
    Ok(summary)
}
