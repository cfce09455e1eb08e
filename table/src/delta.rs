//! The table's Delta Lake side, through delta-rs: where the log is, the table's schema and
//! properties, loading a snapshot, and the one way anything commits — the log's next
//! version, created put-if-absent, exactly once or not at all.
//!
//! delta-rs would retry a commit that lost the race on its own; gdq asks it not to
//! (`max_retries = 0`), because what a lost race means for gdq (objects another writer
//! committed meanwhile, a compaction's inputs gone) is decided by gdq, which re-reads the
//! winning commits and retries itself ([`crate::append`], [`crate::compact`]).

use std::collections::HashMap;
use std::sync::Arc;

use deltalake_core::DeltaTable;
use deltalake_core::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake_core::kernel::{Action, StructType, Transaction};
use deltalake_core::logstore::{LogStoreRef, StorageConfig, default_logstore};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::table::state::DeltaTableState;
use deltalake_core::{DeltaTableError, TableProperty};
use object_store::prefix::PrefixStore;
use serde::Deserialize;
use serde_json::Value;

use arrow_schema::{DataType, Field, Schema};
use gdq_schemas::{PARTITION_COLUMN, findings_schema};

use crate::error::{Result, TableError};
use crate::footer::STATS_COLUMNS;
use crate::layout::{FINDINGS_DIR, now_ms};
use crate::store::Store;

/// How long removed files stay for readers of older snapshots before a vacuum deletes them
/// (the table's `delta.deletedFileRetentionDuration`). An hour outlasts any query of gdq and
/// of the engines that read the table, and bounds how long plain-Parquet readers of the
/// folders see a compaction's inputs beside its outputs.
pub const REMOVED_FILE_RETENTION: &str = "interval 1 hours";

/// The log of one warehouse's table.
#[derive(Debug, Clone)]
pub struct DeltaLog {
    pub(crate) log_store: LogStoreRef,
    /// The table's location, for messages.
    pub(crate) name: String,
}

impl DeltaLog {
    /// The log of the table at `<warehouse>/findings/`.
    pub fn new(store: &Store) -> Result<DeltaLog> {
        let url = store.folder_url(FINDINGS_DIR)?;
        let root = store.object_store();
        let prefix = store.path(FINDINGS_DIR)?;
        let prefixed = Arc::new(PrefixStore::new(Arc::clone(&root), prefix));
        let log_store = default_logstore(prefixed, root, &url, &StorageConfig::default());
        Ok(DeltaLog {
            log_store,
            name: format!("{}/{FINDINGS_DIR}", store.name().trim_end_matches('/')),
        })
    }

    /// Loads the newest snapshot; `None` when there is no table yet.
    pub async fn load(&self) -> Result<Option<DeltaTable>> {
        if !self
            .log_store
            .is_delta_table_location()
            .await
            .map_err(TableError::delta(format!(
                "reading the log of {}",
                self.name
            )))?
        {
            return Ok(None);
        }
        let mut table = DeltaTable::new(self.log_store.clone());
        table
            .load()
            .await
            .map_err(TableError::delta(format!("loading {}", self.name)))?;
        Ok(Some(table))
    }

    /// Creates the table as version 0 with `actions` in it (none for a new warehouse; the
    /// files and ledger of an upgraded one). `false` when version 0 already existed: nothing
    /// was written, whoever wrote it first won.
    pub async fn create(&self, actions: Vec<Action>, metadata: Value) -> Result<bool> {
        let properties = CommitProperties::default()
            .with_max_retries(0)
            .with_create_checkpoint(false)
            .with_metadata([("gdq".to_string(), metadata)]);
        let created = CreateBuilder::new()
            .with_log_store(self.log_store.clone())
            .with_table_name("findings")
            .with_comment("GuardDuty findings, every exported version (gdq)")
            .with_columns(delta_schema()?.fields().cloned())
            .with_partition_columns([PARTITION_COLUMN])
            .with_configuration(table_configuration())
            .with_save_mode(SaveMode::ErrorIfExists)
            .with_actions(actions)
            .with_commit_properties(properties)
            .await;
        match created {
            Ok(_) => Ok(true),
            Err(e) if lost_race(&e) || is_already_exists(&e) => Ok(false),
            Err(e) => Err(TableError::delta(format!("creating {}", self.name))(e)),
        }
    }

    /// The raw actions of one committed version.
    pub async fn entry(&self, version: u64) -> Result<LogEntry> {
        let what = format!("{} version {version}", self.name);
        let bytes = self
            .log_store
            .read_commit_entry(version)
            .await
            .map_err(TableError::delta(what.clone()))?
            .ok_or_else(|| TableError::Corrupt {
                what: what.clone(),
                reason: "the log entry is missing".into(),
            })?;
        LogEntry::parse(&bytes, &what)
    }

