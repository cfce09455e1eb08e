//! The one commit path: a writer's view of the table (snapshot and ledger, kept at the same
//! version) and the step every change goes through — try the log's next version; if another
//! writer took it, read what they committed and let the caller decide again.
//!
//! Every attempt records `gdq.commit/<attempt>` in the version it commits. That is how a
//! writer recognizes its own commit when the answer to its write was lost (a timeout, a
//! retry that found the version taken by the first try): it reads the log and finds its
//! name there, or it does not, and then no later write of that attempt can land, because
//! the version it aimed at is taken.

use deltalake_core::DeltaTable;
use deltalake_core::kernel::{Action, Transaction};
use deltalake_core::protocol::DeltaOperation;
use serde_json::Value;

use crate::delta::{Attempt, LogEntry, ledger_transaction};
use crate::error::{Result, TableError};
use crate::ledger::{COMMIT_APP, Ledger};
use crate::recovery::Recovery;
use crate::snapshot::Snapshot;
use crate::warehouse::Warehouse;

/// The table as one process sees it: its snapshot and ledger, kept at the same version,
/// and the commits it makes.
pub struct Table {
    pub(crate) warehouse: Warehouse,
    pub(crate) delta: DeltaTable,
    ledger: Ledger,
    pub(crate) recovery: Recovery,
}

/// How one attempt ended, when it did not fail.
pub(crate) enum Outcome {
    /// The attempt's commit is this version.
    Committed(u64),
    /// Another writer took the version; the ledger and snapshot now include what they
    /// committed (the entries, oldest first).
    Lost(Vec<(u64, LogEntry)>),
}

impl Table {
    /// The table and its ledger, for reading: nothing is created, upgraded or removed.
    pub async fn load(warehouse: &Warehouse) -> Result<Table> {
        let delta =
            warehouse.log().load().await?.ok_or_else(|| {
                TableError::State(format!("{} holds no table yet", warehouse.name()))
            })?;
        Table::with_delta(warehouse, delta).await
    }

    pub(crate) async fn with_delta(warehouse: &Warehouse, delta: DeltaTable) -> Result<Table> {
        let version = delta
            .version()
            .ok_or_else(|| TableError::Internal("a loaded table without a version".into()))?;
        let ledger = Ledger::load(warehouse.log(), version).await?;
        let mut table = Table {
            warehouse: warehouse.clone(),
            delta,
            ledger,
            recovery: Recovery::default(),
        };
        // The ledger may have read a checkpoint newer than the snapshot: bring both level.
        if table.ledger.version() > Some(version) {
            table.refresh().await?;
        }
        Ok(table)
    }

    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    /// Which objects and commits the table holds, as of [`Table::version`].
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// What opening for writing found and removed (`crate::open`).
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    pub fn version(&self) -> u64 {
        self.delta.version().unwrap_or(0)
    }

    /// The files of the table as this writer sees it.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot::of(self.state()?))
    }

    pub(crate) fn state(&self) -> Result<&deltalake_core::table::state::DeltaTableState> {
        self.delta.snapshot().map_err(TableError::delta(format!(
            "snapshot of {}",
            self.warehouse.log().name
        )))
    }

    /// Reads what other writers committed since this writer last looked.
    pub async fn refresh(&mut self) -> Result<Vec<(u64, LogEntry)>> {
        let name = self.warehouse.log().name.clone();
        self.delta
            .update_state()
            .await
            .map_err(TableError::delta(format!("reading {name}")))?;
        let version = self.version();
        let entries = self.ledger.advance(self.warehouse.log(), version).await?;
        if let Some((v, _)) = entries.iter().find(|(_, e)| e.changes_table) {
            return Err(TableError::Conflict(format!(
                "{name} version {v} changed the table's schema, properties or protocol; gdq writes only to the table as it created it"
            )));
        }
        Ok(entries)
    }

    /// Tries to commit `actions` as the next version, recorded as `attempt` (and with the
    /// ledger `transactions`).
    pub(crate) async fn try_commit(
        &mut self,
        attempt: &str,
        actions: Vec<Action>,
        operation: DeltaOperation,
        metadata: Value,
        mut transactions: Vec<Transaction>,
    ) -> Result<Outcome> {
        transactions.push(ledger_transaction(format!("{COMMIT_APP}{attempt}")));
        let app_ids: Vec<String> = transactions.iter().map(|t| t.app_id.clone()).collect();
        let log = self.warehouse.log().clone();
        let tried = log
            .try_commit(&self.delta, actions, operation, metadata, transactions)
            .await?;
        match tried {
            Attempt::Committed { version, state } => {
                self.delta.state = Some(*state);
                self.ledger.apply(
                    version,
                    &LogEntry {
                        app_ids,
                        ..LogEntry::default()
                    },
                );
                Ok(Outcome::Committed(version))
            }
            Attempt::Lost => {
                let entries = self.refresh().await?;
                Ok(match self.landed(attempt, &entries) {
                    Some(version) => Outcome::Committed(version),
                    None => Outcome::Lost(entries),
                })
            }
            Attempt::Unconfirmed(reason) => {
                let unconfirmed = || TableError::Unconfirmed {
                    attempt: attempt.to_string(),
                    table: log.name.clone(),
                    reason: reason.clone(),
                };
                let entries = self.refresh().await.map_err(|_| unconfirmed())?;
                self.landed(attempt, &entries)
                    .map(Outcome::Committed)
                    .ok_or_else(unconfirmed)
            }
        }
    }

    /// The version among `entries` that holds `attempt`'s commit.
    fn landed(&self, attempt: &str, entries: &[(u64, LogEntry)]) -> Option<u64> {
        let marker = format!("{COMMIT_APP}{attempt}");
        entries
            .iter()
            .find(|(_, e)| e.app_ids.contains(&marker))
            .map(|(v, _)| *v)
    }
}
