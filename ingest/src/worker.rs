//! The SQS worker: S3 object notifications in, committed rows out, exactly once.
//!
//! Each round receives up to `concurrency` messages (10 per call, long polling), fetches the
//! objects they name concurrently, checks their encryption, and decodes them into the
//! current [`Batch`]. Messages are deleted only after the batch holding their rows commits;
//! until then a heartbeat keeps them invisible. A redelivered message, a duplicate
//! notification or a later backfill finds its object in the ledger and adds nothing. A
//! message whose object is refused (not SSE-KMS, wrong key, account not allowed) or cannot be
//! fetched is left on the queue, so the queue's redrive policy moves it to the dead-letter
//! queue; the refusal is recorded in the quarantine.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    QueueAttributeName,
};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use gdq_table::{Committed, Table, Warehouse};
use tokio::sync::RwLock;

use crate::batch::{Batch, BatchOptions, DEFAULT_MEMORY_BUDGET, TypeBuffers};
use crate::error::IngestError;
use crate::notification::{Notice, ObjectEvent, parse_export_key, parse_notification};
use crate::s3::{AwsClients, Refusal, check_encryption, fetch, s3_source_id, s3_uri};
use gdq_aws::AwsError;

/// The table, shared by a round's object tasks (which read its ledger) and the commit
/// between rounds (which writes).
pub(crate) type SharedTable = Arc<RwLock<Table>>;

/// How the worker runs. See `gdq worker --help` for the user-facing defaults.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub queue_url: String,
    /// Drain the queue (until a receive returns nothing), commit, and exit.
    pub once: bool,
    /// Objects must be encrypted with this KMS key (ARN or key id).
    pub kms_key: Option<String>,
    /// Accounts whose exports and findings are accepted (empty: all).
    pub accounts: Vec<String>,
    /// Objects fetched and decoded at once.
    pub concurrency: usize,
    /// Commit when the batch holds this many rows …
    pub flush_rows: u64,
    /// … or when its oldest message is this old.
    pub flush_interval: Duration,
    /// Long-poll wait of one receive.
    pub wait: Duration,
    /// Interval of the one-line progress log.
    pub progress_interval: Duration,
    pub batch: BatchOptions,
}

impl WorkerOptions {
    pub fn new(queue_url: impl Into<String>) -> Self {
        let concurrency = 16;
        WorkerOptions {
            queue_url: queue_url.into(),
            once: false,
            kms_key: None,
            accounts: Vec::new(),
            concurrency,
            flush_rows: 250_000,
            flush_interval: Duration::from_secs(30),
            wait: Duration::from_secs(20),
            progress_interval: Duration::from_secs(30),
            // Up to `concurrency` objects are decoded at once, each into its own row buffers.
            batch: BatchOptions::default().with_memory_budget(DEFAULT_MEMORY_BUDGET, concurrency),
        }
    }
}

/// What the worker did.
#[derive(Debug, Default, Clone)]
pub struct WorkerStats {
    pub messages: u64,
    pub test_events: u64,
    pub messages_deleted: u64,
    /// Messages left on the queue for a retry or the dead-letter queue.
    pub messages_left: u64,
    pub objects_ingested: u64,
    /// Objects already committed (redelivery, duplicate notification, earlier backfill).
    pub objects_already_committed: u64,
    /// Events that are not `ObjectCreated`, or keys outside the GuardDuty export layout.
    pub objects_ignored: u64,
    pub objects_refused: u64,
    pub objects_failed: u64,
    pub rows_committed: u64,
    pub rows_pending: u64,
    pub lines_quarantined: u64,
    pub commits: u64,
    pub errors: u64,
}

/// Why the worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Queue(#[from] AwsError),
}

