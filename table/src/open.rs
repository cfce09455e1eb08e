//! Opening the table for writing: the one place a writer's start creates the table,
//! upgrades a warehouse of an older gdq, and removes what dead writers left.

use crate::error::{Result, TableError};
use crate::legacy;
use crate::transaction::Table;
use crate::vacuum;
use crate::warehouse::Warehouse;

impl Table {
    /// Opens the table for writing: creates it when the warehouse holds none (upgrading a
    /// warehouse of an older gdq in place), removes what crashed writers left, and reads the
    /// ledger.
    pub async fn open(warehouse: &Warehouse) -> Result<Table> {
        let log = warehouse.log();
        let delta = match log.load().await? {
            Some(table) => table,
            None => {
                if legacy::is_legacy(warehouse.store()).await? {
                    legacy::upgrade(warehouse.store(), log).await?;
                } else {
                    log.create(Vec::new(), serde_json::json!({"operation": "create"}))
                        .await?;
                    warehouse.store().sync().await?;
                }
                log.load().await?.ok_or_else(|| {
                    TableError::Internal(format!("{} has no table after creating it", log.name))
                })?
            }
        };
        let mut table = Table::with_delta(warehouse, delta).await?;
        table.recovery = vacuum::recover(&table).await?;
        Ok(table)
    }
}
