//! Writes a commit's id index (see `gdq_schemas::IdIndex`): the `id` bloom filters of the
//! files it adds, copied out of the staged files just before the commit, so the index
//! describes the files exactly as they are published (after any rewrite of the commit step).

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;

use gdq_schemas::{IdIndexEntry, encode_id_index, id_index_key};
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::reader::ChunkReader;

use crate::error::IngestError;
use crate::ledger::{FileRecord, write_atomic};
use crate::warehouse::Warehouse;

/// The `id` bloom filters of one staged file, as stored in it.
fn entry(staging_root: &Path, relative: &str) -> Result<IdIndexEntry, IngestError> {
    let path = staging_root.join(relative);
    let err = |source| IngestError::Parquet {
        finding_type: path.display().to_string(),
        source,
    };
    let file = File::open(&path).map_err(IngestError::warehouse(&path))?;
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(err)?;
    let id_column = metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string() == "id");
    let mut row_groups = Vec::with_capacity(metadata.num_row_groups());
    for row_group in metadata.row_groups() {
        // Without a length the filter's extent is unknown: the row group then has no entry
        // and stays in every lookup rather than the index guessing.
        let extent = id_column.map(|i| row_group.column(i)).and_then(|c| {
            let offset = u64::try_from(c.bloom_filter_offset()?).ok()?;
            let length = usize::try_from(c.bloom_filter_length()?).ok()?;
            Some((offset, length))
        });
        let filter = extent
            .map(|(offset, length)| file.get_bytes(offset, length).map(|b| b.to_vec()))
            .transpose()
            .map_err(err)?;
        row_groups.push(filter);
    }
    Ok(IdIndexEntry {
        path: relative.to_string(),
        row_groups,
    })
}

/// Writes the index of `files` (staged under `staging_root`) to its staged place,
/// `<staging_root>/_gdq/index/<batch>.ids`, durably. Returns its key (relative to the
/// warehouse root), or `None` when there is no file to index.
pub fn stage_id_index(
    staging_root: &Path,
    batch: &str,
    files: &[FileRecord],
) -> Result<Option<String>, IngestError> {
    let key = id_index_key(batch);
    let path = staging_root.join(&key);
    if files.is_empty() {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(IngestError::warehouse(&path)(e)),
        }
        return Ok(None);
    }
    let entries = files
        .iter()
        .map(|f| entry(staging_root, &f.path))
        .collect::<Result<Vec<_>, _>>()?;
    write_atomic(&path, &encode_id_index(&entries))?;
    Ok(Some(key))
}

/// The commit a data file belongs to: `<batch>-<part>.parquet` → `<batch>`.
fn batch_of(relative: &str) -> Option<&str> {
    let name = relative.rsplit('/').next()?.strip_suffix(".parquet")?;
    Some(name.rsplit_once('-')?.0)
}

/// Deletes the index files of the commits that added `removed`, once no data file of
/// theirs is left among `remaining`. (An index that outlives its files is harmless,
/// readers only ask it about files they list, but it would be read by every lookup.)
pub fn retire_id_indexes(
    warehouse: &Warehouse,
    removed: &[String],
    remaining: &[String],
) -> Result<(), IngestError> {
    let alive: HashSet<&str> = remaining.iter().filter_map(|r| batch_of(r)).collect();
    let mut retired: Vec<String> = removed
        .iter()
        .filter_map(|r| batch_of(r))
        .filter(|b| !alive.contains(b))
        .map(id_index_key)
        .collect();
    retired.sort();
    retired.dedup();
    warehouse.delete_files(&retired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_file_names_its_commit() {
        assert_eq!(
            batch_of("findings/type=A/20261128T124157Z-6ac0dc30-00003.parquet"),
            Some("20261128T124157Z-6ac0dc30")
        );
        assert_eq!(
            batch_of("findings/type=A/c20261128T124157Z-6ac0dc30-00000.parquet"),
            Some("c20261128T124157Z-6ac0dc30")
        );
        assert_eq!(batch_of("findings/type=A/notes.txt"), None);
    }
}
