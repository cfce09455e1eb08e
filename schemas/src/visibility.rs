//! Which data files are part of the table, given the compaction records: the one rule every
//! gdq reader (queries, `gdq status`) applies, so they agree whatever a compaction left.
//!
//! A compaction moves its outputs (`c<batch>-<part>.parquet`) into `findings/` before its
//! record `_gdq/compactions/<batch>.json` exists, and deletes its inputs after: outputs of
//! unrecorded compactions and inputs of recorded ones are not part of the table.

use std::collections::HashSet;

/// Where compaction records are, relative to the warehouse root.
pub const COMPACTIONS_DIR: &str = "_gdq/compactions";
/// Where a record moves once its inputs are deleted. Readers only need the names of these,
/// so the per-query cost stays one listing however many compactions ran.
pub const COMPACTIONS_DONE_DIR: &str = "_gdq/compactions/done";

/// The committed compactions, as readers need them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactionView {
    committed: HashSet<String>,
    replaced: HashSet<String>,
}

impl CompactionView {
    /// Adds one record (its JSON); returns a message for a record that does not parse.
    pub fn add_record(&mut self, json: &[u8]) -> Result<(), String> {
        let record: serde_json::Value = serde_json::from_slice(json)
            .map_err(|e| format!("unreadable compaction record: {e}"))?;
        if let Some(batch) = record.get("batch").and_then(|b| b.as_str()) {
            self.committed.insert(batch.to_string());
        }
        for input in record
            .get("inputs")
            .and_then(|i| i.as_array())
            .into_iter()
            .flatten()
            .filter_map(|i| i.as_str())
        {
            self.replaced
                .insert(input.rsplit('/').next().unwrap_or(input).to_string());
        }
        Ok(())
    }

    /// Adds a finished compaction (its record moved to [`COMPACTIONS_DONE_DIR`]): its
    /// outputs are part of the table and its inputs are gone.
    pub fn add_finished(&mut self, batch: &str) {
        self.committed.insert(batch.to_string());
    }

    /// Whether the data file named `name` is not part of the table now.
    pub fn hides(&self, name: &str) -> bool {
        if self.replaced.contains(name) {
            return true;
        }
        name.starts_with('c')
            && name
                .strip_suffix(".parquet")
                .and_then(|n| n.rsplit_once('-'))
                .is_some_and(|(batch, _)| !self.committed.contains(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_of_committed_and_outputs_of_uncommitted_compactions_are_hidden() {
        let mut c = CompactionView::default();
        c.add_record(
            br#"{"batch": "c20240101T000000Z-aa", "inputs": ["findings/type=T/20231231T000000Z-bb-00000.parquet"]}"#,
        )
        .unwrap();
        assert!(c.hides("20231231T000000Z-bb-00000.parquet"));
        assert!(!c.hides("20240102T000000Z-dd-00000.parquet"));
        assert!(!c.hides("c20240101T000000Z-aa-00000.parquet"));
        assert!(c.hides("c20240105T000000Z-ee-00000.parquet"));
        assert!(c.add_record(b"{").is_err());
        c.add_finished("c20240105T000000Z-ee");
        assert!(!c.hides("c20240105T000000Z-ee-00000.parquet"));
    }
}
