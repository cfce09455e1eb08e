//! A snapshot: the table's data files as of one version, which is all a reader needs. gdq's
//! queries, `status`, `schema drift` and the id lookup read this instead of listing the
//! partition folders, so they never see a file that is not committed, or both the inputs
//! and the outputs of a compaction.

use deltalake_core::table::state::DeltaTableState;
use gdq_schemas::PARTITION_COLUMN;

use crate::footer::max_updated_at;
use crate::layout::warehouse_key;

/// One data file of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// Its path in the table: `type=<enc>/<name>.parquet`.
    pub path: String,
    /// The partition value: the exact finding type.
    pub finding_type: String,
    pub size: u64,
    /// When it was added, in epoch milliseconds.
    pub modified_ms: i64,
    /// Rows, from the commit's statistics (absent for files another tool added without them).
    pub rows: Option<u64>,
    /// Newest `updated_at` in it, from the statistics.
    pub max_updated_at_ms: Option<i64>,
}

impl DataFile {
    /// Its key relative to the warehouse root (`findings/type=…/….parquet`).
    pub fn key(&self) -> String {
        warehouse_key(&self.path)
    }
}

/// The table as of one version.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: u64,
    /// Sorted by path.
    pub files: Vec<DataFile>,
}

impl Snapshot {
    pub(crate) fn of(state: &DeltaTableState) -> Snapshot {
        let mut files: Vec<DataFile> = state
            .log_data()
            .iter()
            .map(|f| {
                let stats = f.stats();
                DataFile {
                    path: f.path().into_owned(),
                    finding_type: f
                        .partition_values_map()
                        .remove(PARTITION_COLUMN)
                        .flatten()
                        .unwrap_or_default(),
                    size: u64::try_from(f.size()).unwrap_or(0),
                    modified_ms: f.modification_time(),
                    rows: f.num_records().map(|n| n as u64),
                    max_updated_at_ms: stats.as_deref().and_then(max_updated_at),
                }
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Snapshot {
            version: state.version(),
            files,
        }
    }

    /// Total rows, when every file's count is known.
    pub fn rows(&self) -> Option<u64> {
        self.files.iter().map(|f| f.rows).sum()
    }
}
