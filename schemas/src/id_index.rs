//! The id index: which data files may hold a finding id, without opening them.
//!
//! Every data file carries a Parquet bloom filter on `id` in each row group, but a reader
//! must decode a file's footer to find them, and on a warehouse of ~135 files those footers
//! are most of what a lookup by id costs. Each commit therefore also writes
//! `_gdq/index/<batch>.ids`: the `id` bloom filters of every file it adds, copied byte for
//! byte out of the files. A lookup reads these (one per commit, ~1 % of the table's
//! footers) and opens only the files whose filters may hold the id.
//!
//! The index only ever narrows a scan: a file without an entry (written before the index
//! existed, or by another tool), a row group without a filter, or an index file that is
//! unreadable or fails its checksum leaves the file in the scan. Entries are keyed by the
//! file's path, and data files are never rewritten in place, so an entry can go stale only
//! by its file being deleted, and then it is simply never asked for.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! "GDQIDS01"                              magic and format version
//! per file:
//!   u32 path length, path                 relative to the warehouse root
//!   u32 row groups
//!   per row group: u32 length, filter     the `id` bloom filter as stored in the file
//!                                         (Thrift header + bitset); length 0: none
//! u64 xxh3-64 of everything above
//! ```

use std::collections::HashMap;

use parquet::bloom_filter::Sbbf;

/// Where index files live, relative to the warehouse root.
pub const ID_INDEX_DIR: &str = "_gdq/index";
/// Extension of index files.
pub const ID_INDEX_EXTENSION: &str = "ids";

const MAGIC: &[u8; 8] = b"GDQIDS01";

/// A commit's index file, relative to the warehouse root.
pub fn id_index_key(batch: &str) -> String {
    format!("{ID_INDEX_DIR}/{batch}.{ID_INDEX_EXTENSION}")
}

/// Why an index file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdIndexError {
    #[error("not a gdq id index (bad magic or format version)")]
    Magic,
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("checksum mismatch")]
    Checksum,
    #[error("file path is not UTF-8")]
    Path,
    #[error("bloom filter of {path}, row group {row_group}: {reason}")]
    Filter {
        path: String,
        row_group: usize,
        reason: String,
    },
}

/// One data file's entry: the serialized `id` bloom filter of each row group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdIndexEntry {
    /// Relative to the warehouse root: `findings/type=<enc>/<name>.parquet`.
    pub path: String,
    /// Per row group, the filter as stored in the file; `None` when it has none.
    pub row_groups: Vec<Option<Vec<u8>>>,
}

/// Encodes one index file.
pub fn encode_id_index(entries: &[IdIndexEntry]) -> Vec<u8> {
    let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = MAGIC.to_vec();
    for entry in entries {
        out.extend_from_slice(&len32(entry.path.len()));
        out.extend_from_slice(entry.path.as_bytes());
        out.extend_from_slice(&len32(entry.row_groups.len()));
        for filter in &entry.row_groups {
            let bytes = filter.as_deref().unwrap_or_default();
            out.extend_from_slice(&len32(bytes.len()));
            out.extend_from_slice(bytes);
        }
    }
    let checksum = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

/// Reads an index file back into its entries.
pub fn decode_id_index(bytes: &[u8]) -> Result<Vec<IdIndexEntry>, IdIndexError> {
    if bytes.len() < MAGIC.len() + 8 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(IdIndexError::Magic);
    }
    let (body, checksum) = bytes.split_at(bytes.len() - 8);
    let mut stored = [0u8; 8];
    stored.copy_from_slice(checksum);
    if xxhash_rust::xxh3::xxh3_64(body) != u64::from_le_bytes(stored) {
        return Err(IdIndexError::Checksum);
    }
    let mut cursor = Cursor {
        bytes: body,
        at: MAGIC.len(),
    };
    let mut entries = Vec::new();
    while cursor.at < body.len() {
        let path_len = cursor.u32()?;
        let path = std::str::from_utf8(cursor.take(path_len)?)
            .map_err(|_| IdIndexError::Path)?
            .to_string();
        let groups = cursor.u32()?;
        let mut row_groups = Vec::with_capacity(groups.min(1 << 16));
        for _ in 0..groups {
            let len = cursor.u32()?;
            let filter = cursor.take(len)?;
            row_groups.push((!filter.is_empty()).then(|| filter.to_vec()));
        }
        entries.push(IdIndexEntry { path, row_groups });
    }
    Ok(entries)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], IdIndexError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(IdIndexError::Truncated(self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<usize, IdIndexError> {
        let mut word = [0u8; 4];
        word.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(word) as usize)
    }
}

/// The decoded filters of every indexed file, ready to probe.
#[derive(Debug, Default)]
pub struct IdIndex {
    /// Per file path, per row group, its filter (`None`: the row group has none).
    files: HashMap<String, Vec<Option<Sbbf>>>,
}

