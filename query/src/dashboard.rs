//! The dashboard's data: its panels are the named reports (and three small queries of its
//! own), each run over the same filters, as JSON rows for the page to draw.

use std::sync::Arc;

use datafusion::arrow::json::ArrayWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Expr, col, lit};
use futures::future::try_join_all;
use gdq_table::Warehouse;
use serde_json::{Value, json};

use crate::error::QueryError;
use crate::latest::LatestTable;
use crate::reports::{Report, ReportOptions, Time, find, report_frame};

/// Queries only the dashboard runs (its headline numbers and the countries panel).
const TOTALS: Report = Report {
    name: "totals",
    summary: "headline numbers",
    sql: "select count(*) as findings, \
          count(*) filter (where severity >= 7) as high_or_critical, \
          count(*) filter (where severity >= 7 and not archived) as open_high_or_critical, \
          count(distinct account_id) as accounts, count(distinct region) as regions, \
          min(created_at) as first_created, max(updated_at) as last_updated \
          from findings_latest",
    params: &[],
    time: Time::Filter,
};
const VERSIONS: Report = Report {
    name: "versions",
    summary: "exported versions",
    sql: "select count(*) as versions from findings",
    params: &[],
    time: Time::Filter,
};
const COUNTRIES: Report = Report {
    name: "top-countries",
    summary: "countries of remote addresses",
    sql: "select remote_country, count(*) as findings from findings_latest \
          where remote_country is not null group by remote_country \
          order by findings desc, remote_country limit 15",
    params: &[],
    time: Time::Filter,
};

/// A panel of the page: a report's rows, and what the dashboard does with them beyond the
/// report.
struct Panel {
    report: &'static Report,
    /// Keeps only the report's rows that pass (applied to its answer, so to each finding's
    /// newest version where the report reads `findings_latest`).
    keep: Option<fn() -> Expr>,
    /// The most rows sent to the page; the panel gives the total beside them.
    rows_shown: Option<usize>,
}

impl Panel {
    const fn chart(report: &'static Report) -> Panel {
        Panel {
            report,
            keep: None,
            rows_shown: None,
        }
    }
}

fn high_or_critical() -> Expr {
    col("severity").gt_eq(lit(7.0))
}

/// Rows the page shows of a table panel: a year of open findings is a long table.
const TABLE_ROWS_SHOWN: usize = 500;

/// The panels, in page order.
fn panels() -> Result<Vec<Panel>, QueryError> {
    let named =
        |name: &str| find(name).ok_or_else(|| QueryError::Usage(format!("no report {name}")));
    let mut out = vec![
        Panel::chart(&TOTALS),
        Panel::chart(&VERSIONS),
        Panel::chart(&COUNTRIES),
    ];
    for name in [
        "daily-severity",
        "severity-bands",
        "top-types",
        "account-region",
        "resource-severity",
        "top-remote",
    ] {
        out.push(Panel::chart(named(name)?));
    }
    // The page's table: the High and Critical findings past their age limit.
    out.push(Panel {
        report: named("open-past-age")?,
        keep: Some(high_or_critical),
        rows_shown: Some(TABLE_ROWS_SHOWN),
    });
    out.push(Panel::chart(named("new-types")?));
    Ok(out)
}

async fn run_panel(
    tables: &Tables,
    panel: &Panel,
    o: &ReportOptions,
) -> Result<(String, Value), QueryError> {
    // Each report scopes its own session's tables; the rows they read are in memory.
    let ctx = tables.session()?;
    let mut frame = report_frame(&ctx, panel.report, o).await?;
    if let Some(keep) = panel.keep {
        frame = frame.filter(keep()).map_err(QueryError::Plan)?;
    }
    let columns: Vec<String> = frame
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let batches = frame.collect().await.map_err(QueryError::Execution)?;
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    // Only the rows shown become JSON.
    let shown = match panel.rows_shown {
        Some(limit) => first_rows(&batches, limit),
        None => batches,
    };
    let rows = json_rows(&shown)?;
    Ok((
        panel.report.name.to_string(),
        json!({ "title": panel.report.summary, "columns": columns, "rows": rows, "total": total }),
    ))
}

