//! Table definitions of the warehouse for other engines, each with a `findings_latest` view
//! like gdq's. The warehouse's `findings/` is a Delta table: Athena, Spark, Trino (Delta
//! Lake connector), DuckDB (`delta_scan`) and Snowflake read it as one, with its schema and
//! partitions from the log (new types need no repair step). For engines without Delta,
//! [`plain_ddl`] defines plain Parquet tables over the partition folders from the one schema
//! in [`crate::COLUMNS`]; those are exact only when no writer or compaction is in flight
//! and no removed or uncommitted file is left (after `gdq vacuum --retention 0s`).

use crate::PARTITION_COLUMN;
use crate::columns::{COLUMNS, ColumnKind};

/// An engine gdq writes DDL for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    DuckDb,
    Spark,
    Trino,
    Athena,
    Snowflake,
}

impl Engine {
    pub const ALL: [Engine; 5] = [
        Engine::DuckDb,
        Engine::Spark,
        Engine::Trino,
        Engine::Athena,
        Engine::Snowflake,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Engine::DuckDb => "duckdb",
            Engine::Spark => "spark",
            Engine::Trino => "trino",
            Engine::Athena => "athena",
            Engine::Snowflake => "snowflake",
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
            (Engine::Snowflake, Text) => "VARCHAR",
            (Engine::Snowflake, TextList) => "ARRAY",
            (Engine::Snowflake, Float) => "DOUBLE",
            (Engine::Snowflake, Int64) => "BIGINT",
            (Engine::Snowflake, Int32) => "INTEGER",
            (Engine::Snowflake, Bool) => "BOOLEAN",
            (Engine::Snowflake, Timestamp) => "TIMESTAMP_LTZ",
        }
    }

    fn quote(self, name: &str) -> String {
        match self {
            Engine::DuckDb | Engine::Trino | Engine::Snowflake => format!("\"{name}\""),
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

/// Delta table definitions for `engine` over the table at `findings_location` (the
/// warehouse's `findings/` folder as the engine sees it, without trailing `/`). `schema`
/// names the Trino schema to create in.
pub fn ddl(engine: Engine, findings_location: &str, schema: &str) -> String {
    let location = findings_location.trim_end_matches('/');
    match engine {
        Engine::DuckDb => format!(
            "-- DuckDB with its delta extension: the table as of its newest version.\n\
             INSTALL delta;\nLOAD delta;\n\
             CREATE OR REPLACE VIEW findings AS SELECT * FROM delta_scan({});\n{}",
            sql_string(location),
            latest_view(engine, "findings", "findings_latest")
        ),
        Engine::Spark => format!(
            "-- Spark SQL with Delta Lake (spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension).\n\
             CREATE TABLE IF NOT EXISTS findings USING DELTA LOCATION {};\n{}",
            sql_string(location),
            latest_view(engine, "findings", "findings_latest")
        ),
        Engine::Trino => format!(
            "-- Trino, Delta Lake connector (catalog `delta`): schema and partitions from the log.\n\
             CREATE SCHEMA IF NOT EXISTS delta.{schema};\n\
             CALL delta.system.register_table(schema_name => {}, table_name => 'findings', table_location => {});\n{}",
            sql_string(schema),
            sql_string(location),
            latest_view(
                engine,
                &format!("delta.{schema}.findings"),
                &format!("delta.{schema}.findings_latest")
            )
        ),
        Engine::Athena => format!(
            "-- Athena (engine version 3): a Delta Lake table; columns and partitions come from the log.\n\
             CREATE EXTERNAL TABLE IF NOT EXISTS findings\nLOCATION {}\nTBLPROPERTIES ('table_type' = 'DELTA');\n{}",
            sql_string(&format!("{location}/")),
            latest_view(engine, "findings", "findings_latest")
        ),
        Engine::Snowflake => {
            let (base, table) = location.rsplit_once('/').unwrap_or(("", location));
            format!(
                "-- Snowflake, Delta Direct: an Iceberg table over the Delta log. Fill in the role that\n\
                 -- reads the bucket (STORAGE_AWS_ROLE_ARN), then refresh after commits (or AUTO_REFRESH).\n\
                 CREATE CATALOG INTEGRATION IF NOT EXISTS gdq_delta\n  CATALOG_SOURCE = OBJECT_STORE\n  TABLE_FORMAT = DELTA\n  ENABLED = TRUE;\n\
                 CREATE EXTERNAL VOLUME IF NOT EXISTS gdq_warehouse\n  STORAGE_LOCATIONS = ((\n    NAME = 'gdq'\n    STORAGE_PROVIDER = 'S3'\n    STORAGE_BASE_URL = {}\n    STORAGE_AWS_ROLE_ARN = '<arn of a role that can read the bucket>'\n  ));\n\
                 CREATE ICEBERG TABLE IF NOT EXISTS findings\n  CATALOG = 'gdq_delta'\n  EXTERNAL_VOLUME = 'gdq_warehouse'\n  BASE_LOCATION = {}\n  AUTO_REFRESH = TRUE;\n{}",
                sql_string(&format!("{base}/")),
                sql_string(&format!("{table}/")),
                latest_view(engine, "findings", "findings_latest")
            )
        }
    }
}

/// Plain Parquet definitions for `engine` over the partition folders (no Delta support):
/// the type decoded from the folder names. Exact only with no writer or compaction in
/// flight and no removed or uncommitted file left (`gdq vacuum --retention 0s`).
pub fn plain_ddl(engine: Engine, findings_location: &str, schema: &str) -> Result<String, String> {
    let location = findings_location.trim_end_matches('/');
    let caveat = "-- Plain Parquet over the folders: exact while no gdq writer or compaction runs and after\n\
                  -- `gdq vacuum --retention 0s`; the Delta definition (without --plain) is exact always.\n";
    Ok(match engine {
        Engine::DuckDb => format!(
            "{caveat}CREATE OR REPLACE VIEW findings AS\n\
             SELECT * FROM read_parquet({}, hive_partitioning = true, hive_types = {{'type': VARCHAR}});\n{}",
            sql_string(&format!("{location}/type=*/*.parquet")),
            latest_view(engine, "findings", "findings_latest")
        ),
        Engine::Spark => format!(
            "{caveat}CREATE TABLE IF NOT EXISTS findings (\n{}\n) USING PARQUET\nPARTITIONED BY ({})\nLOCATION {};\n\
             ALTER TABLE findings RECOVER PARTITIONS;\n{}",
            column_list(engine, true),
            engine.quote(PARTITION_COLUMN),
            sql_string(location),
            latest_view(engine, "findings", "findings_latest")
        ),
        Engine::Trino => format!(
            "{caveat}-- Trino, Hive connector (catalog `hive`): the partition column comes last.\n\
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
            "{caveat}CREATE EXTERNAL TABLE IF NOT EXISTS findings (\n{}\n)\nPARTITIONED BY ({} string)\nSTORED AS PARQUET\nLOCATION {};\n\
             -- Register the type partitions (again after new types appear):\n\
             MSCK REPAIR TABLE findings;\n{}",
            column_list(engine, false),
            engine.quote(PARTITION_COLUMN),
            sql_string(&format!("{location}/")),
            latest_view(engine, "findings", "findings_latest")
        ),
        Engine::Snowflake => {
            return Err(
                "snowflake reads the Delta table (Delta Direct); there is no plain definition"
                    .into(),
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plain_definition_has_every_column_and_the_partition() {
        for engine in [Engine::DuckDb, Engine::Spark, Engine::Trino, Engine::Athena] {
            let text = plain_ddl(engine, "s3://b/wh/findings", "security").unwrap();
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
        assert!(plain_ddl(Engine::Snowflake, "s3://b/f", "s").is_err());
    }

    #[test]
    fn delta_definitions_read_the_log_and_need_no_repair() {
        for engine in Engine::ALL {
            let text = ddl(engine, "s3://b/wh/findings", "security");
            assert!(text.contains("findings_latest"), "{engine:?}");
            assert!(
                !text.contains("MSCK") && !text.contains("sync_partition"),
                "{engine:?}"
            );
        }
        assert!(ddl(Engine::Athena, "s3://b/wh/findings", "s").contains("'table_type' = 'DELTA'"));
        assert!(ddl(Engine::Spark, "s3://b/wh/findings", "s").contains("USING DELTA"));
        assert!(
            ddl(Engine::Trino, "s3://b/wh/findings", "s").contains("delta.system.register_table")
        );
        assert!(ddl(Engine::DuckDb, "/wh/findings", "s").contains("delta_scan('/wh/findings')"));
        let snowflake = ddl(Engine::Snowflake, "s3://b/wh/findings", "s");
        assert!(snowflake.contains("STORAGE_BASE_URL = 's3://b/wh/'"));
        assert!(snowflake.contains("BASE_LOCATION = 'findings/'"));
        assert!(ddl(Engine::Athena, "s3://b/it's", "s").contains("'s3://b/it''s/'"));
    }
}
