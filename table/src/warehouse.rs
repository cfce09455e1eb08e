//! A warehouse: where the table lives (a local folder or an S3 prefix), what readers and
//! writers open, and the settings every writer shares.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::delta::DeltaLog;
use crate::error::{Result, TableError};
use crate::legacy;
use crate::snapshot::Snapshot;
use crate::staging::Staging;
use crate::store::{Location, Store};

/// Files of a batch nobody committed, untouched this long, belong to a writer that died
/// (S3 warehouses; locally the batch's lock tells). Writers refuse to commit files they
/// published more than half of this ago, so a live writer's files are never taken for
/// debris. `GDQ_STAGING_TTL_SECS` overrides it.
pub const UNCOMMITTED_TTL: Duration = Duration::from_secs(15 * 60);

/// A warehouse, opened.
#[derive(Debug, Clone)]
pub struct Warehouse {
    store: Store,
    log: DeltaLog,
    uncommitted_ttl: Duration,
    /// S3 warehouses build batches in a temporary folder of the process.
    scratch: Option<Arc<tempfile::TempDir>>,
}

impl Warehouse {
    /// Opens `<path>` or `s3://bucket[/prefix]` (S3 settings from the standard AWS chain).
    pub async fn open(location: &str) -> Result<Warehouse> {
        let location = Location::parse(location)?;
        Warehouse::with_store(Store::connect(&location).await?)
    }

    /// A warehouse over a connected store.
    pub fn with_store(store: Store) -> Result<Warehouse> {
        let scratch = match store.local_root() {
            Some(_) => None,
            None => Some(Arc::new(
                tempfile::Builder::new()
                    .prefix("gdq-scratch-")
                    .tempdir()
                    .map_err(TableError::io(std::env::temp_dir()))?,
            )),
        };
        let uncommitted_ttl = std::env::var("GDQ_STAGING_TTL_SECS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(UNCOMMITTED_TTL, Duration::from_secs_f64);
        Ok(Warehouse {
            log: DeltaLog::new(&store)?,
            store,
            uncommitted_ttl,
            scratch,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn log(&self) -> &DeltaLog {
        &self.log
    }

    /// What users call it: the path or the `s3://` URL.
    pub fn name(&self) -> String {
        self.store.name()
    }

    pub fn uncommitted_ttl(&self) -> Duration {
        self.uncommitted_ttl
    }

    /// The local warehouse folder; `None` for S3.
    pub fn local_root(&self) -> Option<&Path> {
        self.store.local_root()
    }

    /// A folder to build `batch` in (see [`Staging`]).
    pub fn stage(&self, batch: &str) -> Result<Staging> {
        match (&self.scratch, self.store.local_root()) {
            (_, Some(root)) => Staging::local(root, batch),
            (Some(scratch), None) => Staging::temporary(scratch.path(), batch),
            (None, None) => Err(TableError::Internal(
                "an S3 warehouse without scratch".into(),
            )),
        }
    }

    /// Where a local warehouse keeps a table path's file.
    pub fn local_path(&self, table_path: &str) -> Option<PathBuf> {
        self.store
            .local_root()
            .map(|root| root.join(crate::layout::warehouse_key(table_path)))
    }

    /// The newest snapshot; `None` while the warehouse holds no table (nothing ingested).
    /// A warehouse of an older gdq (before the table was Delta) must be upgraded first.
    pub async fn snapshot(&self) -> Result<Option<Snapshot>> {
        match self.log.load().await? {
            Some(table) => {
                let state = table
                    .snapshot()
                    .map_err(TableError::delta(format!("snapshot of {}", self.log.name)))?;
                Ok(Some(Snapshot::of(state)))
            }
            None if legacy::is_legacy(&self.store).await? => Err(TableError::State(format!(
                "{} is a warehouse of an older gdq (before the Delta table); run `gdq upgrade --warehouse {}` once (no data is rewritten), or any write upgrades it",
                self.name(),
                self.name()
            ))),
            None => Ok(None),
        }
    }
}