fn first_rows(batches: &[RecordBatch], limit: usize) -> Vec<RecordBatch> {
    let mut left = limit;
    let mut out = Vec::new();
    for batch in batches {
        if left == 0 {
            break;
        }
        let take = batch.num_rows().min(left);
        out.push(batch.slice(0, take));
        left -= take;
    }
    out
}

/// The columns the panels read (and the three `findings_latest` chooses versions by).
const COLUMNS: [&str; 16] = [
    "id",
    "type",
    "updated_at",
    "created_at",
    "count",
    "severity",
    "severity_label",
    "account_id",
    "region",
    "archived",
    "resource_type",
    "remote_ip",
    "remote_country",
    "remote_org",
    "remote_asn",
    "title",
];

/// The rows every panel reads, in memory: the panels' columns of every version, scanned
/// from the warehouse once, and `findings_latest` over them, chosen once. Eleven panels
/// each scanning the table cost eleven scans, and each choosing the newest versions again
/// cost nine hash tables of every id; the panels now aggregate rows in memory.
struct Tables {
    findings: Arc<MemTable>,
    latest: Arc<MemTable>,
}

impl Tables {
    /// Reads the versions that pass `prefilter`, which must keep or drop all the versions
    /// of a finding alike ([`ReportOptions::where_filter`]).
    async fn load(ctx: &SessionContext, prefilter: Option<Expr>) -> Result<Tables, QueryError> {
        let mut frame = ctx
            .table(crate::names::TABLE)
            .await
            .and_then(|t| t.select_columns(&COLUMNS))
            .map_err(QueryError::Plan)?;
        if let Some(filter) = prefilter {
            frame = frame.filter(filter).map_err(QueryError::Plan)?;
        }
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let partitions = frame
            .collect_partitioned()
            .await
            .map_err(QueryError::Execution)?;
        let findings: Arc<MemTable> =
            Arc::new(MemTable::try_new(schema.clone(), partitions).map_err(QueryError::Plan)?);

        let latest_ctx = SessionContext::new_with_config(crate::session::session_config()?);
        let all: Arc<dyn TableProvider> = findings.clone();
        let newest = latest_ctx
            .read_table(Arc::new(LatestTable { findings: all }))
            .map_err(QueryError::Plan)?;
        let batches = newest.collect().await.map_err(QueryError::Execution)?;
        // Spread over the cores: the newest versions come out of one hash table.
        let lanes = latest_ctx.copied_config().target_partitions().max(1);
        let mut partitions = vec![Vec::new(); lanes];
        for (i, batch) in batches.into_iter().enumerate() {
            partitions[i % lanes].push(batch);
        }
        let latest = Arc::new(MemTable::try_new(schema, partitions).map_err(QueryError::Plan)?);
        Ok(Tables { findings, latest })
    }

    fn session(&self) -> Result<SessionContext, QueryError> {
        let ctx = SessionContext::new_with_config(crate::session::session_config()?);
        ctx.register_table(crate::names::TABLE, self.findings.clone())
            .map_err(QueryError::Plan)?;
        ctx.register_table(crate::names::LATEST_VIEW, self.latest.clone())
            .map_err(QueryError::Plan)?;
        Ok(ctx)
    }

    async fn panels(
        &self,
        o: &ReportOptions,
    ) -> Result<serde_json::Map<String, Value>, QueryError> {
        let panels = panels()?;
        let results = try_join_all(panels.iter().map(|p| run_panel(self, p, o))).await?;
        Ok(results.into_iter().collect())
    }
}

fn document(
    warehouse: &Warehouse,
    o: &ReportOptions,
    panels: serde_json::Map<String, Value>,
) -> Value {
    json!({
        "warehouse": warehouse.name(),
        "generated_at_ms": o.now_ms,
        "filters": {
            "since_ms": o.since_ms,
            "until_ms": o.until_ms,
            "accounts": o.accounts,
            "regions": o.regions,
            "min_severity": o.min_severity,
        },
        "panels": panels,
    })
}

