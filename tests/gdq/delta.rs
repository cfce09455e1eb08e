//! The warehouse is a Delta table every Delta reader reads as gdq does: the `deltalake`
//! package and `polars.read_delta`, after appends, after a new type appears (no partition
//! repair), after a compaction; exact types with `: / . ! &`; timestamps the same instants.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::support::*;

const ODD_TYPE: &str = "Weird:EC2/A&B.C!D E+F%=G";

/// Counts per type a Delta reader gave.
fn types(read: &Value, reader: &str) -> BTreeMap<String, u64> {
    read[reader]["types"]
        .as_object()
        .unwrap_or_else(|| panic!("{reader} gave no counts"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

/// Checks both Delta readers against gdq's own answers.
fn assert_delta_readers_agree(wh: &Path, when: &str) {
    let read = delta_readers(wh, None);
    let expected = gdq_type_counts(wh);
    let bounds = sql_rows(
        wh,
        "select count(distinct id), min(updated_at), max(updated_at) from findings",
    )
    .remove(0);
    for reader in ["deltalake", "polars"] {
        assert_eq!(types(&read, reader), expected, "{when}: {reader}");
        assert_eq!(
            read[reader]["ids"].as_u64().unwrap().to_string(),
            bounds[0],
            "{when}: {reader}"
        );
        for (field, gdq) in [
            ("min_updated_at", &bounds[1]),
            ("max_updated_at", &bounds[2]),
        ] {
            assert_eq!(
                gdq_schemas::parse_timestamp_ms(read[reader][field].as_str().unwrap()),
                gdq_schemas::parse_timestamp_ms(gdq),
                "{when}: {reader} {field}: the same instant"
            );
        }
        let unit = read[reader]["updated_at_type"].as_str().unwrap();
        assert!(unit.contains("UTC"), "{when}: {reader}: {unit}");
    }
}

#[test]
fn delta_readers_read_appends_new_types_and_compactions_as_gdq_does() {
    let wh = tempdir();
    let out = run(gdq(wh.path())
        .args(["ingest", "--commit-mib", "0"])
        .arg(testdata("exports")));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_delta_readers_agree(wh.path(), "after appends");

    // A new type, with every character GuardDuty uses and more, becomes readable at once.
    let extra = tempdir();
    let line = format!(
        "{{\"id\":\"odd-1\",\"type\":\"{ODD_TYPE}\",\"updatedAt\":\"2030-03-01T00:00:00.123Z\",\"severity\":9.5}}\n"
    );
    write_gz(&extra.path().join("odd.jsonl.gz"), line.as_bytes());
    assert!(ingest(wh.path(), &[extra.path()]).status.success());
    assert_delta_readers_agree(wh.path(), "after a new type");
    let only = delta_readers(wh.path(), Some(ODD_TYPE));
    for reader in ["deltalake", "polars"] {
        assert_eq!(
            types(&only, reader),
            BTreeMap::from([(ODD_TYPE.to_string(), 1)]),
            "{reader} filters on the exact type"
        );
        assert_eq!(only[reader]["max_updated_at"], "2030-03-01T00:00:00.123Z");
    }
    let only = delta_readers(wh.path(), Some("Backdoor:EC2/C&CActivity.B!DNS"));
    assert_eq!(
        types(&only, "polars").values().sum::<u64>(),
        sql_count(
            wh.path(),
            "select count(*) from findings where type = 'Backdoor:EC2/C&CActivity.B!DNS'"
        )
    );

    let compacted = run(gdq(wh.path()).arg("compact"));
    assert!(compacted.status.success(), "{}", stderr(&compacted));
    assert_delta_readers_agree(wh.path(), "after a compaction");
}

#[test]
fn plain_parquet_readers_are_exact_once_a_compactions_inputs_are_vacuumed() {
    let wh = tempdir();
    let out = run(gdq(wh.path())
        .args(["ingest", "--commit-mib", "0"])
        .arg(testdata("exports")));
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = sql_count(wh.path(), "select count(*) from findings");
    let plain = || -> u64 {
        let counts = plain_readers(wh.path());
        let duckdb: u64 = counts["duckdb"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        let pyarrow: u64 = counts["pyarrow"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(duckdb, pyarrow);
        duckdb
    };
    assert_eq!(plain(), rows, "no writer in flight: exact");
    assert!(run(gdq(wh.path()).arg("compact")).status.success());
    assert!(
        plain() > rows,
        "the inputs are kept for the retention: listed twice"
    );
    assert_eq!(delta_rows(wh.path()), rows, "Delta readers never see them");
    assert!(
        run(gdq(wh.path()).args(["vacuum", "--retention", "0s"]))
            .status
            .success()
    );
    assert_eq!(plain(), rows, "vacuumed: exact again");
}