/// Exponential backoff with jitter for AWS errors: 0.5 s doubling to 30 s.
struct Backoff {
    failures: u32,
    seed: u64,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            failures: 0,
            seed: gdq_table::layout::now_ms() as u64 | 1,
        }
    }

    fn next_delay(&mut self) -> Duration {
        self.failures = (self.failures + 1).min(16);
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let base = (500u64 << self.failures.min(6)).min(30_000);
        let jitter = 0.5 + (self.seed % 1000) as f64 / 1000.0;
        Duration::from_millis((base as f64 * jitter) as u64)
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A received message and what became of its objects.
struct Received {
    message_id: String,
    receipt: String,
    /// Delete after the commit: every object is in the batch, committed before, or ignored.
    delete: bool,
}

/// What happened to one object.
pub(crate) enum ObjectResult {
    Ingested {
        rows: u64,
        quarantined: u64,
    },
    AlreadyCommitted,
    Refused,
    /// Nothing of it was committed; the reason, one line naming the object.
    Failed(String),
}

/// State shared with the object tasks of a round.
pub(crate) struct Shared {
    clients: AwsClients,
    options: WorkerOptions,
    batch: Batch,
    buffers: Mutex<Vec<TypeBuffers>>,
    in_batch: Mutex<HashSet<String>>,
}

impl Shared {
    fn refuse(&self, uri: &str, refusal: &Refusal) -> ObjectResult {
        warn!(object = uri, reason = %refusal, "object refused; its message is left for the dead-letter queue");
        if let Err(e) = self
            .batch
            .quarantine(uri, None, &format!("refused: {refusal}"), &[])
        {
            error!(object = uri, error = %e, "cannot record the refusal in the quarantine");
        }
        ObjectResult::Refused
    }
}

/// Whether the table holds the object with this source id.
async fn committed(table: &SharedTable, id: &str) -> bool {
    table.read().await.ledger().contains_source(id)
}

/// Processes one object: ledger check, fetch, encryption check, decode into the batch.
pub(crate) async fn process_object(
    shared: Arc<Shared>,
    table: SharedTable,
    event: ObjectEvent,
) -> ObjectResult {
    let uri = s3_uri(&event.bucket, &event.key);
    if let Some(etag) = &event.etag {
        let id = s3_source_id(&event.bucket, &event.key, etag);
        if committed(&table, &id).await
            || shared
                .in_batch
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&id)
        {
            debug!(object = %uri, "already committed; not fetched");
            return ObjectResult::AlreadyCommitted;
        }
    }
    if let Some(export) = parse_export_key(&event.key)
        && !shared.options.accounts.is_empty()
        && !shared.options.accounts.contains(&export.account)
    {
        return shared.refuse(&uri, &Refusal::AccountNotAllowed(export.account));
    }
    let object = match fetch(&shared.clients.s3, &event.bucket, &event.key).await {
        Ok(object) => object,
        Err(e) => {
            error!(object = %uri, error = %e, "fetch failed; the message stays on the queue");
            return ObjectResult::Failed(e.to_string());
        }
    };
    if let Err(refusal) = check_encryption(
        object.sse.as_deref(),
        object.kms_key.as_deref(),
        shared.options.kms_key.as_deref(),
    ) {
        return shared.refuse(&uri, &refusal);
    }
    let id = s3_source_id(&event.bucket, &event.key, &object.etag);
    if committed(&table, &id).await
        || !shared
            .in_batch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone())
    {
        return ObjectResult::AlreadyCommitted;
    }
    let task_shared = Arc::clone(&shared);
    let task_uri = uri.clone();
    let task_id = id.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        let shared = task_shared;
        let mut buffers = shared
            .buffers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(|| shared.batch.buffers());
        let outcome =
            shared
                .batch
                .ingest_object(&mut buffers, &task_uri, &task_id, &object.body[..]);
        shared
            .buffers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(buffers);
        outcome
    })
    .await;
    match decoded {
        Ok(Ok(outcome)) => {
            if let Some(reason) = &outcome.error {
                warn!(object = %uri, reason, rows = outcome.rows, "object read in part; the break is quarantined");
            }
            ObjectResult::Ingested {
                rows: outcome.rows,
                quarantined: outcome.quarantined,
            }
        }
        Ok(Err(e)) => {
            error!(object = %uri, error = %e, "decoding failed");
            shared
                .in_batch
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            ObjectResult::Failed(format!("{uri}: decoding failed: {e}"))
        }
        Err(e) => {
            error!(object = %uri, error = %e, "decoding task failed");
            ObjectResult::Failed(format!("{uri}: decoding task failed: {e}"))
        }
    }
}

