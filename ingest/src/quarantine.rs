//! Quarantine: what could not be ingested, kept with where it came from and why.
//!
//! One JSON object per line in `_gdq/quarantine/<batch>.jsonl`, published with its batch so a
//! re-run after a crash never records a line twice. Bad lines keep their text (`text`, or
//! `bytes_base64` when they are not UTF-8); object-level errors have no `line`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Serialize;

use crate::error::IngestError;

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
    ) -> Result<(), IngestError> {
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
                    std::fs::create_dir_all(dir).map_err(IngestError::warehouse(dir))?;
                }
                let file = File::create(&self.path).map_err(IngestError::warehouse(&self.path))?;
                self.out.insert(BufWriter::new(file))
            }
        };
        serde_json::to_writer(&mut *out, &record)
            .map_err(|e| IngestError::warehouse(&self.path)(e.into()))?;
        out.write_all(b"\n")
            .map_err(IngestError::warehouse(&self.path))?;
        self.records += 1;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes and syncs the file, if any record was written.
    pub fn finish(self) -> Result<u64, IngestError> {
        if let Some(out) = self.out {
            let file = out
                .into_inner()
                .map_err(|e| IngestError::warehouse(&self.path)(e.into_error()))?;
            file.sync_all()
                .map_err(IngestError::warehouse(&self.path))?;
        }
        Ok(self.records)
    }
}
