//! The warehouse is a public interface: plain-Parquet readers (DuckDB, pyarrow, pandas,
//! polars) read the exact type strings back from the folder names, including `: / . ! &`,
//! spaces, `+`, `%` and `=` (the Delta readers: `crate::delta`).

use std::collections::BTreeMap;

use crate::support::*;

const ODD_TYPE: &str = "Weird:EC2/A&B.C!D E+F%=G";

#[test]
fn python_readers_decode_every_type_exactly() {
    let extra = tempdir();
    let line = format!(
        "{{\"id\":\"odd-1\",\"type\":\"{ODD_TYPE}\",\"updatedAt\":\"2024-03-01T00:00:00Z\",\"severity\":9.5}}\n\
         {{\"id\":\"odd-2\",\"type\":\"Backdoor:EC2/C&CActivity.B!DNS\",\"updatedAt\":\"2024-03-01T00:00:00Z\"}}\n"
    );
    write_gz(&extra.path().join("odd.jsonl.gz"), line.as_bytes());
    let wh = tempdir();
    let out = ingest(wh.path(), &[&testdata("exports"), extra.path()]);
    assert!(out.status.success(), "{}", stderr(&out));

    let expected = gdq_type_counts(wh.path());
    assert_eq!(
        expected.get(ODD_TYPE),
        Some(&1),
        "DataFusion decodes the type"
    );
    let mut oracle = oracle_type_counts(&testdata("exports"));
    *oracle.entry(ODD_TYPE.to_string()).or_default() += 1;
    *oracle
        .entry("Backdoor:EC2/C&CActivity.B!DNS".to_string())
        .or_default() += 1;
    assert_eq!(expected, oracle);

    let readers = plain_readers(wh.path());
    for reader in ["duckdb", "pyarrow", "pandas", "polars"] {
        let got: BTreeMap<String, u64> = readers[reader]
            .as_object()
            .unwrap_or_else(|| panic!("{reader} gave no counts"))
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
        assert_eq!(got, expected, "{reader} disagrees with gdq");
    }
    assert_eq!(readers["pyarrow_updated_at_type"], "timestamp[ms, tz=UTC]");
}
