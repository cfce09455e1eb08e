//! The local folder a batch (or a compaction) is built in before its files are published.
//!
//! For a local warehouse it is `<warehouse>/_gdq/staging/<batch>/`, on the warehouse's disk
//! so publishing is a hard link, and a file lock on its `.lock` says the batch's process is
//! alive: recovery removes the files of a batch whose lock nobody holds. For an S3 warehouse
//! it is a temporary folder of the process; there, liveness is the files' age.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Result, TableError};
use crate::layout::STAGING_DIR;

const LOCK: &str = ".lock";

/// A batch's build folder, held while the batch lives.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    /// Holds the liveness lock (local warehouses).
    _live: Option<File>,
    /// Deletes the folder on drop (S3 warehouses' temporary folders).
    _temp: Option<tempfile::TempDir>,
}

impl Staging {
    /// The staging folder of `batch` in a local warehouse, locked.
    pub(crate) fn local(root: &Path, batch: &str) -> Result<Staging> {
        let dir = root.join(STAGING_DIR).join(batch);
        std::fs::create_dir_all(&dir).map_err(TableError::io(&dir))?;
        let path = dir.join(LOCK);
        let file = File::create(&path).map_err(TableError::io(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(Staging {
                dir,
                _live: Some(file),
                _temp: None,
            }),
            Err(TryLockError::WouldBlock) => Err(TableError::Internal(format!(
                "batch {batch} is staged twice"
            ))),
            Err(TryLockError::Error(e)) => Err(TableError::io(&path)(e)),
        }
    }

    /// A temporary staging folder under `scratch`.
    pub(crate) fn temporary(scratch: &Path, batch: &str) -> Result<Staging> {
        let temp = tempfile::Builder::new()
            .prefix(&format!("{batch}-"))
            .tempdir_in(scratch)
            .map_err(TableError::io(scratch))?;
        Ok(Staging {
            dir: temp.path().to_path_buf(),
            _live: None,
            _temp: Some(temp),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes the folder's contents once its batch committed (or gave up).
    pub(crate) fn clear(&self) -> Result<()> {
        for entry in std::fs::read_dir(&self.dir).map_err(TableError::io(&self.dir))? {
            let entry = entry.map_err(TableError::io(&self.dir))?;
            if entry.file_name() == LOCK {
                continue;
            }
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(TableError::io(&path))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // A local batch's folder goes with it; a crash leaves it for recovery instead.
        if self._live.is_some() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether a process still holds the local staging folder of `batch`.
pub(crate) fn is_live(root: &Path, batch: &str) -> bool {
    let Ok(file) = File::options()
        .write(true)
        .open(root.join(STAGING_DIR).join(batch).join(LOCK))
    else {
        return false;
    };
    matches!(file.try_lock(), Err(TryLockError::WouldBlock))
}

/// The batch names of the local staging folders.
pub(crate) fn local_batches(root: &Path) -> Result<Vec<String>> {
    let dir = root.join(STAGING_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TableError::io(&dir)(e)),
    };
    let mut batches: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    batches.sort();
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_staging_folder_is_live_and_goes_when_dropped() {
        let root = tempfile::tempdir().unwrap();
        let staging = Staging::local(root.path(), "b1").unwrap();
        assert!(is_live(root.path(), "b1"));
        assert!(
            Staging::local(root.path(), "b1").is_err(),
            "one holder at a time"
        );
        assert_eq!(local_batches(root.path()).unwrap(), ["b1"]);
        drop(staging);
        assert!(!is_live(root.path(), "b1"));
        assert!(local_batches(root.path()).unwrap().is_empty());
    }
}
