//! Where everything of a warehouse lives, and how its files are named: the one place these
//! strings are spelled.
//!
//! ```text
//! <warehouse>/findings/                            the Delta table (what every engine reads)
//! <warehouse>/findings/_delta_log/                 its log: one JSON commit per version, checkpoints
//! <warehouse>/findings/type=<enc>/<batch>-<part>.parquet   data files, <enc> = the type
//!                                                  fully percent-encoded
//! <warehouse>/_gdq/index/<batch>.ids               the `id` bloom filters of a commit's files
//! <warehouse>/_gdq/quarantine/<batch>.jsonl        lines and objects a commit could not ingest
//! <warehouse>/_gdq/staging/<batch>/                a local batch being built (S3: a temp folder)
//! ```
//!
//! Files are written under their final names before the commit that adds them, and never
//! rewritten afterwards: a batch that must change a file (its rows of an object another
//! writer committed first) writes a new one under a new attempt name (`<batch>.<n>`).

use std::time::{SystemTime, UNIX_EPOCH};

use gdq_schemas::{format_rfc3339_ms, partition_dir_name};

/// The table's root folder, relative to the warehouse root.
pub const FINDINGS_DIR: &str = "findings";
/// gdq's own files beside the table.
pub const META_DIR: &str = "_gdq";
/// Quarantine files, relative to the warehouse root.
pub const QUARANTINE_DIR: &str = "_gdq/quarantine";
/// Local batches being built, relative to a local warehouse's root.
pub const STAGING_DIR: &str = "_gdq/staging";
/// Where the index files are (defined with their format).
pub use gdq_schemas::ID_INDEX_DIR;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A time-sortable, unique batch name: `20240102T030405Z-1a2b3c4d`.
pub fn new_batch_id() -> String {
    let stamp = format_rfc3339_ms(now_ms());
    let compact: String = stamp
        .chars()
        .take(19)
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Two batches of one process never share a name, even within one clock tick.
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let sequence = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let salt =
        xxhash_rust::xxh3::xxh3_64(format!("{nanos}-{}-{sequence}", std::process::id()).as_bytes());
    format!("{compact}Z-{:08x}", salt as u32)
}

/// The name of a batch's `n`-th commit attempt with its own files (`n` = 0: the batch name).
pub fn attempt_name(batch: &str, n: u32) -> String {
    if n == 0 {
        batch.to_string()
    } else {
        format!("{batch}.{n}")
    }
}

/// A data file's path in the table (relative to its root): `type=<enc>/<attempt>-<part>.parquet`.
pub fn data_file_path(finding_type: &str, attempt: &str, part: u32) -> String {
    format!(
        "{}/{attempt}-{part:05}.parquet",
        partition_dir_name(finding_type)
    )
}

/// The attempt (batch) that wrote a data file: `…/<attempt>-<part>.parquet` → `<attempt>`.
pub fn batch_of(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next()?.strip_suffix(".parquet")?;
    Some(name.rsplit_once('-')?.0)
}

/// A table path as a key relative to the warehouse root (`findings/<path>`).
pub fn warehouse_key(table_path: &str) -> String {
    format!("{FINDINGS_DIR}/{table_path}")
}

/// A commit's quarantine file, relative to the warehouse root.
pub fn quarantine_key(attempt: &str) -> String {
    format!("{QUARANTINE_DIR}/{attempt}.jsonl")
}

/// The attempt a quarantine key belongs to.
pub fn quarantine_attempt(key: &str) -> Option<&str> {
    key.rsplit('/').next()?.strip_suffix(".jsonl")
}

/// The attempt an index key belongs to.
pub fn index_attempt(key: &str) -> Option<&str> {
    key.rsplit('/')
        .next()?
        .strip_suffix(&format!(".{}", gdq_schemas::ID_INDEX_EXTENSION))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_file_names_its_attempt() {
        let path = data_file_path(
            "Backdoor:EC2/C&CActivity.B!DNS",
            "20261128T124157Z-6ac0dc30",
            3,
        );
        assert_eq!(
            path,
            "type=Backdoor%3AEC2%2FC%26CActivity.B%21DNS/20261128T124157Z-6ac0dc30-00003.parquet"
        );
        assert_eq!(batch_of(&path), Some("20261128T124157Z-6ac0dc30"));
        let rewritten = data_file_path("A", &attempt_name("20261128T124157Z-6ac0dc30", 2), 0);
        assert_eq!(batch_of(&rewritten), Some("20261128T124157Z-6ac0dc30.2"));
        assert_eq!(
            batch_of("findings/type=A/c20261128T124157Z-6ac0dc30-00000.parquet"),
            Some("c20261128T124157Z-6ac0dc30")
        );
        assert_eq!(batch_of("type=A/notes.txt"), None);
    }

    #[test]
    fn batch_ids_sort_by_time_and_differ() {
        let (a, b) = (new_batch_id(), new_batch_id());
        assert_eq!(a.len(), "20240102T030405Z-1a2b3c4d".len());
        assert_ne!(a, b);
        assert_eq!(quarantine_attempt(&quarantine_key(&a)), Some(a.as_str()));
        assert_eq!(
            index_attempt(&gdq_schemas::id_index_key(&a)),
            Some(a.as_str())
        );
    }
}