    /// Tries to commit `actions` as the version after `table`'s.
    pub async fn try_commit(
        &self,
        table: &DeltaTable,
        actions: Vec<Action>,
        operation: DeltaOperation,
        metadata: Value,
        transactions: Vec<Transaction>,
    ) -> Result<Attempt> {
        let state = table
            .snapshot()
            .map_err(TableError::delta(format!("snapshot of {}", self.name)))?;
        let properties = CommitProperties::default()
            .with_max_retries(0)
            .with_metadata([("gdq".to_string(), metadata)])
            .with_application_transactions(transactions);
        let committed = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(Some(state), self.log_store.clone(), operation)
            .await;
        match committed {
            Ok(done) => Ok(Attempt::Committed {
                version: done.version(),
                state: Box::new(done.snapshot()),
            }),
            Err(e) if lost_race(&e) => Ok(Attempt::Lost),
            Err(e) => Ok(Attempt::Unconfirmed(e.to_string())),
        }
    }
}

/// What one commit attempt came to.
pub enum Attempt {
    /// The version is ours; `state` is the table after it.
    Committed {
        version: u64,
        state: Box<DeltaTableState>,
    },
    /// Another writer committed that version first; nothing of ours is in it.
    Lost,
    /// The write failed in a way that leaves it open whether it landed.
    Unconfirmed(String),
}

/// Whether delta-rs refused the commit because the version was taken.
fn lost_race(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction {
                source: TransactionError::MaxCommitAttempts(_)
                    | TransactionError::VersionAlreadyExists(_),
            }
    )
}

/// delta-rs's refusal to create over an existing table (its error type is private).
fn is_already_exists(e: &DeltaTableError) -> bool {
    matches!(e, DeltaTableError::GenericError { source }
        if source.to_string().starts_with("A Delta Lake table already exists"))
}

/// The table's schema: every stored column, then the `type` partition.
pub fn delta_schema() -> Result<StructType> {
    let mut fields: Vec<Field> = findings_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(PARTITION_COLUMN, DataType::Utf8, false));
    StructType::try_from_arrow(&Schema::new(fields))
        .map_err(|e| TableError::Internal(format!("the findings schema as Delta: {e}")))
}

/// Table properties gdq sets at creation.
fn table_configuration() -> HashMap<String, Option<String>> {
    HashMap::from([
        (
            TableProperty::DataSkippingStatsColumns.as_ref().to_string(),
            Some(STATS_COLUMNS.join(",")),
        ),
        (
            TableProperty::DeletedFileRetentionDuration
                .as_ref()
                .to_string(),
            Some(REMOVED_FILE_RETENTION.to_string()),
        ),
    ])
}

/// The actions of one version that gdq looks at.
#[derive(Debug, Default, Clone)]
pub struct LogEntry {
    /// `txn` application ids: gdq's ledger (sources and commit markers).
    pub app_ids: Vec<String>,
    /// Paths (in the table) the version removed.
    pub removed: Vec<String>,
    /// Whether it changed the schema, properties or protocol.
    pub changes_table: bool,
    /// gdq's part of the commit info, if gdq wrote it.
    pub gdq: Option<Value>,
    pub timestamp_ms: Option<i64>,
}

#[derive(Deserialize)]
struct Line {
    txn: Option<TxnLine>,
    remove: Option<RemoveLine>,
    #[serde(rename = "commitInfo")]
    commit_info: Option<Value>,
    #[serde(rename = "metaData")]
    metadata: Option<Value>,
    protocol: Option<Value>,
}

#[derive(Deserialize)]
struct TxnLine {
    #[serde(rename = "appId")]
    app_id: String,
}

#[derive(Deserialize)]
struct RemoveLine {
    path: String,
}

impl LogEntry {
    fn parse(bytes: &[u8], what: &str) -> Result<LogEntry> {
        let text = std::str::from_utf8(bytes).map_err(|e| TableError::Corrupt {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
        let mut entry = LogEntry::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let line: Line = serde_json::from_str(line).map_err(|e| TableError::Corrupt {
                what: what.to_string(),
                reason: e.to_string(),
            })?;
            if let Some(txn) = line.txn {
                entry.app_ids.push(txn.app_id);
            }
            if let Some(remove) = line.remove {
                entry.removed.push(decode_log_path(&remove.path));
            }
            if let Some(info) = line.commit_info {
                entry.gdq = info.get("gdq").cloned();
                entry.timestamp_ms = info.get("timestamp").and_then(Value::as_i64);
            }
            entry.changes_table |= line.metadata.is_some() || line.protocol.is_some();
        }
        Ok(entry)
    }
}

/// A path as the log stores it (a URI, percent-encoded) → the file's path in the table.
pub fn decode_log_path(path: &str) -> String {
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

/// A `txn` action of gdq's ledger.
pub fn ledger_transaction(app_id: String) -> Transaction {
    Transaction {
        app_id,
        version: 1,
        last_updated: Some(now_ms()),
    }
}
