//! The dashboard's data: its panels are the named reports (and three small queries of its
//! own), each run over the same filters, as JSON rows for the page to draw.

use std::sync::Arc;

use datafusion::arrow::json::ArrayWriter;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
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

/// The panels, in page order: (panel id, report).
fn panels() -> Result<Vec<&'static Report>, QueryError> {
    let named = [
        "daily-severity",
        "severity-bands",
        "top-types",
        "account-region",
        "resource-severity",
        "top-remote",
        "open-past-age",
        "new-types",
    ];
    let mut out = vec![&TOTALS, &VERSIONS, &COUNTRIES];
    for name in named {
        out.push(find(name).ok_or_else(|| QueryError::Usage(format!("no report {name}")))?);
    }
    Ok(out)
}

async fn run_panel(
    tables: &Tables,
    report: &Report,
    o: &ReportOptions,
) -> Result<(String, Value), QueryError> {
    // Each report scopes its own session's tables; the rows they read are in memory.
    let ctx = tables.session()?;
    let frame = report_frame(&ctx, report, o).await?;
    let columns: Vec<String> = frame
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let batches = frame.collect().await.map_err(QueryError::Execution)?;
    let mut rows = json_rows(&batches)?;
    if report.name == "open-past-age" {
        // The dashboard's table is the High and Critical ones.
        if let Value::Array(list) = &mut rows {
            list.retain(|r| r["severity"].as_f64().is_some_and(|s| s >= 7.0));
        }
    }
    Ok((
        report.name.to_string(),
        json!({ "title": report.summary, "columns": columns, "rows": rows }),
    ))
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

/// The rows every panel reads, scanned from the warehouse once: the panels' columns of
/// `findings` under the filters on who and how severe, in memory, and `findings_latest`
/// over them. Eleven panels each scanning the table cost eleven scans of it.
struct Tables {
    findings: Arc<MemTable>,
}

impl Tables {
    async fn load(warehouse: &Warehouse, o: &ReportOptions) -> Result<Tables, QueryError> {
        let (ctx, _) = crate::open_session(warehouse).await?;
        let mut frame = ctx
            .table(crate::names::TABLE)
            .await
            .and_then(|t| t.select_columns(&COLUMNS))
            .map_err(QueryError::Plan)?;
        if let Some(filter) = o.row_filter() {
            frame = frame.filter(filter).map_err(QueryError::Plan)?;
        }
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let partitions = frame
            .collect_partitioned()
            .await
            .map_err(QueryError::Execution)?;
        let findings = MemTable::try_new(schema, partitions).map_err(QueryError::Plan)?;
        Ok(Tables {
            findings: Arc::new(findings),
        })
    }

    fn session(&self) -> Result<SessionContext, QueryError> {
        let ctx = SessionContext::new_with_config(crate::session::session_config()?);
        let findings: Arc<dyn TableProvider> = self.findings.clone();
        ctx.register_table(crate::names::TABLE, findings.clone())
            .map_err(QueryError::Plan)?;
        ctx.register_table(
            crate::names::LATEST_VIEW,
            Arc::new(LatestTable { findings }),
        )
        .map_err(QueryError::Plan)?;
        Ok(ctx)
    }
}

/// Every panel's rows under `o`'s filters, as one JSON document.
pub async fn dashboard_data(warehouse: &Warehouse, o: &ReportOptions) -> Result<Value, QueryError> {
    let panels = panels()?;
    let tables = Tables::load(warehouse, o).await?;
    let results = try_join_all(panels.iter().map(|r| run_panel(&tables, r, o))).await?;
    let mut map = serde_json::Map::new();
    for (name, value) in results {
        map.insert(name, value);
    }
    Ok(json!({
        "warehouse": warehouse.name(),
        "generated_at_ms": o.now_ms,
        "filters": {
            "since_ms": o.since_ms,
            "until_ms": o.until_ms,
            "accounts": o.accounts,
            "regions": o.regions,
            "min_severity": o.min_severity,
        },
        "panels": map,
    }))
}

/// Rows of `batches` as JSON objects (timestamps as RFC 3339 text).
fn json_rows(
    batches: &[datafusion::arrow::record_batch::RecordBatch],
) -> Result<Value, QueryError> {
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
