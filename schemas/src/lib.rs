//! The gdq table contract: what a GuardDuty finding becomes when gdq stores it.
//!
//! This crate owns the Arrow schema of the `findings` table ([`findings_schema`]), the
//! normalizer that turns one exported finding (a JSON object, as GuardDuty writes it to S3)
//! into one row ([`FindingRows`]), the finding-type grammar ([`FindingType`]) and the naming of
//! type partitions on disk ([`partition_dir_name`]), and the id index that lets a lookup by
//! id skip files ([`IdIndex`]). Readers and writers elsewhere in gdq take
//! these from here; nothing in this crate does I/O.
//!
//! The schema is versioned ([`SCHEMA_VERSION`]): columns may be added, never renamed or retyped
//! within a version.

mod columns;
pub mod ddl;
mod finding_type;
mod id_index;
mod lenient;
mod normalize;
mod partition;
mod raw;
mod severity;
mod time;

pub use columns::{COLUMNS, Column, ColumnKind, findings_schema, schema_markdown};
pub use finding_type::FindingType;
pub use id_index::{
    ID_INDEX_DIR, ID_INDEX_EXTENSION, IdIndex, IdIndexEntry, IdIndexError, decode_id_index,
    encode_id_index, id_index_key,
};
pub use normalize::{FindingRows, LineError, ParsedFinding, parse_finding};
pub use partition::{
    PARTITION_COLUMN, decode_partition_value, encode_partition_value, partition_dir_name,
};
pub use severity::severity_label;
pub use time::{format_rfc3339_ms, parse_timestamp_ms};

/// Version of the table contract written into every Parquet file's metadata.
pub const SCHEMA_VERSION: &str = "1";
