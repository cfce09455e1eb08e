//! Table definitions of the warehouse for other engines, from the one schema in
//! [`crate::COLUMNS`]: DuckDB views, Spark SQL, Trino (Hive connector) and Athena tables,
//! each with the `type` partition and a `findings_latest` view like gdq's.

use crate::PARTITION_COLUMN;
use crate::columns::{COLUMNS, ColumnKind};

/// An engine gdq writes DDL for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    DuckDb,
    Spark,
    Trino,
    Athena,
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "duckdb" => Ok(Engine::DuckDb),
            "spark" => Ok(Engine::Spark),
            "trino" => Ok(Engine::Trino),
            "athena" => Ok(Engine::Athena),
            other => Err(format!(
                "unknown engine {other:?} (duckdb, spark, trino, athena)"
            )),
        }
    }
}

impl Engine {
    fn column_type(self, kind: ColumnKind) -> &'static str {
        use ColumnKind::*;
        match (self, kind) {
            (Engine::DuckDb, Text) => "VARCHAR",
            (Engine::DuckDb, TextList) => "VARCHAR[]",
            (Engine::DuckDb, Float) => "DOUBLE",
            (Engine::DuckDb, Int64) => "BIGINT",
            (Engine::DuckDb, Int32) => "INTEGER",
            (Engine::DuckDb, Bool) => "BOOLEAN",
            (Engine::DuckDb, Timestamp) => "TIMESTAMPTZ",
            (Engine::Spark, Text) => "STRING",
            (Engine::Spark, TextList) => "ARRAY<STRING>",
            (Engine::Spark, Float) => "DOUBLE",
            (Engine::Spark, Int64) => "BIGINT",
            (Engine::Spark, Int32) => "INT",
            (Engine::Spark, Bool) => "BOOLEAN",
            (Engine::Spark, Timestamp) => "TIMESTAMP",
            (Engine::Trino, Text) => "varchar",
            (Engine::Trino, TextList) => "array(varchar)",
            (Engine::Trino, Float) => "double",
            (Engine::Trino, Int64) => "bigint",
            (Engine::Trino, Int32) => "integer",
            (Engine::Trino, Bool) => "boolean",
            (Engine::Trino, Timestamp) => "timestamp(3)",
            (Engine::Athena, Text) => "string",
            (Engine::Athena, TextList) => "array<string>",
            (Engine::Athena, Float) => "double",
            (Engine::Athena, Int64) => "bigint",
            (Engine::Athena, Int32) => "int",
            (Engine::Athena, Bool) => "boolean",
            (Engine::Athena, Timestamp) => "timestamp",
        }
    }

    fn quote(self, name: &str) -> String {
        match self {
            Engine::DuckDb | Engine::Trino => format!("\"{name}\""),
            Engine::Spark | Engine::Athena => format!("`{name}`"),
        }
    }
}

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The `findings_latest` view: newest `updated_at`, then highest `count`, per `id`.
fn latest_view(engine: Engine, table: &str, view: &str) -> String {
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|c| c.name)
        .chain(std::iter::once(PARTITION_COLUMN))
        .map(|c| engine.quote(c))
        .collect();
    let (count, updated) = (engine.quote("count"), engine.quote("updated_at"));
    format!(
        "CREATE OR REPLACE VIEW {view} AS\nSELECT {}\nFROM (\n  SELECT *, row_number() OVER (PARTITION BY {} ORDER BY {updated} DESC NULLS LAST, {count} DESC NULLS LAST) AS gdq_version_rank\n  FROM {table}\n) ranked\nWHERE gdq_version_rank = 1;\n",
        columns.join(", "),
        engine.quote("id"),
    )
}

fn column_list(engine: Engine, with_partition: bool) -> String {
    let mut lines: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("  {} {}", engine.quote(c.name), engine.column_type(c.kind)))
        .collect();
    if with_partition {
        lines.push(format!(
            "  {} {}",
            engine.quote(PARTITION_COLUMN),
            engine.column_type(ColumnKind::Text)
        ));
    }
    lines.join(",\n")
}

/// DDL for `engine` over the warehouse whose `findings/` folder is at `findings_location`
/// (a path or URL without trailing `/`). `schema` names the Trino schema to create in.
pub fn ddl(engine: Engine, findings_location: &str, schema: &str) -> String {
    let location = findings_location.trim_end_matches('/');
    match engine {
        Engine::DuckDb => format!(
            "-- DuckDB: views over the Parquet files; the type is decoded from the folder names.\n\
             CREATE OR REPLACE VIEW findings AS\n\
             SELECT * FROM read_parquet({}, hive_partitioning = true, hive_types = {{'type': VARCHAR}});\n{}",
            sql_string(&format!("{location}/*/*.parquet")),
            latest_view(engine, "findings", "findings_latest")
        ),
        Engine::Spark => format!(
            "-- Spark SQL: an external Parquet table partitioned by type, then its partitions.\n\
             CREATE TABLE IF NOT EXISTS findings (\n{}\n) USING PARQUET\nPARTITIONED BY ({})\nLOCATION {};\n\
             ALTER TABLE findings RECOVER PARTITIONS;\n{}",
            column_list(engine, true),
            engine.quote(PARTITION_COLUMN),
            sql_string(location),
            latest_view(engine, "findings", "findings_latest")
        ),
        Engine::Trino => format!(
            "-- Trino, Hive connector (catalog `hive`): the partition column comes last.\n\
             CREATE SCHEMA IF NOT EXISTS hive.{schema};\n\
             CREATE TABLE IF NOT EXISTS hive.{schema}.findings (\n{}\n) WITH (\n  format = 'PARQUET',\n  partitioned_by = ARRAY['{PARTITION_COLUMN}'],\n  external_location = {}\n);\n\
             -- Register the type partitions (again after new types appear):\n\
             CALL hive.system.sync_partition_metadata('{schema}', 'findings', 'ADD');\n{}",
            column_list(engine, true),
            sql_string(location),
            latest_view(
                engine,
                &format!("hive.{schema}.findings"),
                &format!("hive.{schema}.findings_latest")
            )
        ),
        Engine::Athena => format!(
            "-- Athena: an external table partitioned by type.\n\
             CREATE EXTERNAL TABLE IF NOT EXISTS findings (\n{}\n)\nPARTITIONED BY ({} string)\nSTORED AS PARQUET\nLOCATION {};\n\
             -- Register the type partitions (again after new types appear):\n\
             MSCK REPAIR TABLE findings;\n{}",
            column_list(engine, false),
            engine.quote(PARTITION_COLUMN),
            sql_string(&format!("{location}/")),
            latest_view(engine, "findings", "findings_latest")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_gets_every_column_and_the_partition() {
        for engine in [Engine::DuckDb, Engine::Spark, Engine::Trino, Engine::Athena] {
            let text = ddl(engine, "s3://b/wh/findings", "security");
            assert!(text.contains("findings_latest"), "{engine:?}");
            if engine != Engine::DuckDb {
                for c in COLUMNS {
                    assert!(
                        text.contains(&engine.quote(c.name)),
                        "{engine:?} lacks {}",
                        c.name
                    );
                }
                assert!(text.contains(&engine.quote("type")), "{engine:?}");
            }
        }
        assert!(ddl(Engine::Athena, "s3://b/it's", "s").contains("'s3://b/it''s/'"));
        assert_eq!("Spark".parse::<Engine>(), Ok(Engine::Spark));
        assert!("hive".parse::<Engine>().is_err());
    }
}
