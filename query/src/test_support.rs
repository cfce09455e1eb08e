//! Small committed tables for the unit tests.

use gdq_schemas::{FindingRows, parse_finding};
use gdq_table::{PartitionWriter, SourceRecord, StagedAppend, Warehouse};

/// A staged batch of `n` findings of one type from one made-up object.
pub(crate) fn staged_batch(warehouse: &Warehouse, finding_type: &str, n: usize) -> StagedAppend {
    let batch = gdq_table::layout::new_batch_id();
    let staging = warehouse.stage(&batch).expect("staging");
    let mut writer = PartitionWriter::new(finding_type, staging.dir(), &batch, 1 << 30);
    let mut rows = FindingRows::new(0);
    let uri = format!("s3://exports/{batch}.jsonl.gz");
    for i in 0..n {
        let json = format!(
            r#"{{"id":"{batch}-{i}","type":"{finding_type}","severity":5,"updatedAt":"2024-01-0{}T00:00:00Z"}}"#,
            1 + i % 9
        );
        rows.append(&parse_finding(&json).expect("a finding"), &uri);
    }
    writer
        .write(&rows.finish().expect("rows"))
        .expect("written");
    StagedAppend {
        files: writer.finish().expect("closed"),
        sources: vec![SourceRecord {
            id: format!("test-{batch}"),
            uri,
            rows: n as u64,
            quarantined: 0,
            error: None,
        }],
        batch,
        staging,
        failed: Default::default(),
        quarantine: None,
    }
}
