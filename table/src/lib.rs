//! The gdq warehouse: a Delta Lake table of gdq's own Parquet files, and what gdq keeps
//! beside it.
//!
//! This crate owns everything that makes a warehouse a table: where its files live
//! ([`layout`]), the one storage abstraction for a local folder and an S3 prefix
//! ([`store`]), the data file format ([`writer`], [`footer`]: row groups, sort, bloom
//! filters, Delta statistics), the table's log through delta-rs ([`delta`]), snapshots for
//! readers ([`snapshot`]), the one commit path ([`transaction`], used by [`append`] and
//! [`compact`]; a writer's opening: `Table::open`), the ledger of committed objects ([`ledger`]), the id index ([`id_index`]),
//! quarantine files ([`quarantine`]), recovery and vacuum ([`vacuum`]), [`status`], and the
//! upgrade of warehouses of an older gdq ([`legacy`]).
//!
//! Not here: decoding exports and the SQS loop (`gdq-ingest`, which hands this crate staged
//! batches), SQL (`gdq-query`, which reads a [`Snapshot`]). Nothing here calls either.

pub mod append;
pub mod compact;
pub mod delta;
pub mod error;
pub mod fault;
pub mod footer;
pub mod id_index;
pub mod layout;
pub mod ledger;
pub mod legacy;
mod open;
pub mod quarantine;
pub mod recovery;
pub mod runtime;
pub mod snapshot;
pub mod staging;
pub mod status;
pub mod store;
pub mod transaction;
pub mod vacuum;
pub mod warehouse;
pub mod writer;

#[cfg(test)]
mod tests;

pub use append::{Committed, SourceRecord, StagedAppend};
pub use error::TableError;
pub use ledger::Ledger;
pub use recovery::Recovery;
pub use runtime::block_on;
pub use snapshot::{DataFile, Snapshot};
pub use staging::Staging;
pub use store::{Location, S3Location, Store};
pub use transaction::Table;
pub use vacuum::VacuumOptions;
pub use warehouse::Warehouse;
pub use writer::{PartitionWriter, StagedFile};
