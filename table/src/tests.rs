//! The commit path against a local warehouse, writer against writer: what two processes
//! would do, with each step in the test's hand.

use std::collections::HashSet;

use gdq_schemas::{FindingRows, parse_finding};

use crate::append::{SourceRecord, StagedAppend};
use crate::compact::{CompactOptions, compact};
use crate::vacuum::{VacuumOptions, vacuum};
use crate::warehouse::Warehouse;
use crate::writer::PartitionWriter;
use crate::{Table, layout};

const TYPE: &str = "Backdoor:EC2/C&CActivity.B!DNS";

async fn warehouse(dir: &std::path::Path) -> Warehouse {
    Warehouse::open(&dir.display().to_string()).await.unwrap()
}

/// A batch of `rows` findings from each of `objects` (their names), all of one type.
fn staged(warehouse: &Warehouse, objects: &[&str], rows: usize) -> StagedAppend {
    let batch = layout::new_batch_id();
    let staging = warehouse.stage(&batch).unwrap();
    let mut writer = PartitionWriter::new(TYPE, staging.dir(), &batch, 1 << 30);
    let mut sources = Vec::new();
    for object in objects {
        let uri = format!("s3://exports/{object}");
        let mut found = FindingRows::new(0);
        for i in 0..rows {
            let json = format!(
                r#"{{"id":"{object}-{i}","type":"{TYPE}","updatedAt":"2024-03-0{}T00:00:00Z"}}"#,
                1 + i % 9
            );
            found.append(&parse_finding(&json).unwrap(), &uri);
        }
        writer.write(&found.finish().unwrap()).unwrap();
        sources.push(SourceRecord {
            id: format!("id-{object}"),
            uri,
            rows: rows as u64,
            quarantined: 0,
            error: None,
        });
    }
    StagedAppend {
        files: writer.finish().unwrap(),
        sources,
        batch,
        staging,
        failed: HashSet::new(),
        quarantine: None,
    }
}

fn rows(table: &Table) -> u64 {
    table.snapshot().unwrap().rows().unwrap()
}

#[tokio::test]
async fn two_writers_whose_batches_overlap_commit_each_object_once() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = warehouse(dir.path()).await;
    let mut first = Table::open(&warehouse).await.unwrap();
    let mut second = Table::open(&warehouse).await.unwrap();
    let (one, two) = (
        staged(&warehouse, &["a", "b"], 3),
        staged(&warehouse, &["b", "c"], 3),
    );
    let won = first.commit_append(one).await.unwrap().unwrap();
    assert_eq!(won.sources.len(), 2);
    // The second writer's snapshot is a version behind: its commit loses the race, it reads
    // the winner's ledger, drops object b and commits c alone, from rewritten files.
    let rest = second.commit_append(two).await.unwrap().unwrap();
    assert_eq!(rest.version, won.version + 1);
    assert_eq!(
        rest.sources
            .iter()
            .map(|s| s.uri.as_str())
            .collect::<Vec<_>>(),
        ["s3://exports/c"]
    );
    assert_eq!(rest.already_committed, ["s3://exports/b"]);
    assert!(rest.attempt.ends_with(".1"), "{}", rest.attempt);
    assert_eq!(rest.rows(), 3);
    second.refresh().await.unwrap();
    assert_eq!(rows(&second), 9, "a, b and c once each");
    for object in ["a", "b", "c"] {
        assert!(second.ledger().contains_source(&format!("id-{object}")));
    }
    // Nothing of the lost attempt is left in the table's folders.
    let reopened = Table::open(&warehouse).await.unwrap();
    assert_eq!(reopened.recovery().debris_files, 0);
    let partition = dir
        .path()
        .join("findings")
        .join(gdq_schemas::partition_dir_name(TYPE));
    let files = std::fs::read_dir(partition).unwrap().count();
    assert_eq!(files, 2, "one file per commit");
}

#[tokio::test]
async fn a_commit_that_lost_to_an_unrelated_append_keeps_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = warehouse(dir.path()).await;
    let mut first = Table::open(&warehouse).await.unwrap();
    let mut second = Table::open(&warehouse).await.unwrap();
    let (one, two) = (staged(&warehouse, &["a"], 2), staged(&warehouse, &["c"], 2));
    let batch = two.batch.clone();
    first.commit_append(one).await.unwrap().unwrap();
    let rest = second.commit_append(two).await.unwrap().unwrap();
    assert_eq!(
        rest.attempt, batch,
        "no rewrite: the same files commit one version later"
    );
    assert_eq!(rows(&second), 4);
}

