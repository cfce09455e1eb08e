//! A batch: the unit of one commit. Objects are decoded into it from any source (a local
//! file, an S3 object), rows are buffered per type and staged as Parquet, refused objects and
//! bad lines go to its quarantine file, and [`Batch::commit`] makes all of it visible at once.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use gdq_schemas::{FindingRows, ParsedFinding, format_rfc3339_ms};

use crate::decode::{Event, StreamCounts, for_each_finding, maybe_gunzip};
use crate::error::IngestError;
use crate::fault::crash_point;
use crate::ledger::{COMMIT_FORMAT, CommitRecord, FileRecord, SourceRecord, write_commit};
use crate::quarantine::QuarantineWriter;
use crate::warehouse::Warehouse;
use crate::writer::PartitionWriter;

/// Tuning of the row buffers and files of a batch. The defaults fit a 2-core machine.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// A type's buffered rows become a row group at this many rows …
    pub batch_rows: usize,
    /// … or at this many bytes of JSON, whichever comes first.
    pub batch_bytes: usize,
    /// Bytes of buffered rows one worker may hold; beyond it the largest types are flushed.
    pub worker_budget_bytes: usize,
    /// A data file is closed and a new one started past this size.
    pub target_file_bytes: u64,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            batch_rows: 65_536,
            batch_bytes: 32 << 20,
            worker_budget_bytes: 64 << 20,
            target_file_bytes: 512 << 20,
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Time-sortable, unique batch name: `20240102T030405Z-1a2b3c4d`.
fn new_batch_id() -> String {
    let stamp = format_rfc3339_ms(now_ms());
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The per-type writers of one batch, shared by its worker threads.
struct BatchWriters {
    staging_root: PathBuf,
    batch: String,
    target_file_bytes: u64,
    writers: Mutex<HashMap<String, Arc<Mutex<PartitionWriter>>>>,
}

impl BatchWriters {
    fn write(&self, finding_type: &str, rows: &mut FindingRows) -> Result<(), IngestError> {
        let batch = rows.finish()?;
        let writer = {
            let mut map = lock(&self.writers);
            Arc::clone(map.entry(finding_type.to_string()).or_insert_with(|| {
                Arc::new(Mutex::new(PartitionWriter::new(
                    finding_type,
                    &self.staging_root,
                    &self.batch,
                    self.target_file_bytes,
                )))
            }))
        };
        let mut writer = lock(&writer);
        writer.write(&batch)
    }

    fn finish(&self) -> Result<Vec<FileRecord>, IngestError> {
        let map = std::mem::take(&mut *lock(&self.writers));
        let mut files = Vec::new();
        for (finding_type, writer) in map {
            let writer = Arc::try_unwrap(writer)
                .map_err(|_| {
                    IngestError::Internal(format!(
                        "writer of {finding_type:?} still in use at commit"
                    ))
                })?
                .into_inner()
                .unwrap_or_else(|p| p.into_inner());
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

/// One worker's buffered rows, per type, within a memory budget.
pub struct TypeBuffers {
    writers: Arc<BatchWriters>,
    options: BatchOptions,
    ingested_at_ms: i64,
    by_type: HashMap<String, FindingRows>,
    bytes: usize,
}

impl TypeBuffers {
    fn append(&mut self, finding: &ParsedFinding<'_>, source: &str) -> Result<(), IngestError> {
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

    /// Writes every buffered row out.
    pub fn flush(&mut self) -> Result<(), IngestError> {
        self.shrink_to(0)?;
        self.by_type.clear();
        self.bytes = 0;
        Ok(())
    }
}

/// What one object gave.
#[derive(Debug, Default, Clone)]
pub struct ObjectOutcome {
    pub rows: u64,
    pub quarantined: u64,
    pub counts: StreamCounts,
    /// Set when the stream broke part way: the rows before the break are in.
    pub error: Option<String>,
}

/// One commit's worth of objects, being staged.
pub struct Batch {
    warehouse: Warehouse,
    id: String,
    staging_root: PathBuf,
    ingested_at_ms: i64,
    options: BatchOptions,
    writers: Arc<BatchWriters>,
    quarantine: Mutex<QuarantineWriter>,
    sources: Mutex<Vec<SourceRecord>>,
}

impl Batch {
    pub fn new(warehouse: &Warehouse, options: &BatchOptions) -> Batch {
        let id = new_batch_id();
        let staging_root = warehouse.staging_dir(&id);
        let quarantine = warehouse.quarantine_path(&id);
        let quarantine = staging_root.join(
            quarantine
                .strip_prefix(warehouse.root())
                .unwrap_or(&quarantine),
        );
        Batch {
            warehouse: warehouse.clone(),
            writers: Arc::new(BatchWriters {
                staging_root: staging_root.clone(),
                batch: id.clone(),
                target_file_bytes: options.target_file_bytes,
                writers: Mutex::new(HashMap::new()),
            }),
            id,
            staging_root,
            ingested_at_ms: now_ms(),
            options: options.clone(),
            quarantine: Mutex::new(QuarantineWriter::new(&quarantine)),
            sources: Mutex::new(Vec::new()),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Row buffers for one worker thread; flush them before [`Batch::commit`].
    pub fn buffers(&self) -> TypeBuffers {
        TypeBuffers {
            writers: Arc::clone(&self.writers),
            options: self.options.clone(),
            ingested_at_ms: self.ingested_at_ms,
            by_type: HashMap::new(),
            bytes: 0,
        }
    }

    /// Objects recorded so far.
    pub fn sources(&self) -> usize {
        lock(&self.sources).len()
    }

    /// Records a line or object that could not be ingested.
    pub fn quarantine(
        &self,
        uri: &str,
        line: Option<u64>,
        reason: &str,
        bytes: &[u8],
    ) -> Result<(), IngestError> {
        lock(&self.quarantine).record(uri, line, reason, bytes)
    }

    /// Decodes one object (gzip or plain JSON Lines) into the batch and records it as a
    /// source of this commit. A stream that breaks part way keeps what came before and is
    /// quarantined as an object with the line it broke at.
    pub fn ingest_object(
        &self,
        buffers: &mut TypeBuffers,
        uri: &str,
        source_id: &str,
        input: impl Read,
    ) -> Result<ObjectOutcome, IngestError> {
        let reader = maybe_gunzip(input).map_err(|source| IngestError::Object {
            uri: uri.to_string(),
            source,
        })?;
        let mut outcome = ObjectOutcome::default();
        let mut failure: Option<IngestError> = None;
        let result = for_each_finding(reader, |event| {
            if failure.is_some() {
                return;
            }
            let step = match event {
                Event::Finding { finding, .. } => {
                    outcome.rows += 1;
                    buffers.append(finding, uri)
                }
                Event::Bad(bad) => {
                    outcome.quarantined += 1;
                    self.quarantine(uri, Some(bad.line), &bad.reason.to_string(), &bad.bytes)
                }
            };
            if let Err(e) = step {
                failure = Some(e);
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        outcome.counts = match result {
            Ok(counts) => counts,
            Err((io_error, counts)) => {
                let reason = format!("stream unreadable after line {}: {io_error}", counts.lines);
                self.quarantine(uri, None, &reason, &[])?;
                outcome.error = Some(reason);
                counts
            }
        };
        lock(&self.sources).push(SourceRecord {
            id: source_id.to_string(),
            uri: uri.to_string(),
            rows: outcome.rows,
            quarantined: outcome.quarantined,
            error: outcome.error.clone(),
        });
        Ok(outcome)
    }

    /// Writes every staged file, then the commit record (the commit point), then publishes.
    /// Returns `None` when the batch holds nothing (no object, no quarantine record).
    pub fn commit(self) -> Result<Option<CommitRecord>, IngestError> {
        let Batch {
            warehouse,
            id,
            staging_root,
            writers,
            quarantine,
            sources,
            ..
        } = self;
        let files = writers.finish()?;
        let quarantined = quarantine
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .finish()?;
        let mut sources = sources.into_inner().unwrap_or_else(|p| p.into_inner());
        if sources.is_empty() && quarantined == 0 {
            if staging_root.exists() {
                std::fs::remove_dir_all(&staging_root)
                    .map_err(IngestError::warehouse(&staging_root))?;
            }
            return Ok(None);
        }
        sources.sort_by(|a, b| a.uri.cmp(&b.uri));
        let record = CommitRecord {
            format: COMMIT_FORMAT,
            batch: id,
            committed_at: format_rfc3339_ms(now_ms()),
            sources,
            files,
        };
        crash_point("before-commit");
        write_commit(&warehouse.commits_dir(), &record)?;
        crash_point("after-commit");
        warehouse.publish(&record)?;
        Ok(Some(record))
    }
}
