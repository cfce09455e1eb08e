//! gdq's ingest side: from GuardDuty export objects to committed rows of the warehouse.
//!
//! Where objects come from: [`source`] (local files, named by their bytes), [`s3`] (S3
//! objects, named by bucket, key and ETag, and the encryption check) and [`notification`]
//! (SQS message bodies in every shape). [`decode`] turns an object's bytes into findings and
//! bad lines ([`inflate`] decompresses objects held whole in one call). [`batch`] is the
//! unit of one commit: row buffers per type, Parquet staged by [`writer`], the
//! [`quarantine`], the [`id_index`], and the commit itself. [`ledger`] and [`warehouse`] hold
//! the commit protocol (stage, commit record, publish; recovery; the short commit lock) that
//! makes every object count exactly once however often it is delivered and wherever a
//! process dies. Drivers: [`run`] (a local ingest on all cores) and [`worker`] (the SQS
//! loop); [`status`] reads what a warehouse holds. Querying is not here (`gdq-query`).

pub mod batch;
pub mod compact;
pub mod decode;
pub mod error;
pub mod fault;
pub mod id_index;
pub mod inflate;
pub mod ledger;
pub mod listing;
pub mod notification;
pub mod progress;
pub mod quarantine;
pub mod remote;
pub mod run;
pub mod s3;
pub mod s3_ingest;
pub mod source;
pub mod status;
pub mod warehouse;
pub mod worker;
pub mod writer;

pub use batch::{Batch, BatchOptions};
pub use error::IngestError;
pub use run::{IngestOptions, IngestSummary, ingest_local};
pub use warehouse::Warehouse;
