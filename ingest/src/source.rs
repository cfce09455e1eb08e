//! Export objects on a local file system: discovery and identity.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use xxhash_rust::xxh3::{Xxh3, xxh3_128};

use crate::error::IngestError;
use crate::notification::export_time_key;

/// One export object found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalExport {
    pub path: PathBuf,
    pub uri: String,
    pub size: u64,
}

/// What discovery found.
#[derive(Debug, Default)]
pub struct Discovery {
    pub exports: Vec<LocalExport>,
    /// Files under the given folders that are not `.jsonl`/`.jsonl.gz` exports.
    pub ignored_files: u64,
}

fn is_export_name(name: &str) -> bool {
    name.ends_with(".jsonl.gz") || name.ends_with(".jsonl")
}

/// Finds export objects: a path that is a file is taken as it is; a folder is walked
/// recursively for `*.jsonl.gz` and `*.jsonl` (symbolic links to folders are not followed,
/// hidden folders and gdq warehouses' `_gdq` folders are skipped). In time order: by export
/// day, then path ([`export_time_key`]).
pub fn discover(paths: &[PathBuf]) -> Result<Discovery, IngestError> {
    let mut found = Discovery::default();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => IngestError::MissingPath(path.clone()),
            _ => IngestError::Input {
                path: path.clone(),
                source: e,
            },
        })?;
        if meta.is_dir() {
            walk(path, &mut found)?;
        } else {
            found.exports.push(export(path, meta.len())?);
        }
    }
    // The key ends with the URI, which one path alone gives: duplicates end up adjacent.
    found
        .exports
        .sort_by_cached_key(|e| export_time_key(&e.uri));
    found.exports.dedup_by(|a, b| a.path == b.path);
    Ok(found)
}

fn export(path: &Path, size: u64) -> Result<LocalExport, IngestError> {
    let absolute = std::path::absolute(path).map_err(|source| IngestError::Input {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(LocalExport {
        uri: file_uri(&absolute),
        path: absolute,
        size,
    })
}

fn walk(dir: &Path, found: &mut Discovery) -> Result<(), IngestError> {
    let entries = std::fs::read_dir(dir).map_err(|source| IngestError::Input {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| IngestError::Input {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|source| IngestError::Input {
            path: path.clone(),
            source,
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if kind.is_dir() {
            if !name.starts_with('.') && name != "_gdq" {
                walk(&path, found)?;
            }
        } else if is_export_name(&name) {
            let size = std::fs::metadata(&path)
                .map_err(|source| IngestError::Input {
                    path: path.clone(),
                    source,
                })?
                .len();
            found.exports.push(export(&path, size)?);
        } else {
            found.ignored_files += 1;
        }
    }
    Ok(())
}

/// `file://` URI of an absolute path, percent-encoding what a URI path cannot hold.
pub fn file_uri(path: &Path) -> String {
    const URI_PATH: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b':')
        .remove(b'+')
        .remove(b',')
        .remove(b'=')
        .remove(b'@');
    format!(
        "file://{}",
        utf8_percent_encode(&path.to_string_lossy(), URI_PATH)
    )
}

/// Identity of a local export: a hash of its bytes, so the same export copied or moved is
/// still recognised as ingested. Streams the file; see [`content_id`] for bytes in memory.
pub fn content_source_id(path: &Path) -> Result<String, IngestError> {
    let input = |source| IngestError::Input {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(input)?;
    let mut hasher = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(input)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(id_of_digest(hasher.digest128()))
}

/// [`content_source_id`] of an export's bytes.
pub fn content_id(bytes: &[u8]) -> String {
    id_of_digest(xxh3_128(bytes))
}

fn id_of_digest(digest: u128) -> String {
    format!("content-xxh3-{digest:032x}")
}

/// Reads a whole export into `bytes` (cleared first, its allocation reused).
pub fn read_export(path: &Path, bytes: &mut Vec<u8>) -> Result<(), IngestError> {
    bytes.clear();
    File::open(path)
        .and_then(|mut file| file.read_to_end(bytes))
        .map(drop)
        .map_err(|source| IngestError::Input {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_folders_for_exports_only() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir
            .path()
            .join("AWSLogs/111122223333/GuardDuty/us-east-1/2024/01/02");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("a b.jsonl.gz"), b"x").unwrap();
        std::fs::write(deep.join("b.jsonl"), b"x").unwrap();
        std::fs::write(deep.join("notes.txt"), b"x").unwrap();
        std::fs::create_dir_all(dir.path().join("_gdq")).unwrap();
        std::fs::write(dir.path().join("_gdq/c.jsonl"), b"x").unwrap();
        let found = discover(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<_> = found
            .exports
            .iter()
            .map(|e| e.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        // Outside the export layout (plain `.jsonl`) first, then by export day.
        assert_eq!(names, ["b.jsonl", "a b.jsonl.gz"]);
        assert_eq!(found.ignored_files, 1);
        assert!(
            found.exports[1].uri.starts_with("file:///")
                && found.exports[1].uri.ends_with("/a%20b.jsonl.gz")
        );
    }

    #[test]
    fn a_missing_path_is_named() {
        let err = discover(&[PathBuf::from("/no/such/dir")]).unwrap_err();
        assert_eq!(err.to_string(), "no such file or directory: /no/such/dir");
    }

    #[test]
    fn identical_bytes_have_one_identity() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"same").unwrap();
        std::fs::write(dir.path().join("b"), b"same").unwrap();
        std::fs::write(dir.path().join("c"), b"other").unwrap();
        let id = |n: &str| content_source_id(&dir.path().join(n)).unwrap();
        assert_eq!(id("a"), id("b"));
        assert_ne!(id("a"), id("c"));
        let mut bytes = Vec::new();
        read_export(&dir.path().join("a"), &mut bytes).unwrap();
        assert_eq!(
            content_id(&bytes),
            id("a"),
            "streamed and in-memory ids agree"
        );
    }
}
