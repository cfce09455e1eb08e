//! gdq's ingest side: from GuardDuty export objects to staged batches the table commits.
//!
//! Where objects come from: [`source`] (local files, named by their bytes), [`s3`] (S3
//! objects, named by bucket, key and ETag, and the encryption check), [`listing`] (the
//! export bucket's folders, walked only within the filters) and [`notification`] (SQS
//! message bodies in every shape). [`decode`] turns an object's bytes into findings and bad
//! lines ([`inflate`] decompresses objects held whole in one call). [`batch`] is the unit of
//! one commit: row buffers per type, Parquet written into the batch's staging folder, its
//! quarantine. Drivers: [`run`] (a local ingest on all cores), [`s3_ingest`] (a backfill of
//! an export bucket) and [`worker`] (the SQS loop). Committing, the ledger, compaction and
//! status belong to the table (`gdq-table`); querying to `gdq-query`.

pub mod batch;
pub mod decode;
pub mod error;
pub mod inflate;
pub mod listing;
pub mod notification;
pub mod progress;
pub mod run;
pub mod s3;
pub mod s3_ingest;
pub mod source;
pub mod worker;

pub use batch::{Batch, BatchOptions};
pub use error::IngestError;
pub use run::{IngestOptions, IngestSummary, ingest_local};
