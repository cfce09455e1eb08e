//! A batch: the unit of one commit. Objects are decoded into it from any source (a local
//! file, an S3 object), rows are buffered per type and written as Parquet into the batch's
//! staging folder, refused objects and bad lines go to its quarantine file, and
//! [`Batch::finish`] hands all of it to the table (`gdq_table::Table::commit_append`), which
//! makes it visible at once or not at all.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use gdq_schemas::{FindingRows, ParsedFinding};
use gdq_table::fault::fail_point;
use gdq_table::layout::{new_batch_id, now_ms};
use gdq_table::quarantine::QuarantineWriter;
use gdq_table::{PartitionWriter, SourceRecord, StagedAppend, StagedFile, Staging, Warehouse};

use crate::decode::{
    Event, StreamCounts, TextBuffer, for_each_finding_in, for_each_finding_in_object, maybe_gunzip,
};
use crate::error::IngestError;

/// Tuning of the row buffers and files of a batch. The defaults fit a 2-core machine.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// A type's buffered rows go to its writer at this many rows …
    pub batch_rows: usize,
    /// … or at this many bytes of JSON, whichever comes first.
    pub batch_bytes: usize,
    /// Bytes of buffered rows one worker thread may hold; beyond it the largest types go to
    /// their writers first.
    pub worker_budget_bytes: usize,
    /// Bytes all open row groups of the batch may hold (encoded and compressed); beyond it
    /// the largest are closed first. Row groups are as large as this allows, up to
    /// [`crate::writer::ROW_GROUP_ROWS`].
    pub writer_budget_bytes: usize,
    /// A data file is closed and a new one started past this size.
    pub target_file_bytes: u64,
    /// When set, findings of other accounts are quarantined instead of ingested.
    pub allowed_accounts: Option<Arc<HashSet<String>>>,
    /// Threads that decode into the batch; as many close its files at commit.
    pub threads: usize,
}

/// What [`BatchOptions::with_memory_budget`] gives when not told otherwise. Peak RSS runs at
/// about 3.2 times the budget: 144 MiB kept the 1M-finding ingest at a median 464 MiB, 478
/// at most in 9 runs (docs/benchmarks.md has the current figure).
pub const DEFAULT_MEMORY_BUDGET: usize = 144 << 20;

impl BatchOptions {
    /// Splits one memory budget: three quarters to the open row groups (their size is what
    /// makes scans fast), a quarter to the row buffers of `threads` workers.
    pub fn with_memory_budget(mut self, bytes: usize, threads: usize) -> Self {
        let bytes = bytes.max(16 << 20);
        self.threads = threads.max(1);
        self.writer_budget_bytes = bytes / 4 * 3;
        self.worker_budget_bytes = bytes / 4 / threads.max(1);
        // Small type buffers stay out of the allocator's mmap path and are reused.
        self.batch_bytes = (self.worker_budget_bytes / 4).min(8 << 20);
        self
    }
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            batch_rows: 8192,
            batch_bytes: 0,
            worker_budget_bytes: 0,
            writer_budget_bytes: 0,
            target_file_bytes: 512 << 20,
            allowed_accounts: None,
            threads: 1,
        }
        .with_memory_budget(DEFAULT_MEMORY_BUDGET, 2)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One type's writer and the memory its open row group held when last looked at.
struct WriterSlot {
    writer: Mutex<PartitionWriter>,
    memory: AtomicUsize,
}

/// The per-type writers of one batch, shared by its worker threads, within one memory
/// budget for their open row groups.
struct BatchWriters {
    staging_root: PathBuf,
    batch: String,
    target_file_bytes: u64,
    budget_bytes: usize,
    /// Sum of the slots' `memory`.
    memory: AtomicUsize,
    /// Held by the thread that is closing row groups, so the others go on writing.
    shrinking: Mutex<()>,
    writers: Mutex<HashMap<String, Arc<WriterSlot>>>,
}

