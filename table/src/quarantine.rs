//! Quarantine: what could not be ingested, kept with where it came from and why.
//!
//! One JSON object per line in `_gdq/quarantine/<attempt>.jsonl`, written beside the table
//! before the commit that covers its objects and counted only once that commit landed (its
//! `gdq.commit/<attempt>` is in the ledger), so a re-run after a crash never records a line
//! twice. Bad lines keep their text (`text`, or `bytes_base64` when they are not UTF-8);
//! object-level errors have no `line`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Serialize;

use std::collections::HashSet;

use crate::error::TableError;

#[derive(Serialize)]
struct QuarantineRecord<'a> {
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_base64: Option<String>,
}

/// Appends quarantine records for one batch; the file is created on the first record.
pub struct QuarantineWriter {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    records: u64,
}

impl QuarantineWriter {
    pub fn new(path: &Path) -> Self {
        QuarantineWriter {
            path: path.to_path_buf(),
            out: None,
            records: 0,
        }
    }

    /// Records a line (`line` = its number) or, with `line: None`, a whole object.
    pub fn record(
        &mut self,
        source: &str,
        line: Option<u64>,
        reason: &str,
        bytes: &[u8],
    ) -> Result<(), TableError> {
        let (text, bytes_base64) = match std::str::from_utf8(bytes) {
            Ok(text) => (Some(text), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            ),
        };
        let record = QuarantineRecord {
            source,
            line,
            reason,
            text: text.filter(|t| !t.is_empty()),
            bytes_base64,
        };
        let out = match self.out.as_mut() {
            Some(out) => out,
            None => {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir).map_err(TableError::io(dir))?;
                }
                let file = File::create(&self.path).map_err(TableError::io(&self.path))?;
                self.out.insert(BufWriter::new(file))
            }
        };
        serde_json::to_writer(&mut *out, &record)
            .map_err(|e| TableError::io(&self.path)(e.into()))?;
        out.write_all(b"\n").map_err(TableError::io(&self.path))?;
        self.records += 1;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes and syncs the file, if any record was written.
    pub fn finish(self) -> Result<u64, TableError> {
        if let Some(out) = self.out {
            let file = out
                .into_inner()
                .map_err(|e| TableError::io(&self.path)(e.into_error()))?;
            file.sync_all().map_err(TableError::io(&self.path))?;
        }
        Ok(self.records)
    }
}

/// Rewrites a quarantine file without the records of the given sources (objects another
/// writer committed first, or that failed part way); returns the records left. A file left
/// with none is removed.
pub fn drop_records(path: &Path, sources: &HashSet<String>) -> Result<u64, TableError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(TableError::io(path)(e)),
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| {
                    v.get("source")
                        .and_then(|s| s.as_str())
                        .map(|s| !sources.contains(s))
                })
                .unwrap_or(true)
        })
        .collect();
    // A new file renamed over the old: the old one may be linked into the warehouse.
    std::fs::remove_file(path).map_err(TableError::io(path))?;
    if !kept.is_empty() {
        let tmp = path.with_extension("rewrite");
        std::fs::write(&tmp, kept.join("\n") + "\n").map_err(TableError::io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(TableError::io(path))?;
    }
    Ok(kept.len() as u64)
}

/// Records in a quarantine file's bytes.
pub fn count_records(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_dropped_sources_go_and_the_rest_stay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.jsonl");
        let mut writer = QuarantineWriter::new(&path);
        writer.record("s3://b/a", Some(3), "bad", b"{").unwrap();
        writer.record("s3://b/b", None, "refused", &[0xff]).unwrap();
        writer.record("s3://b/a", Some(9), "bad", b"x").unwrap();
        assert_eq!(writer.finish().unwrap(), 3);
        let text = std::fs::read(&path).unwrap();
        assert_eq!(count_records(&text), 3);
        assert!(String::from_utf8_lossy(&text).contains("bytes_base64"));
        let dropped = HashSet::from(["s3://b/a".to_string()]);
        assert_eq!(drop_records(&path, &dropped).unwrap(), 1);
        let all = HashSet::from(["s3://b/b".to_string()]);
        assert_eq!(drop_records(&path, &all).unwrap(), 0);
        assert!(!path.exists());
    }
}
