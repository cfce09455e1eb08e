//! The DataFusion session: tables, views and functions over a warehouse.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::config::ConfigOptions;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::{DFParser, Statement};
use futures::StreamExt;
use gdq_table::{Snapshot, Warehouse};

use crate::error::QueryError;
use crate::format::{OutputFormat, ResultWriter};
use crate::latest::LatestTable;
pub use crate::result::QueryResult;
use crate::table::{FindingsTable, table_schema};

pub use crate::names::{LATEST_VIEW, TABLE};

/// gdq's DataFusion settings. Any setting can be changed from the environment the way
/// datafusion-cli does it (`datafusion.execution.batch_size` ← `DATAFUSION_EXECUTION_BATCH_SIZE`),
/// gdq's own choices included.
pub(crate) fn session_config() -> Result<SessionConfig, QueryError> {
    let mut options = ConfigOptions::default();
    options.catalog.information_schema = true;
    options.execution.parquet.pruning = true;
    // Late materialization (the filter columns decoded first, the others only for the rows
    // that pass) is off here and turned on by the `findings` table for the scans that read
    // the raw `finding` column, where it spares decoding the text of every dropped row; on
    // narrow scans it costs more than it saves (`crate::snapshot`).
    options.execution.parquet.pushdown_filters = false;
    options.execution.parquet.reorder_filters = true;
    // Measured on a 1M-finding warehouse (2026-11): reading every footer at
    // planning to collect statistics, and every page index before pruning, cost more than
    // they save (statistics: group by type 0.15 → 0.09 s; page index: one-week range 0.73×,
    // lookup 0.91×, findings_latest 0.94× of the time with it). Row-group statistics and
    // the bloom filter on `id` still prune at scan time.
    options.execution.collect_statistics = false;
    options.execution.parquet.enable_page_index = false;
    // The first read of each file: DataFusion's default (512 KiB) reads most of a small
    // type's file to get a footer of 16-180 KB; 64 KiB holds most footers (the rest take a
    // second read) and cut the CPU of a lookup by id by ~12 %.
    options.execution.parquet.metadata_size_hint = Some(64 * 1024);
    let keys: Vec<String> = options.entries().into_iter().map(|e| e.key).collect();
    for key in keys {
        if let Ok(value) = std::env::var(key.to_uppercase().replace('.', "_")) {
            options.set(&key, &value).map_err(QueryError::Plan)?;
        }
    }
    Ok(SessionConfig::from(options))
}

/// Opens a session over the warehouse's newest snapshot. A warehouse without a table yet
/// gives empty tables rather than an error; `warning` says so.
pub async fn open_session(
    warehouse: &Warehouse,
) -> Result<(SessionContext, Option<String>), QueryError> {
    let snapshot = warehouse.snapshot().await.map_err(QueryError::Table)?;
    open_session_at(warehouse, snapshot).await
}

/// [`open_session`] over a snapshot the caller has read (`None`: no table yet).
pub async fn open_session_at(
    warehouse: &Warehouse,
    snapshot: Option<Snapshot>,
) -> Result<(SessionContext, Option<String>), QueryError> {
    let config = session_config()?;
    let mut ctx = SessionContext::new_with_config(config);
    datafusion_functions_json::register_all(&mut ctx).map_err(QueryError::Plan)?;

    let warning = if let Some(snapshot) = snapshot {
        let store = warehouse.store().clone();
        let root = store.root_url();
        ctx.register_object_store(&root, store.object_store());
        let object_store_url =
            ObjectStoreUrl::parse(root.as_str().trim_end_matches('/')).map_err(QueryError::Plan)?;
        let table = FindingsTable {
            snapshot: Arc::new(snapshot),
            store,
            object_store_url,
            parquet: ctx.state().table_options().parquet.clone(),
        };
        ctx.register_table(TABLE, Arc::new(table))
            .map_err(QueryError::Plan)?;
        None
    } else {
        let empty = MemTable::try_new(table_schema(), vec![vec![]]).map_err(QueryError::Plan)?;
        ctx.register_table(TABLE, Arc::new(empty))
            .map_err(QueryError::Plan)?;
        Some(format!(
            "warehouse {} holds no findings yet (run `gdq ingest` first)",
            warehouse.name()
        ))
    };

    let findings = ctx.table_provider(TABLE).await.map_err(QueryError::Plan)?;
    ctx.register_table(LATEST_VIEW, Arc::new(LatestTable { findings }))
        .map_err(QueryError::Plan)?;
    ctx.register_udf(crate::ocsf::ocsf_udf());
    ctx.sql(&crate::ocsf::view_sql())
        .await
        .map_err(QueryError::Plan)?;
    Ok((ctx, warning))
}

/// The `;`-separated statements of `sql`, at least one.
fn statements(sql: &str) -> Result<VecDeque<Statement>, QueryError> {
    let statements = DFParser::parse_sql(sql).map_err(QueryError::Plan)?;
    if statements.is_empty() {
        return Err(QueryError::Plan(datafusion::error::DataFusionError::Plan(
            "no SQL statement given".into(),
        )));
    }
    Ok(statements)
}