/// The worker loop. Returns when `shutdown` turns true (after finishing the round in hand and
/// committing it), or, with `once`, when the queue is drained.
pub async fn run_worker(
    clients: AwsClients,
    warehouse: Warehouse,
    options: WorkerOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<WorkerStats, WorkerError> {
    let queue = options.queue_url.clone();
    let table = Table::open(&warehouse).await.map_err(IngestError::from)?;
    let recovered = table.recovery().clone();
    if !recovered.discarded.is_empty() || recovered.expired_files > 0 {
        info!(
            discarded = recovered.discarded.len(),
            debris_files = recovered.debris_files,
            expired_files = recovered.expired_files,
            "removed what no commit names"
        );
    }
    let table: SharedTable = Arc::new(RwLock::new(table));

    let visibility = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&options.queue_url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .map_err(|e| AwsError::new("sqs:GetQueueAttributes", Some(queue.clone()), &e))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(30)
        .max(2);
    info!(queue = %options.queue_url, warehouse = %warehouse.name(), visibility_timeout_s = visibility, "worker started");

    let pending: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let heartbeat = tokio::spawn(heartbeat(
        clients.sqs.clone(),
        options.queue_url.clone(),
        Arc::clone(&pending),
        visibility,
    ));

    let mut options = options;
    if !options.accounts.is_empty() {
        options.batch.allowed_accounts = Some(Arc::new(options.accounts.iter().cloned().collect()));
    }
    let mut stats = WorkerStats::default();
    let mut backoff = Backoff::new();
    let mut shared = new_shared(&clients, &options, &warehouse)?;
    let mut to_delete: Vec<Received> = Vec::new();
    let mut batch_started: Option<Instant> = None;
    let mut last_progress = Instant::now();
    let receivers = options.concurrency.div_ceil(10).max(1);
    let committer = Committer {
        clients: &clients,
        queue_url: &queue,
        table: &table,
        pending: &pending,
    };

    loop {
        if *shutdown.borrow() {
            info!("shutdown requested: finishing the current batch");
            break;
        }
        let mut calls = JoinSet::new();
        for _ in 0..receivers {
            let request = clients
                .sqs
                .receive_message()
                .queue_url(&options.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(options.wait.as_secs().min(20) as i32)
                .visibility_timeout(visibility as i32);
            calls.spawn(async move { request.send().await });
        }
        let mut messages: Vec<Message> = Vec::new();
        let mut failed = None;
        let results = tokio::select! {
            results = calls.join_all() => results,
            _ = stop_requested(&mut shutdown) => continue,
        };
        for result in results {
            match result {
                Ok(out) => messages.extend(out.messages.unwrap_or_default()),
                Err(e) => {
                    failed = Some(AwsError::new(
                        "sqs:ReceiveMessage",
                        Some(options.queue_url.clone()),
                        &e,
                    ))
                }
            }
        }
        if let Some(message) = failed.filter(|_| messages.is_empty()) {
            stats.errors += 1;
            let delay = backoff.next_delay();
            warn!(error = %message, retry_in_ms = delay.as_millis() as u64, "receive failed");
            tokio::select! { _ = tokio::time::sleep(delay) => {}, _ = stop_requested(&mut shutdown) => {} }
            continue;
        }
        backoff.reset();

        if messages.is_empty() {
            if options.once {
                break;
            }
        } else {
            if batch_started.is_none() {
                batch_started = Some(Instant::now());
            }
            let received = process_round(&shared, &table, &pending, messages, &mut stats).await;
            to_delete.extend(received);
        }

        let due = batch_started.is_some_and(|t| t.elapsed() >= options.flush_interval)
            || stats.rows_pending >= options.flush_rows;
        if due {
            let full = std::mem::replace(&mut shared, new_shared(&clients, &options, &warehouse)?);
            committer.commit(full, &mut to_delete, &mut stats).await?;
            batch_started = None;
        }
        if last_progress.elapsed() >= options.progress_interval {
            progress(&clients, &options.queue_url, &stats).await;
            last_progress = Instant::now();
        }
    }
    // The last batch: no successor, so no staging folder is left behind.
    committer.commit(shared, &mut to_delete, &mut stats).await?;
    heartbeat.abort();
    progress(&clients, &options.queue_url, &stats).await;
    Ok(stats)
}

/// Resolves once shutdown is requested; never, if the sender is gone without asking (a
/// closed channel must not turn the receive loop into a busy loop).
async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub(crate) fn new_shared(
    clients: &AwsClients,
    options: &WorkerOptions,
    warehouse: &Warehouse,
) -> Result<Arc<Shared>, IngestError> {
    Ok(Arc::new(Shared {
        clients: clients.clone(),
        options: options.clone(),
        batch: Batch::new(warehouse, &options.batch)?,
        buffers: Mutex::new(Vec::new()),
        in_batch: Mutex::new(HashSet::new()),
    }))
}

async fn process_round(
    shared: &Arc<Shared>,
    table: &SharedTable,
    pending: &Arc<Mutex<Vec<(String, String)>>>,
    messages: Vec<Message>,
    stats: &mut WorkerStats,
) -> Vec<Received> {
    let semaphore = Arc::new(Semaphore::new(shared.options.concurrency.max(1)));
    let mut tasks: JoinSet<(usize, ObjectResult)> = JoinSet::new();
    let mut received = Vec::with_capacity(messages.len());
    for message in messages {
        stats.messages += 1;
        let message_id = message.message_id().unwrap_or_default().to_string();
        let receipt = message.receipt_handle().unwrap_or_default().to_string();
        pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((message_id.clone(), receipt.clone()));
        let index = received.len();
        let mut delete = true;
        match parse_notification(message.body().unwrap_or_default()) {
            Ok(Notice::Test) => {
                stats.test_events += 1;
                debug!(message = %message_id, "s3:TestEvent acknowledged");
            }
            Ok(Notice::Objects(events)) => {
                for event in events {
                    if !event.is_created() || parse_export_key(&event.key).is_none() {
                        stats.objects_ignored += 1;
                        debug!(message = %message_id, key = %event.key, event = %event.event_name, "not a new export object; ignored");
                        continue;
                    }
                    let (shared, table, semaphore) = (
                        Arc::clone(shared),
                        Arc::clone(table),
                        Arc::clone(&semaphore),
                    );
                    tasks.spawn(async move {
                        let _permit = semaphore.acquire_owned().await;
                        (index, process_object(shared, table, event).await)
                    });
                }
            }
            Err(e) => {
                stats.errors += 1;
                delete = false;
                warn!(message = %message_id, error = %e, "unreadable message left for the dead-letter queue");
            }
        }
        received.push(Received {
            message_id,
            receipt,
            delete,
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let Ok((index, result)) = joined else {
            stats.errors += 1;
            continue;
        };
        match result {
            ObjectResult::Ingested { rows, quarantined } => {
                stats.objects_ingested += 1;
                stats.rows_pending += rows;
                stats.lines_quarantined += quarantined;
            }
            ObjectResult::AlreadyCommitted => stats.objects_already_committed += 1,
            ObjectResult::Refused => {
                stats.objects_refused += 1;
                received[index].delete = false;
            }
            ObjectResult::Failed(_) => {
                stats.objects_failed += 1;
                received[index].delete = false;
            }
        }
    }
    // Messages left for a retry need no heartbeat: their visibility runs out as usual.
    let keep: HashSet<String> = received
        .iter()
        .filter(|r| !r.delete)
        .map(|r| r.message_id.clone())
        .collect();
    stats.messages_left += keep.len() as u64;
    pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(id, _)| !keep.contains(id));
    received.retain(|r| r.delete);
    received
}

/// What a commit needs besides the batch itself.
struct Committer<'a> {
    clients: &'a AwsClients,
    queue_url: &'a str,
    table: &'a SharedTable,
    pending: &'a Arc<Mutex<Vec<(String, String)>>>,
}

impl Committer<'_> {
    /// Flushes and commits `shared`'s batch, then deletes the messages it covers.
    async fn commit(
        &self,
        shared: Arc<Shared>,
        to_delete: &mut Vec<Received>,
        stats: &mut WorkerStats,
    ) -> Result<(), WorkerError> {
        let committed = commit_shared(shared, self.table).await?;
        if let Some(committed) = &committed {
            stats.commits += 1;
            stats.rows_committed += committed.rows();
            info!(attempt = %committed.attempt, version = committed.version, objects = committed.sources.len(), files = committed.files.len(), "committed");
        }
        stats.rows_pending = 0;
        delete_messages(
            self.clients,
            self.queue_url,
            std::mem::take(to_delete),
            stats,
        )
        .await;
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }
}

/// Flushes every row buffer of `shared`'s batch and closes its files (on a blocking
/// thread), then has the table commit it.
pub(crate) async fn commit_shared(
    shared: Arc<Shared>,
    table: &SharedTable,
) -> Result<Option<Committed>, IngestError> {
    let staged = tokio::task::spawn_blocking(move || -> Result<_, IngestError> {
        let shared = Arc::try_unwrap(shared)
            .map_err(|_| IngestError::Internal("batch still in use at commit".into()))?;
        for mut buffers in shared
            .buffers
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
        {
            buffers.flush()?;
        }
        shared.batch.finish()
    })
    .await
    .map_err(|e| IngestError::Internal(e.to_string()))??;
    Ok(table.write().await.commit_append(staged).await?)
}

/// Deletes messages in batches of ten; a message whose delete fails is only redelivered,
/// and its object is then found in the ledger.
async fn delete_messages(
    clients: &AwsClients,
    queue_url: &str,
    messages: Vec<Received>,
    stats: &mut WorkerStats,
) {
    for chunk in messages.chunks(10) {
        let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&m.receipt)
                    .build()
                    .ok()
            })
            .collect();
        match clients
            .sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                stats.messages_deleted += out.successful().len() as u64;
                for failure in out.failed() {
                    stats.errors += 1;
                    warn!(
                        entry = failure.id(),
                        code = failure.code(),
                        "delete failed; the message will be redelivered and skipped"
                    );
                }
            }
            Err(e) => {
                stats.errors += 1;
                warn!(error = %AwsError::new("sqs:DeleteMessage", None, &e), "delete batch failed; the messages will be redelivered and skipped");
            }
        }
    }
}

