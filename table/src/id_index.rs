//! Reading the id index of a snapshot (its format: `gdq_schemas::IdIndex`). Each commit
//! writes one index file for the files it adds (`crate::append`); a lookup reads the files
//! of the commits whose files are in the snapshot, named after the files themselves, so no
//! folder is listed. A missing or damaged index file only leaves its files in the scan.

use std::collections::BTreeSet;

use gdq_schemas::{IdIndex, decode_id_index, id_index_key};

use crate::error::Result;
use crate::layout::batch_of;
use crate::snapshot::Snapshot;
use crate::store::Store;

/// The id index of every commit with a file in `snapshot`.
pub async fn read_id_index(store: &Store, snapshot: &Snapshot) -> Result<IdIndex> {
    let keys: Vec<String> = snapshot
        .files
        .iter()
        .filter_map(|f| batch_of(&f.path))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(id_index_key)
        .collect();
    let mut index = IdIndex::default();
    for bytes in store.get_many(&keys).await?.into_iter().flatten() {
        if let Ok(entries) = decode_id_index(&bytes) {
            let _ = index.add(entries);
        }
    }
    Ok(index)
}