impl BatchWriters {
    /// Hands `rows` to the type's writer. With `wait` false it gives up at once when another
    /// thread is writing this type, and says so (`false`): the caller keeps the rows and goes
    /// on decoding instead of sleeping on the lock (the largest type holds a fifth of all rows,
    /// so both threads often want its writer at once).
    fn write(
        &self,
        finding_type: &str,
        rows: &mut FindingRows,
        wait: bool,
    ) -> Result<bool, IngestError> {
        // Looked up before inserting: a busy writer is asked again at every row, and the
        // type's name is copied only for a new writer.
        let slot = {
            let mut map = lock(&self.writers);
            match map.get(finding_type) {
                Some(slot) => Arc::clone(slot),
                None => {
                    let slot = Arc::new(WriterSlot {
                        writer: Mutex::new(PartitionWriter::new(
                            finding_type,
                            &self.staging_root,
                            &self.batch,
                            self.target_file_bytes,
                        )),
                        memory: AtomicUsize::new(0),
                    });
                    map.insert(finding_type.to_string(), Arc::clone(&slot));
                    slot
                }
            }
        };
        {
            let mut writer = if wait {
                lock(&slot.writer)
            } else {
                match slot.writer.try_lock() {
                    Ok(writer) => writer,
                    Err(TryLockError::Poisoned(p)) => p.into_inner(),
                    Err(TryLockError::WouldBlock) => return Ok(false),
                }
            };
            writer.write(&rows.finish()?)?;
            self.account(&slot, writer.memory_size());
        }
        if self.memory.load(Ordering::Relaxed) > self.budget_bytes {
            self.shrink()?;
        }
        Ok(true)
    }

    /// Records a slot's new size; called with the slot's writer locked, so updates of one
    /// slot never interleave.
    fn account(&self, slot: &WriterSlot, now: usize) {
        let before = slot.memory.swap(now, Ordering::Relaxed);
        if now >= before {
            self.memory.fetch_add(now - before, Ordering::Relaxed);
        } else {
            self.memory.fetch_sub(before - now, Ordering::Relaxed);
        }
    }

    /// Closes the largest open row groups until a quarter of the budget is free. Only the
    /// largest types are closed (each open writer also holds ~0.5 MB that a close does not
    /// free for long: its bloom filter and encoders), so they get row groups of tens of
    /// MB and the small types stay open to the end, one row group each.
    fn shrink(&self) -> Result<(), IngestError> {
        let Ok(_shrinking) = self.shrinking.try_lock() else {
            return Ok(());
        };
        let mut slots: Vec<Arc<WriterSlot>> = lock(&self.writers).values().cloned().collect();
        slots.sort_by_key(|slot| std::cmp::Reverse(slot.memory.load(Ordering::Relaxed)));
        for slot in slots {
            if self.memory.load(Ordering::Relaxed) <= self.budget_bytes / 4 * 3 {
                break;
            }
            let mut writer = lock(&slot.writer);
            writer.flush_row_group()?;
            self.account(&slot, writer.memory_size());
        }
        Ok(())
    }