/// Keeps received, not yet committed messages invisible.
async fn heartbeat(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    pending: Arc<Mutex<Vec<(String, String)>>>,
    visibility: u64,
) {
    let period = Duration::from_secs((visibility / 3).max(1));
    loop {
        tokio::time::sleep(period).await;
        let receipts: Vec<(String, String)> =
            pending.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for chunk in receipts.chunks(10) {
            let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, (_, receipt))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(visibility as i32)
                        .build()
                        .ok()
                })
                .collect();
            if let Err(e) = sqs
                .change_message_visibility_batch()
                .queue_url(&queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                warn!(error = %AwsError::new("sqs:ChangeMessageVisibility", None, &e), "visibility heartbeat failed");
            }
        }
    }
}

async fn progress(clients: &AwsClients, queue_url: &str, s: &WorkerStats) {
    let depth = clients
        .sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .ok()
        .and_then(|o| {
            o.attributes()
                .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
                .cloned()
        })
        .unwrap_or_else(|| "?".into());
    info!(
        messages = s.messages,
        objects = s.objects_ingested,
        already_committed = s.objects_already_committed,
        rows_committed = s.rows_committed,
        queued = %depth,
        refused = s.objects_refused,
        quarantined_lines = s.lines_quarantined,
        errors = s.errors,
        "progress"
    );
}
