//! `gdq ddl`: the plain-Parquet DuckDB and Spark statements, executed by those engines on a
//! warehouse built from testdata, give the same `select type, count(*)` and
//! `findings_latest` as gdq. (The Delta definitions need engines' Delta support, which is
//! not installable here; the Delta readers are `crate::delta`.)

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

use crate::support::*;

#[test]
fn duckdb_and_spark_ddl_give_the_tables_gdq_gives() {
    let wh = tempdir();
    let out = ingest(wh.path(), &[&testdata("exports")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = gdq_type_counts(wh.path());
    let latest = sql_count(wh.path(), "select count(*) from findings_latest");

    let files = tempdir();
    for engine in ["duckdb", "spark"] {
        let ddl = run(gdq(wh.path()).args(["ddl", "--plain", "--engine", engine]));
        assert!(ddl.status.success(), "{}", stderr(&ddl));
        std::fs::write(files.path().join(format!("{engine}.sql")), &ddl.stdout).unwrap();
    }
    let output = Command::new(python())
        .arg(repo().join("tests/ddl.py"))
        .arg(files.path().join("duckdb.sql"))
        .arg(files.path().join("spark.sql"))
        .env("GDQ_SPARK_DIR", files.path().join("spark"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ddl.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let engines: Value = serde_json::from_slice(&output.stdout).unwrap();
    for engine in ["duckdb", "spark"] {
        let got: BTreeMap<String, u64> = engines[engine]["types"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
        assert_eq!(got, expected, "{engine} disagrees with gdq");
        assert_eq!(
            engines[engine]["latest"], latest,
            "{engine} findings_latest"
        );
    }
}

#[test]
fn delta_definitions_name_the_table_and_plain_ones_every_column() {
    let ddl = |args: &[&str]| {
        let out = run(gdq(std::path::Path::new("wh"))
            .args(["ddl", "--location", "s3://lake/gdq/findings/"])
            .args(args));
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let athena = ddl(&["--engine", "athena"]);
    assert!(athena.contains("LOCATION 's3://lake/gdq/findings/'"));
    assert!(athena.contains("TBLPROPERTIES ('table_type' = 'DELTA')"));
    assert!(!athena.contains("MSCK"), "the log names the partitions");
    let trino = ddl(&["--engine", "trino"]);
    assert!(trino.contains(
        "CALL delta.system.register_table(schema_name => 'security', table_name => 'findings', table_location => 's3://lake/gdq/findings')"
    ));
    assert!(ddl(&["--engine", "spark"]).contains("USING DELTA LOCATION 's3://lake/gdq/findings'"));
    assert!(ddl(&["--engine", "snowflake"]).contains("TABLE_FORMAT = DELTA"));
    let plain_athena = ddl(&["--engine", "athena", "--plain"]);
    assert!(plain_athena.contains("MSCK REPAIR TABLE findings"));
    let plain_trino = ddl(&["--engine", "trino", "--plain"]);
    assert!(plain_trino.contains("sync_partition_metadata('security', 'findings', 'ADD')"));
    for c in gdq_schemas::COLUMNS {
        assert!(
            plain_athena.contains(&format!("`{}`", c.name)),
            "athena lacks {}",
            c.name
        );
        assert!(
            plain_trino.contains(&format!("\"{}\"", c.name)),
            "trino lacks {}",
            c.name
        );
    }
    let no_plain =
        run(gdq(std::path::Path::new("wh")).args(["ddl", "--engine", "snowflake", "--plain"]));
    assert_eq!(no_plain.status.code(), Some(2));
    let bad = run(gdq(std::path::Path::new("wh")).args(["ddl", "--engine", "hive"]));
    assert_eq!(bad.status.code(), Some(2));
}