async fn plan(ctx: &SessionContext, statement: Statement) -> Result<DataFrame, QueryError> {
    let plan = ctx
        .state()
        .statement_to_plan(statement)
        .await
        .map_err(QueryError::Plan)?;
    ctx.execute_logical_plan(plan)
        .await
        .map_err(QueryError::Plan)
}

/// Runs every `;`-separated statement of `sql`; returns the results of each.
pub async fn run_sql(ctx: &SessionContext, sql: &str) -> Result<Vec<QueryResult>, QueryError> {
    let mut results = Vec::new();
    for statement in statements(sql)? {
        let frame = plan(ctx, statement).await?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(QueryError::Execution)?;
        results.push(QueryResult { schema, batches });
    }
    Ok(results)
}

/// Runs every statement of `sql` and writes each result to `out` as its batches arrive,
/// so memory holds a few batches, not the result; returns each statement's row count.
pub async fn print_sql(
    ctx: &SessionContext,
    sql: &str,
    out: &mut dyn Write,
    format: OutputFormat,
) -> Result<Vec<u64>, QueryError> {
    let mut counts = Vec::new();
    for statement in statements(sql)? {
        let frame = plan(ctx, statement).await?;
        counts.push(print_frame(frame, &mut *out, format).await?);
    }
    Ok(counts)
}

/// Writes `frame`'s rows to `out` as its batches arrive; returns the row count.
pub async fn print_frame(
    frame: DataFrame,
    out: &mut dyn Write,
    format: OutputFormat,
) -> Result<u64, QueryError> {
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let mut stream = frame
        .execute_stream()
        .await
        .map_err(QueryError::Execution)?;
    let mut writer = ResultWriter::new(out, schema, format);
    while let Some(batch) = stream.next().await {
        writer.write(&batch.map_err(QueryError::Execution)?)?;
    }
    writer.finish()
}

/// The first column of the first row of `sql`'s (last) result as an integer (a
/// `count(*)`); `None` for no row or a null.
pub async fn query_count(ctx: &SessionContext, sql: &str) -> Result<Option<i64>, QueryError> {
    use datafusion::arrow::array::{Array, Int64Array};
    let results = run_sql(ctx, sql).await?;
    let Some(batch) = results
        .last()
        .and_then(|r| r.batches.iter().find(|b| b.num_rows() > 0))
    else {
        return Ok(None);
    };
    Ok(batch
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .filter(|a| !a.is_null(0))
        .map(|a| a.value(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::datasource::physical_plan::ParquetSource;
    use datafusion::physical_plan::ExecutionPlan;

    /// The table parquet options of the first Parquet scan in `plan`.
    fn scan_options(
        plan: &Arc<dyn ExecutionPlan>,
    ) -> Option<datafusion::config::TableParquetOptions> {
        if let Some(exec) = plan.downcast_ref::<datafusion::datasource::source::DataSourceExec>()
            && let Some((_, source)) = exec.downcast_to_file_source::<ParquetSource>()
        {
            return Some(source.table_parquet_options().clone());
        }
        plan.children().into_iter().find_map(scan_options)
    }

    #[tokio::test]
    async fn the_scan_reads_with_the_session_parquet_settings() {
        let root = tempfile::tempdir().expect("temp dir");
        let warehouse = Warehouse::open(&root.path().display().to_string())
            .await
            .expect("warehouse");
        let mut table = gdq_table::Table::open(&warehouse).await.expect("table");
        let staged = crate::test_support::staged_batch(&warehouse, "Recon:EC2/Portscan", 3);
        table.commit_append(staged).await.expect("commit");

        let (ctx, warning) = open_session(&warehouse).await.expect("session");
        assert_eq!(warning, None);
        let scan_options_of = async |sql: &str| {
            let plan = ctx
                .sql(sql)
                .await
                .expect("plan")
                .create_physical_plan()
                .await
                .expect("physical plan");
            scan_options(&plan).expect("a Parquet scan in the plan")
        };
        let options = scan_options_of("select * from findings where severity > 1").await;
        let session = ctx.state().config_options().execution.parquet.clone();
        // DataFusion's own defaults differ on each of these: a format built without the
        // session's options would scan with the page index and a 512 KiB first read.
        assert!(!options.global.enable_page_index);
        assert_eq!(options.global.metadata_size_hint, Some(64 * 1024));
        assert!(options.global.reorder_filters);
        assert_eq!(options.global.enable_page_index, session.enable_page_index);
        assert!(
            options.global.pushdown_filters,
            "a scan that reads the raw finding filters rows as it decodes"
        );

        let options = scan_options_of("select id from findings where severity > 1").await;
        assert!(
            !options.global.pushdown_filters,
            "a scan of narrow columns decodes them whole"
        );
    }
}
