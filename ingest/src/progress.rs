//! Live counters of a running ingest, read by whoever shows progress (a bar on a terminal,
//! log lines otherwise). Totals are known once discovery or listing is done.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Progress {
    objects_total: AtomicU64,
    bytes_total: AtomicU64,
    objects_done: AtomicU64,
    bytes_done: AtomicU64,
    findings: AtomicU64,
}

/// One reading of the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub objects_total: u64,
    pub bytes_total: u64,
    pub objects_done: u64,
    pub bytes_done: u64,
    pub findings: u64,
}

impl Progress {
    /// Sets what the run will go through (objects and their stored bytes).
    pub fn set_total(&self, objects: u64, bytes: u64) {
        self.objects_total.store(objects, Ordering::Relaxed);
        self.bytes_total.store(bytes, Ordering::Relaxed);
    }

    /// Counts one object done (ingested, skipped, refused or failed).
    pub fn object_done(&self, bytes: u64, findings: u64) {
        self.objects_done.fetch_add(1, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        self.findings.fetch_add(findings, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            objects_total: self.objects_total.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            objects_done: self.objects_done.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            findings: self.findings.load(Ordering::Relaxed),
        }
    }
}