/// Every panel's rows under `o`'s filters, as one JSON document.
pub async fn dashboard_data(warehouse: &Warehouse, o: &ReportOptions) -> Result<Value, QueryError> {
    let (ctx, _) = crate::open_session(warehouse).await?;
    let tables = Tables::load(&ctx, o.where_filter()).await?;
    Ok(document(warehouse, o, tables.panels(o).await?))
}

/// `gdq serve`'s data: the warehouse's rows read once per table version and kept, so a new
/// filter is answered from memory and only a new commit reads the table again.
#[derive(Default)]
pub struct LiveDashboard {
    loaded: tokio::sync::Mutex<Option<(Option<u64>, Arc<Tables>)>>,
}

impl LiveDashboard {
    /// Reads the table now, so the first page is answered from memory too.
    pub async fn warm(&self, warehouse: &Warehouse) -> Result<(), QueryError> {
        self.tables(warehouse).await.map(|_| ())
    }

    async fn tables(&self, warehouse: &Warehouse) -> Result<Arc<Tables>, QueryError> {
        let snapshot = warehouse.snapshot().await.map_err(QueryError::Table)?;
        let version = snapshot.as_ref().map(|s| s.version);
        // Held while loading: requests that arrive meanwhile wait for this one read.
        let mut loaded = self.loaded.lock().await;
        if let Some((v, tables)) = loaded.as_ref()
            && *v == version
        {
            return Ok(tables.clone());
        }
        let (ctx, _) = crate::session::open_session_at(warehouse, snapshot).await?;
        let tables = Arc::new(Tables::load(&ctx, None).await?);
        *loaded = Some((version, tables.clone()));
        Ok(tables)
    }

    /// Every panel's rows under `o`'s filters, as [`dashboard_data`] gives them.
    pub async fn data(
        &self,
        warehouse: &Warehouse,
        o: &ReportOptions,
    ) -> Result<Value, QueryError> {
        let tables = self.tables(warehouse).await?;
        Ok(document(warehouse, o, tables.panels(o).await?))
    }
}

/// Rows of `batches` as JSON objects (timestamps as RFC 3339 text).
fn json_rows(batches: &[RecordBatch]) -> Result<Value, QueryError> {
    let mut writer = ArrayWriter::new(Vec::new());
    for batch in batches {
        writer
            .write(batch)
            .map_err(|e| QueryError::Output(e.to_string()))?;
    }
    writer
        .finish()
        .map_err(|e| QueryError::Output(e.to_string()))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(json!([]));
    }
    serde_json::from_slice(&bytes).map_err(|e| QueryError::Output(e.to_string()))
}

/// The SQL box of `gdq serve`: one query (`SELECT`/`WITH`/`VALUES`), never a statement
/// that defines or writes anything, and its first `limit` rows.
pub async fn select_rows(
    warehouse: &Warehouse,
    sql: &str,
    limit: usize,
) -> Result<(Vec<String>, Value), QueryError> {
    use datafusion::sql::parser::{DFParser, Statement};
    use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
    let mut statements = DFParser::parse_sql(sql).map_err(QueryError::Plan)?;
    let statement = match (statements.pop_front(), statements.is_empty()) {
        (Some(s), true) => s,
        _ => return Err(QueryError::Usage("one query at a time".into())),
    };
    if !matches!(&statement, Statement::Statement(s) if matches!(**s, SqlStatement::Query(_))) {
        return Err(QueryError::Usage(
            "only queries (select, with, values) run here".into(),
        ));
    }
    let (ctx, _) = crate::open_session(warehouse).await?;
    let plan = ctx
        .state()
        .statement_to_plan(statement)
        .await
        .map_err(QueryError::Plan)?;
    let frame = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(QueryError::Plan)?
        .limit(0, Some(limit))
        .map_err(QueryError::Plan)?;
    let columns: Vec<String> = frame
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let batches = frame.collect().await.map_err(QueryError::Execution)?;
    Ok((columns, json_rows(&batches)?))
}