#[tokio::test]
async fn an_object_that_failed_part_way_contributes_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = warehouse(dir.path()).await;
    let mut table = Table::open(&warehouse).await.unwrap();
    let mut batch = staged(&warehouse, &["ok", "broken"], 4);
    batch.sources.retain(|s| s.uri.ends_with("/ok"));
    batch.failed.insert("s3://exports/broken".into());
    let committed = table.commit_append(batch).await.unwrap().unwrap();
    assert_eq!(committed.rows(), 4);
    assert_eq!(rows(&table), 4);
    assert!(!table.ledger().contains_source("id-broken"));
}

#[tokio::test]
async fn a_batch_whose_objects_are_all_committed_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = warehouse(dir.path()).await;
    let mut table = Table::open(&warehouse).await.unwrap();
    table
        .commit_append(staged(&warehouse, &["a"], 2))
        .await
        .unwrap();
    let version = table.version();
    let again = table
        .commit_append(staged(&warehouse, &["a"], 2))
        .await
        .unwrap();
    assert!(again.is_none());
    assert_eq!(table.version(), version, "no empty version either");
}

#[tokio::test]
async fn the_ledger_survives_a_checkpoint_and_the_cleanup_of_the_log_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = warehouse(dir.path()).await;
    let mut table = Table::open(&warehouse).await.unwrap();
    for object in ["a", "b", "c"] {
        table
            .commit_append(staged(&warehouse, &[object], 1))
            .await
            .unwrap();
    }
    deltalake_core::checkpoints::create_checkpoint(&table.delta, None)
        .await
        .unwrap();
    table
        .commit_append(staged(&warehouse, &["d"], 1))
        .await
        .unwrap();
    // What log cleanup does: the commits a checkpoint covers go.
    let log = dir.path().join("findings/_delta_log");
    for version in 0..=3 {
        std::fs::remove_file(log.join(format!("{version:020}.json"))).unwrap();
    }
    let reopened = Table::open(&warehouse).await.unwrap();
    for object in ["a", "b", "c", "d"] {
        assert!(
            reopened.ledger().contains_source(&format!("id-{object}")),
            "{object}"
        );
    }
    assert_eq!(reopened.ledger().sources(), 4);
    assert_eq!(rows(&reopened), 4);
}

#[tokio::test]
async fn a_dead_writers_files_are_removed_and_a_live_ones_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = warehouse(dir.path()).await;
    let table = Table::open(&warehouse).await.unwrap();
    // Published by writers that never committed: one still running, one gone.
    let live = staged(&warehouse, &["live"], 1);
    let dead = staged(&warehouse, &["dead"], 1);
    for batch in [&live, &dead] {
        let adds =
            crate::append::publish_files(&table, &batch.staging, &batch.batch, &batch.files, true)
                .await
                .unwrap();
        assert_eq!(adds.len(), 1);
    }
    let dead_file = dir.path().join("findings").join(&dead.files[0].path);
    let live_file = dir.path().join("findings").join(&live.files[0].path);
    drop(dead);
    let reopened = Table::open(&warehouse).await.unwrap();
    assert_eq!(reopened.recovery().discarded.len(), 1);
    assert!(!dead_file.exists());
    assert!(live_file.exists(), "its batch's lock is held");
    assert_eq!(rows(&reopened), 0, "neither was ever visible");
    drop(live);
}

#[tokio::test]
async fn compaction_rewrites_a_partition_in_one_version_and_vacuum_deletes_its_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = warehouse(dir.path()).await;
    let mut table = Table::open(&warehouse).await.unwrap();
    for object in ["a", "b", "c"] {
        table
            .commit_append(staged(&warehouse, &[object], 5))
            .await
            .unwrap();
    }
    let inputs: Vec<String> = table
        .snapshot()
        .unwrap()
        .files
        .iter()
        .map(|f| f.path.clone())
        .collect();
    assert_eq!(inputs.len(), 3);
    let before = table.version();
    let report = compact(&mut table, &CompactOptions::default())
        .await
        .unwrap();
    assert_eq!(table.version(), before + 1, "one version for the partition");
    let snapshot = table.snapshot().unwrap();
    assert_eq!(snapshot.files.len(), 1);
    assert_eq!(snapshot.rows(), Some(15));
    assert_eq!(report.partitions[0].rows_after, 15);
    assert_eq!(report.vacuumed.retained_files, 3, "kept for the retention");
    let kept = |path: &String| dir.path().join("findings").join(path).exists();
    assert!(inputs.iter().all(kept));
    let swept = vacuum(
        &mut table,
        &VacuumOptions {
            retention: Some(std::time::Duration::ZERO),
            dry_run: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(swept.expired_files, 3);
    assert!(!inputs.iter().any(kept));
    assert_eq!(rows(&table), 15);
}
