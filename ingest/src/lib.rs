//! gdq's ingest side: from GuardDuty export objects to committed rows of the warehouse.
//!
//! Sources ([`source`]) find export objects and name them; [`decode`] turns an object's
//! bytes into findings and bad lines; [`writer`] stages Parquet per type partition;
//! [`ledger`] and [`warehouse`] hold the commit protocol (stage, commit record, publish) that
//! makes every object count exactly once however often it is delivered and wherever the
//! process dies; [`run`] drives a whole local ingest. Querying is not here (`gdq-query`).

pub mod batch;
pub mod decode;
pub mod error;
pub mod fault;
pub mod ledger;
pub mod notification;
pub mod quarantine;
pub mod run;
pub mod s3;
pub mod source;
pub mod status;
pub mod warehouse;
pub mod worker;
pub mod writer;

pub use batch::{Batch, BatchOptions};
pub use error::IngestError;
pub use run::{IngestOptions, IngestSummary, ingest_local};
pub use warehouse::Warehouse;