impl IdIndex {
    /// Adds the entries of one index file. Nothing is added when any filter fails to
    /// parse: a file with a damaged entry stays in every scan.
    pub fn add(&mut self, entries: Vec<IdIndexEntry>) -> Result<(), IdIndexError> {
        let mut parsed = Vec::with_capacity(entries.len());
        for entry in entries {
            let mut filters = Vec::with_capacity(entry.row_groups.len());
            for (row_group, bytes) in entry.row_groups.iter().enumerate() {
                let filter = bytes
                    .as_deref()
                    .map(Sbbf::from_bytes)
                    .transpose()
                    .map_err(|e| IdIndexError::Filter {
                        path: entry.path.clone(),
                        row_group,
                        reason: e.to_string(),
                    })?;
                filters.push(filter);
            }
            parsed.push((entry.path, filters));
        }
        self.files.extend(parsed);
        Ok(())
    }

    /// Number of files the index covers.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the index covers no file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Whether the file at `path` (relative to the warehouse root) may hold any of `ids`.
    /// `true` for a file the index does not cover.
    pub fn may_contain(&self, path: &str, ids: &[impl AsRef<str>]) -> bool {
        let Some(row_groups) = self.files.get(path) else {
            return true;
        };
        row_groups.iter().any(|filter| match filter {
            None => true,
            Some(filter) => ids.iter().any(|id| filter.check(id.as_ref())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A filter holding `ids`, serialized the way a Parquet file stores it.
    fn filter(ids: &[&str]) -> Vec<u8> {
        let mut sbbf = Sbbf::new_with_ndv_fpp(100, 0.01).expect("filter");
        for id in ids {
            sbbf.insert(*id);
        }
        let mut bytes = Vec::new();
        sbbf.write(&mut bytes).expect("serialize");
        bytes
    }

    fn entries() -> Vec<IdIndexEntry> {
        vec![
            IdIndexEntry {
                path: "findings/type=A/b-00000.parquet".into(),
                row_groups: vec![Some(filter(&["a1", "a2"])), Some(filter(&["a3"]))],
            },
            IdIndexEntry {
                path: "findings/type=B/b-00000.parquet".into(),
                row_groups: vec![Some(filter(&["b1"]))],
            },
            IdIndexEntry {
                path: "findings/type=C/b-00000.parquet".into(),
                row_groups: vec![Some(filter(&["c1"])), None],
            },
        ]
    }

    #[test]
    fn round_trips() {
        let bytes = encode_id_index(&entries());
        assert_eq!(decode_id_index(&bytes), Ok(entries()));
        assert_eq!(
            decode_id_index(&encode_id_index(&[])),
            Ok(Vec::new()),
            "an empty index is valid"
        );
    }

    #[test]
    fn keeps_exactly_the_files_that_may_hold_an_id() {
        let mut index = IdIndex::default();
        index
            .add(decode_id_index(&encode_id_index(&entries())).expect("decode"))
            .expect("add");
        assert_eq!(index.len(), 3);
        let a = "findings/type=A/b-00000.parquet";
        let b = "findings/type=B/b-00000.parquet";
        let c = "findings/type=C/b-00000.parquet";
        assert!(index.may_contain(a, &["a3"]), "second row group");
        assert!(!index.may_contain(a, &["b1"]));
        assert!(index.may_contain(b, &["zz", "b1"]), "any of several ids");
        assert!(!index.may_contain(b, &["a1", "a3"]));
        assert!(
            index.may_contain(c, &["b1"]),
            "a row group without a filter may hold anything"
        );
        assert!(
            index.may_contain("findings/type=D/x-00000.parquet", &["a1"]),
            "a file the index does not cover stays in the scan"
        );
    }

    #[test]
    fn damage_is_detected_not_trusted() {
        let good = encode_id_index(&entries());
        let mut flipped = good.clone();
        flipped[40] ^= 0x10;
        assert_eq!(decode_id_index(&flipped), Err(IdIndexError::Checksum));
        assert_eq!(decode_id_index(b"GDQIDS0"), Err(IdIndexError::Magic));
        assert_eq!(
            decode_id_index(&good[..good.len() - 3]),
            Err(IdIndexError::Checksum)
        );

        // A body cut short but carrying a valid checksum of itself.
        let mut cut = good[..MAGIC.len() + 6].to_vec();
        cut.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&cut).to_le_bytes());
        assert!(matches!(
            decode_id_index(&cut),
            Err(IdIndexError::Truncated(_))
        ));

        let mut index = IdIndex::default();
        let bad = vec![IdIndexEntry {
            path: "findings/type=A/b-00000.parquet".into(),
            row_groups: vec![Some(vec![1, 2, 3])],
        }];
        assert!(matches!(index.add(bad), Err(IdIndexError::Filter { .. })));
        assert!(index.is_empty(), "nothing of a damaged file is added");
    }
}