    /// Closes every file on `threads` threads: each close encodes what its open row group
    /// still buffers and waits for its file to reach the disk, and one thread alone left
    /// the other core idle for most of a second at the end of a 1M-finding ingest.
    fn finish(&self, threads: usize) -> Result<Vec<StagedFile>, IngestError> {
        let map = std::mem::take(&mut *lock(&self.writers));
        let mut writers = Vec::with_capacity(map.len());
        for (finding_type, slot) in map {
            let slot = Arc::try_unwrap(slot).map_err(|_| {
                IngestError::Internal(format!("writer of {finding_type:?} still in use at commit"))
            })?;
            let size = slot.memory.load(Ordering::Relaxed);
            writers.push((
                size,
                slot.writer.into_inner().unwrap_or_else(|p| p.into_inner()),
            ));
        }
        // Largest first, so the last one to close is a small one.
        writers.sort_by_key(|(size, _)| std::cmp::Reverse(*size));
        let queue = Mutex::new(writers.into_iter().map(|(_, writer)| writer));
        let close_all = || -> Result<Vec<StagedFile>, IngestError> {
            let mut files = Vec::new();
            loop {
                let Some(writer) = lock(&queue).next() else {
                    return Ok(files);
                };
                files.extend(writer.finish()?);
            }
        };
        let closed: Vec<Result<Vec<StagedFile>, IngestError>> = std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(close_all)).collect();
            let mut closed = vec![close_all()];
            closed.extend(helpers.into_iter().map(|helper| {
                helper.join().unwrap_or_else(|_| {
                    Err(IngestError::Internal(
                        "a file-closing thread panicked".into(),
                    ))
                })
            }));
            closed
        });
        let mut files = Vec::new();
        for part in closed {
            files.extend(part?);
        }
        self.memory.store(0, Ordering::Relaxed);
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
    /// The decoder's window, reused from one object to the next.
    text: TextBuffer,
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
        let over = |limit: usize| {
            rows.len() >= limit * self.options.batch_rows
                || rows.approx_bytes() >= limit * self.options.batch_bytes
        };
        if over(1) {
            // Past twice the batch size the rows wait for the writer rather than grow on.
            let size = rows.approx_bytes();
            if self.writers.write(finding_type, rows, over(2))? {
                self.bytes -= size;
                // A type that fills a whole batch will likely fill the next one.
                rows.reserve_finding_bytes(self.options.batch_bytes);
            }
        }
        if self.bytes > self.options.worker_budget_bytes {
            self.shrink_to(self.options.worker_budget_bytes / 2)?;
        }
        Ok(())
    }

    /// Flushes the largest buffers until at most `target` bytes are held: first those whose
    /// writer is free, then, if the budget is still exceeded (or everything must go), waiting.
    fn shrink_to(&mut self, target: usize) -> Result<(), IngestError> {
        self.write_largest(target, false)?;
        let limit = if target == 0 {
            0
        } else {
            self.options.worker_budget_bytes
        };
        if self.bytes > limit {
            self.write_largest(target, true)?;
        }
        Ok(())
    }

    fn write_largest(&mut self, target: usize, wait: bool) -> Result<(), IngestError> {
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
            if let Some(rows) = self.by_type.get_mut(&finding_type)
                && self.writers.write(&finding_type, rows, wait)?
            {
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
    staging: Staging,
    id: String,
    ingested_at_ms: i64,
    options: BatchOptions,
    writers: Arc<BatchWriters>,
    quarantine: Mutex<QuarantineWriter>,
    sources: Mutex<Vec<SourceRecord>>,
    /// Objects that failed part way: their rows must not commit.
    failed: Mutex<HashSet<String>>,
}

impl Batch {
    /// Starts a batch in a staging folder of its own.
    pub fn new(warehouse: &Warehouse, options: &BatchOptions) -> Result<Batch, IngestError> {
        let id = new_batch_id();
        let staging = warehouse.stage(&id)?;
        let staging_root = staging.dir().to_path_buf();
        let quarantine = staging_root.join("quarantine.jsonl");
        Ok(Batch {
            writers: Arc::new(BatchWriters {
                staging_root,
                batch: id.clone(),
                target_file_bytes: options.target_file_bytes,
                budget_bytes: options.writer_budget_bytes,
                memory: AtomicUsize::new(0),
                shrinking: Mutex::new(()),
                writers: Mutex::new(HashMap::new()),
            }),
            staging,
            id,
            ingested_at_ms: now_ms(),
            options: options.clone(),
            quarantine: Mutex::new(QuarantineWriter::new(&quarantine)),
            sources: Mutex::new(Vec::new()),
            failed: Mutex::new(HashSet::new()),
        })
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
            text: TextBuffer::default(),
        }
    }

    /// Records a line or object that could not be ingested.
    pub fn quarantine(
        &self,
        uri: &str,
        line: Option<u64>,
        reason: &str,
        bytes: &[u8],
    ) -> Result<(), IngestError> {
        if fail_point("quarantine-record") {
            return Err(IngestError::Internal(format!(
                "quarantine record of {uri} failed (injected fault)"
            )));
        }
        Ok(lock(&self.quarantine).record(uri, line, reason, bytes)?)
    }

    /// Decodes one object held whole in memory (gzip or plain JSON Lines) into the batch and
    /// records it as a source of this commit. A stream that breaks part way keeps what came
    /// before and is quarantined as an object with the line it broke at.
    pub fn ingest_object(
        &self,
        buffers: &mut TypeBuffers,
        uri: &str,
        source_id: &str,
        object: &[u8],
    ) -> Result<ObjectOutcome, IngestError> {
        self.ingest_text(buffers, uri, source_id, |text, on_event| {
            for_each_finding_in_object(text, object, on_event)
        })
    }

    /// [`Batch::ingest_object`] for an object read as a stream (a local file too large to
    /// hold in memory).
    pub fn ingest_stream(
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
        self.ingest_text(buffers, uri, source_id, |text, on_event| {
            for_each_finding_in(text, reader, on_event)
        })
    }

    fn ingest_text(
        &self,
        buffers: &mut TypeBuffers,
        uri: &str,
        source_id: &str,
        decode: impl FnOnce(
            &mut TextBuffer,
            &mut dyn FnMut(Event<'_, '_>),
        ) -> Result<StreamCounts, (std::io::Error, StreamCounts)>,
    ) -> Result<ObjectOutcome, IngestError> {
        let mut outcome = ObjectOutcome::default();
        let mut failure: Option<IngestError> = None;
        let mut text = std::mem::take(&mut buffers.text);
        let result = decode(&mut text, &mut |event| {
            if failure.is_some() {
                return;
            }
            let step = match event {
                Event::Finding { finding, line } => match &self.options.allowed_accounts {
                    Some(allowed) if !finding.account_id().is_some_and(|a| allowed.contains(a)) => {
                        outcome.quarantined += 1;
                        let reason = format!(
                            "account {} is not in the --account allow-list",
                            finding.account_id().unwrap_or("(none)")
                        );
                        self.quarantine(uri, Some(line), &reason, finding.json().as_bytes())
                    }
                    _ => {
                        outcome.rows += 1;
                        buffers.append(finding, uri)
                    }
                },
                Event::Bad(bad) => {
                    outcome.quarantined += 1;
                    self.quarantine(uri, Some(bad.line), &bad.reason.to_string(), &bad.bytes)
                }
            };
            if let Err(e) = step {
                failure = Some(e);
            }
        });
        buffers.text = text;
        if let Some(e) = failure {
            // Some of the object's rows may already be with the writers: the commit leaves
            // them out, so the object contributes nothing and its redelivery adds it once.
            lock(&self.failed).insert(uri.to_string());
            return Err(e);
        }
        outcome.counts = match result {
            Ok(counts) => counts,
            Err((io_error, counts)) => {
                let reason = format!("stream unreadable after line {}: {io_error}", counts.lines);
                if let Err(e) = self.quarantine(uri, None, &reason, &[]) {
                    lock(&self.failed).insert(uri.to_string());
                    return Err(e);
                }
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

    /// Closes every file and the quarantine: the batch, ready for the table to commit.
    pub fn finish(self) -> Result<StagedAppend, IngestError> {
        let Batch {
            staging,
            id,
            writers,
            quarantine,
            sources,
            failed,
            options,
            ..
        } = self;
        let files = writers.finish(options.threads)?;
        let quarantine = quarantine.into_inner().unwrap_or_else(|p| p.into_inner());
        let quarantine_path = quarantine.path().to_path_buf();
        let records = quarantine.finish()?;
        let mut sources = sources.into_inner().unwrap_or_else(|p| p.into_inner());
        sources.sort_by(|a, b| a.uri.cmp(&b.uri));
        Ok(StagedAppend {
            batch: id,
            staging,
            files,
            sources,
            failed: failed.into_inner().unwrap_or_else(|p| p.into_inner()),
            quarantine: (records > 0).then_some((quarantine_path, records)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINES: &str =
        "{\"id\":\"a\",\"type\":\"T:X/Y\"}\n{\"id\":\"b\",\"type\":\"T:X/Y\"}\nnot json\n";

    fn warehouse(dir: &std::path::Path) -> Warehouse {
        gdq_table::block_on(Warehouse::open(&dir.display().to_string())).unwrap()
    }

    #[test]
    fn a_finished_batch_holds_its_files_sources_and_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let batch = Batch::new(&warehouse(dir.path()), &BatchOptions::default()).unwrap();
        let mut buffers = batch.buffers();
        let outcome = batch
            .ingest_object(&mut buffers, "s3://b/one", "id-one", LINES.as_bytes())
            .unwrap();
        assert_eq!((outcome.rows, outcome.quarantined), (2, 1));
        buffers.flush().unwrap();
        let staged = batch.finish().unwrap();
        assert_eq!(staged.sources.len(), 1);
        assert_eq!(staged.files.iter().map(|f| f.rows).sum::<u64>(), 2);
        assert_eq!(staged.quarantine.as_ref().map(|q| q.1), Some(1));
        assert!(staged.failed.is_empty());
        assert!(staged.staging.dir().join(&staged.files[0].path).exists());
    }
}
