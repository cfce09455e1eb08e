//! The DataFusion session: tables, views and functions over a warehouse.

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use object_store::ObjectStore;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::config::ConfigOptions;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::context::SessionContext;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::DFParser;
use gdq_schemas::{PARTITION_COLUMN, findings_schema};

use crate::error::QueryError;
use crate::latest::LatestTable;
use crate::snapshot::{FindingsTable, RecordSource};

/// The table's folder under the warehouse root.
pub(crate) const FINDINGS_DIR: &str = "findings";

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

/// Where a warehouse is.
#[derive(Debug, Clone)]
pub enum WarehouseLocation {
    /// A local directory.
    Local(PathBuf),
    /// An object store warehouse: `url` is `s3://bucket[/prefix]`, `store` reaches its bucket.
    Store {
        url: String,
        store: Arc<dyn ObjectStore>,
    },
}

impl std::fmt::Display for WarehouseLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WarehouseLocation::Local(path) => write!(f, "{}", path.display()),
            WarehouseLocation::Store { url, .. } => f.write_str(url),
        }
    }
}

/// The URL of the `findings` folder, registering the object store it needs; `None` when
/// the warehouse holds no data file yet.
async fn findings_url(
    ctx: &SessionContext,
    location: &WarehouseLocation,
) -> Result<Option<ListingTableUrl>, QueryError> {
    match location {
        WarehouseLocation::Local(root) => {
            let findings_dir = root.join(FINDINGS_DIR);
            if !findings_dir.is_dir() {
                return Ok(None);
            }
            let absolute =
                std::path::absolute(&findings_dir).map_err(|e| QueryError::Execution(e.into()))?;
            ListingTableUrl::parse(format!("{}/", absolute.display()))
                .map(Some)
                .map_err(QueryError::Plan)
        }
        WarehouseLocation::Store { url, store } => {
            let base = url::Url::parse(url).map_err(|e| {
                QueryError::Plan(datafusion::error::DataFusionError::Plan(format!(
                    "warehouse {url}: {e}"
                )))
            })?;
            let bucket_url = url::Url::parse(&format!(
                "{}://{}",
                base.scheme(),
                base.host_str().unwrap_or_default()
            ))
            .map_err(|e| {
                QueryError::Plan(datafusion::error::DataFusionError::Plan(e.to_string()))
            })?;
            ctx.register_object_store(&bucket_url, Arc::clone(store));
            let prefix = base.path().trim_matches('/');
            let findings = if prefix.is_empty() {
                FINDINGS_DIR.to_string()
            } else {
                format!("{prefix}/{FINDINGS_DIR}")
            };
            let listed = store
                .list(Some(&object_store::path::Path::from(findings.as_str())))
                .next()
                .await
                .transpose()
                .map_err(|e| QueryError::Execution(e.into()))?;
            if listed.is_none() {
                return Ok(None);
            }
            ListingTableUrl::parse(format!("{}/{FINDINGS_DIR}/", url.trim_end_matches('/')))
                .map(Some)
                .map_err(QueryError::Plan)
        }
    }
}

/// gdq's DataFusion settings. Any setting can be changed from the environment the way
/// datafusion-cli does it (`datafusion.execution.batch_size` ← `DATAFUSION_EXECUTION_BATCH_SIZE`),
/// gdq's own choices included.
fn session_config() -> Result<SessionConfig, QueryError> {
    let mut options = ConfigOptions::default();
    options.catalog.information_schema = true;
    options.execution.parquet.pruning = true;
    // Late materialization (the filter columns decoded first, the others only for the rows
    // that pass) is off here and turned on by the `findings` table for the scans that read
    // the raw `finding` column, where it spares decoding the text of every dropped row; on
    // narrow scans it costs more than it saves (`crate::snapshot`).
    options.execution.parquet.pushdown_filters = false;
    options.execution.parquet.reorder_filters = true;
    // Measured on a 1M-finding warehouse (README, benchmarks): reading every footer at
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

/// Opens a session over the warehouse. A warehouse without data yet (or none at all) gives
/// empty tables rather than an error; `warning` says so.
pub async fn open_session(
    location: &WarehouseLocation,
) -> Result<(SessionContext, Option<String>), QueryError> {
    let config = session_config()?;
    let mut ctx = SessionContext::new_with_config(config);
    datafusion_functions_json::register_all(&mut ctx).map_err(QueryError::Plan)?;

    let warning = if let Some(url) = findings_url(&ctx, location).await? {
        // The format carries its own Parquet options; without them it would scan with
        // DataFusion's defaults rather than the session's (page index, size hint, pushdown).
        let parquet =
            ParquetFormat::default().with_options(ctx.state().table_options().parquet.clone());
        let options = ListingOptions::new(Arc::new(parquet))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![(PARTITION_COLUMN.to_string(), DataType::Utf8)]);
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(findings_schema());
        let table = ListingTable::try_new(config).map_err(QueryError::Plan)?;
        let records = match location {
            WarehouseLocation::Local(root) => RecordSource::Local(root.clone()),
            WarehouseLocation::Store { url, store } => RecordSource::Store {
                store: Arc::clone(store),
                prefix: url
                    .splitn(4, '/')
                    .nth(3)
                    .unwrap_or_default()
                    .trim_matches('/')
                    .to_string(),
            },
        };
        let table = FindingsTable {
            inner: Arc::new(table),
            records,
        };
        ctx.register_table(TABLE, Arc::new(table))
            .map_err(QueryError::Plan)?;
        None
    } else {
        let empty = MemTable::try_new(table_schema(), vec![vec![]]).map_err(QueryError::Plan)?;
        ctx.register_table(TABLE, Arc::new(empty))
            .map_err(QueryError::Plan)?;
        Some(format!(
            "warehouse {location} holds no findings yet (run `gdq ingest` first)"
        ))
    };

    let findings = ctx.table_provider(TABLE).await.map_err(QueryError::Plan)?;
    ctx.register_table(LATEST_VIEW, Arc::new(LatestTable { findings }))
        .map_err(QueryError::Plan)?;
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
    use datafusion::parquet::arrow::ArrowWriter;
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
        let dir = root
            .path()
            .join(FINDINGS_DIR)
            .join("type=Recon%3AEC2%2FPortscan");
        std::fs::create_dir_all(&dir).expect("partition dir");
        let file = std::fs::File::create(dir.join("a.parquet")).expect("data file");
        let mut writer = ArrowWriter::try_new(file, findings_schema(), None).expect("writer");
        writer
            .write(&RecordBatch::new_empty(findings_schema()))
            .expect("write");
        writer.close().expect("close");

        let (ctx, warning) = open_session(&WarehouseLocation::Local(root.path().into()))
            .await
            .expect("session");
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
        let options = scan_options_of("select * from findings where id = 'x'").await;
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

        let options = scan_options_of("select id from findings where id = 'x'").await;
        assert!(
            !options.global.pushdown_filters,
            "a scan of narrow columns decodes them whole"
        );
    }
}
