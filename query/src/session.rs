//! The DataFusion session: tables, views and functions over a warehouse.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::context::SessionContext;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::DFParser;
use gdq_schemas::{COLUMNS, PARTITION_COLUMN, findings_schema};

use crate::error::QueryError;

/// Every exported version of every finding.
pub const TABLE: &str = "findings";
/// One row per finding id: its newest version (latest `updated_at`, then highest `count`).
pub const LATEST_VIEW: &str = "findings_latest";

/// The `findings` schema as readers see it: the stored columns plus the `type` partition.
fn table_schema() -> SchemaRef {
    let mut fields: Vec<Field> = findings_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(PARTITION_COLUMN, DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// Opens a session over the warehouse at `root`. A warehouse without data yet (or none at
/// all) gives empty tables rather than an error; `warning` says so.
pub async fn open_session(root: &Path) -> Result<(SessionContext, Option<String>), QueryError> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_parquet_pruning(true);
    let mut ctx = SessionContext::new_with_config(config);
    datafusion_functions_json::register_all(&mut ctx).map_err(QueryError::Plan)?;

    let findings_dir = root.join("findings");
    let warning = if findings_dir.is_dir() {
        let absolute =
            std::path::absolute(&findings_dir).map_err(|e| QueryError::Execution(e.into()))?;
        let url =
            ListingTableUrl::parse(format!("{}/", absolute.display())).map_err(QueryError::Plan)?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![(PARTITION_COLUMN.to_string(), DataType::Utf8)]);
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(findings_schema());
        let table = ListingTable::try_new(config).map_err(QueryError::Plan)?;
        ctx.register_table(TABLE, Arc::new(table))
            .map_err(QueryError::Plan)?;
        None
    } else {
        let empty = MemTable::try_new(table_schema(), vec![vec![]]).map_err(QueryError::Plan)?;
        ctx.register_table(TABLE, Arc::new(empty))
            .map_err(QueryError::Plan)?;
        Some(format!(
            "warehouse {} holds no findings yet (run `gdq ingest` first)",
            root.display()
        ))
    };

    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("\"{}\"", c.name))
        .chain(std::iter::once(format!("\"{PARTITION_COLUMN}\"")))
        .collect();
    let columns = columns.join(", ");
    let latest = format!(
        "CREATE VIEW {LATEST_VIEW} AS SELECT {columns} FROM (\
            SELECT *, row_number() OVER (PARTITION BY id ORDER BY updated_at DESC NULLS LAST, \"count\" DESC NULLS LAST) AS gdq_version_rank \
            FROM {TABLE}) WHERE gdq_version_rank = 1"
    );
    ctx.sql(&latest).await.map_err(QueryError::Plan)?;
    Ok((ctx, warning))
}

/// Results of one statement.
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// Runs every `;`-separated statement of `sql`; returns the results of each.
pub async fn run_sql(ctx: &SessionContext, sql: &str) -> Result<Vec<QueryResult>, QueryError> {
    let statements = DFParser::parse_sql(sql).map_err(QueryError::Plan)?;
    if statements.is_empty() {
        return Err(QueryError::Plan(datafusion::error::DataFusionError::Plan(
            "no SQL statement given".into(),
        )));
    }
    let mut results = Vec::new();
    for statement in statements {
        let state = ctx.state();
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(QueryError::Plan)?;
        let frame = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(QueryError::Plan)?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(QueryError::Execution)?;
        results.push(QueryResult { schema, batches });
    }
    Ok(results)
}
