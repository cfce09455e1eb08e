//! What a recovery or vacuum removed: the report a writer's opening and `gdq vacuum` give.

/// Files removed because no commit names them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Attempts (batches) whose uncommitted files were removed.
    pub discarded: Vec<String>,
    /// Uncommitted data, index and quarantine files removed.
    pub debris_files: usize,
    /// Files a compaction removed from the table, deleted after the retention.
    pub expired_files: usize,
    /// Removed files still kept for the retention.
    pub retained_files: usize,
}
