//! Named reports: the questions analysts ask of GuardDuty findings, each one SQL file in
//! `sql/` compiled in, so `gdq report NAME --show-sql` prints exactly what runs and users can
//! copy it into `gdq "…"`, a notebook or Athena.
//!
//! Reports read `findings` (every version) and `findings_latest` (each finding at its newest
//! version). Filters never edit the SQL: `--account`/`--region` (and `--since`/`--until`,
//! for reports over a window) replace both tables in the session by filtered views built
//! with DataFusion expressions, and the few values a report needs (`$since`, `$resource`,
//! `$threshold`, …) are bound as typed parameters. Nothing a user or a finding wrote is ever
//! spliced into SQL text.

use std::collections::HashMap;
use std::io::Write;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, col, lit};

use crate::SessionContext;
use crate::error::QueryError;
use crate::format::OutputFormat;
use crate::names::{LATEST_VIEW, TABLE};

/// A parameter a report's SQL takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// `$since`, `$until`: a window the report applies itself (over the whole history).
    Window,
    /// `$resource`.
    Resource,
    /// `$threshold`.
    Threshold,
    /// `$high_before`, `$medium_before`, `$low_before`.
    AgeLimits,
}

/// How `--since`/`--until` apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Time {
    /// To the rows the report reads (both tables filtered on `updated_at`).
    Filter,
    /// As `$since`/`$until` inside the SQL, which reads the whole history (first sightings,
    /// version ranks); `since_days` is the default `--since` in days before now.
    Window { since_days: Option<i64> },
}

#[derive(Debug)]
pub struct Report {
    pub name: &'static str,
    pub summary: &'static str,
    pub sql: &'static str,
    pub params: &'static [Param],
    pub time: Time,
}

macro_rules! report {
    ($name:literal, $summary:literal, $params:expr, $time:expr) => {
        Report {
            name: $name,
            summary: $summary,
            sql: include_str!(concat!("sql/", $name, ".sql")),
            params: $params,
            time: $time,
        }
    };
}

/// Every report, in the order `gdq report` lists them.
pub const REPORTS: &[Report] = &[
    report!(
        "daily-severity",
        "findings seen per day, by severity label",
        &[],
        Time::Filter
    ),
    report!(
        "severity-bands",
        "findings in the Low, Medium, High and Critical bands",
        &[],
        Time::Filter
    ),
    report!(
        "top-types",
        "finding types by count, with max and average severity, first and last seen",
        &[],
        Time::Filter
    ),
    report!(
        "account-region",
        "findings per account and region, High and above apart",
        &[],
        Time::Filter
    ),
    report!(
        "resource-severity",
        "findings per resource type and severity label",
        &[],
        Time::Filter
    ),
    report!(
        "top-resources",
        "instances, access keys, buckets and clusters most affected at High and above",
        &[],
        Time::Filter
    ),
    report!(
        "resource-timeline",
        "every version touching --resource ID, in time order",
        &[Param::Resource],
        Time::Filter
    ),
    report!(
        "top-remote",
        "remote IP addresses in most findings, with country and organization/ASN",
        &[],
        Time::Filter
    ),
    report!(
        "api-users",
        "API-call findings by API and calling user",
        &[],
        Time::Filter
    ),
    report!(
        "threat-matrix",
        "threat purpose × resource type affected × threat family",
        &[],
        Time::Filter
    ),
    report!(
        "new-types",
        "types first seen in the whole history on or after --since (default 7 days ago)",
        &[Param::Window],
        Time::Window {
            since_days: Some(7)
        }
    ),
    report!(
        "spikes",
        "account-days with more than --threshold findings (default 50)",
        &[Param::Threshold],
        Time::Filter
    ),
    report!(
        "recurring",
        "findings whose count grew the most across versions",
        &[],
        Time::Filter
    ),
    report!(
        "open-past-age",
        "not archived and older than 1/7/30 days for High/Medium/Low, against now",
        &[Param::AgeLimits],
        Time::Filter
    ),
    report!(
        "new-vs-updated",
        "per day: first versions against later versions",
        &[Param::Window],
        Time::Window { since_days: None }
    ),
];

/// The report named `name`.
pub fn find(name: &str) -> Option<&'static Report> {
    REPORTS.iter().find(|r| r.name == name)
}

/// What a run of a report is asked for.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// First instant included (UTC ms).
    pub since_ms: Option<i64>,
    /// First instant excluded (UTC ms).
    pub until_ms: Option<i64>,
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    /// Only findings (versions) of at least this severity.
    pub min_severity: Option<f64>,
    pub resource: Option<String>,
    pub threshold: i64,
    /// Age limits of open findings in days: High (and Critical), Medium, Low.
    pub age_days: [i64; 3],
    /// "Now", for the age limits and default windows (UTC ms).
    pub now_ms: i64,
}

const DAY_MS: i64 = 86_400_000;

fn timestamp(ms: i64) -> ScalarValue {
    ScalarValue::TimestampMillisecond(Some(ms), Some("UTC".into()))
}

impl ReportOptions {
    /// The values of the report's parameters, by name.
    pub fn params(&self, report: &Report) -> Result<Vec<(&'static str, ScalarValue)>, QueryError> {
        let mut values = Vec::new();
        for param in report.params {
            match param {
                Param::Window => {
                    let default_since = match report.time {
                        Time::Window {
                            since_days: Some(d),
                        } => self.now_ms - d * DAY_MS,
                        _ => i64::MIN / 2,
                    };
                    values.push(("since", timestamp(self.since_ms.unwrap_or(default_since))));
                    values.push(("until", timestamp(self.until_ms.unwrap_or(i64::MAX / 2))));
                }
                Param::Resource => {
                    let resource = self.resource.clone().ok_or_else(|| {
                        QueryError::Usage(format!(
                            "report {} needs --resource ID (an instance id, access key id, user \
                             name, bucket or cluster name)",
                            report.name
                        ))
                    })?;
                    values.push(("resource", ScalarValue::Utf8(Some(resource))));
                }
                Param::Threshold => {
                    values.push(("threshold", ScalarValue::Int64(Some(self.threshold))));
                }
                Param::AgeLimits => {
                    for (name, days) in ["high_before", "medium_before", "low_before"]
                        .into_iter()
                        .zip(self.age_days)
                    {
                        values.push((name, timestamp(self.now_ms - days * DAY_MS)));
                    }
                }
            }
        }
        Ok(values)
    }

    /// The rows a report may read: the accounts and regions asked for, and the time range
    /// unless the report applies it itself.
    fn predicate(&self, report: &Report) -> Option<Expr> {
        let mut parts: Vec<Expr> = self.row_filter().into_iter().collect();
        if report.time == Time::Filter {
            if let Some(since) = self.since_ms {
                parts.push(col("updated_at").gt_eq(lit(timestamp(since))));
            }
            if let Some(until) = self.until_ms {
                parts.push(col("updated_at").lt(lit(timestamp(until))));
            }
        }
        parts.into_iter().reduce(Expr::and)
    }

    /// The filters on who and how severe (not on time), which every report applies.
    pub fn row_filter(&self) -> Option<Expr> {
        let severity = self.min_severity.map(|min| col("severity").gt_eq(lit(min)));
        self.where_filter()
            .into_iter()
            .chain(severity)
            .reduce(Expr::and)
    }

    /// The filters on accounts and regions alone. Every version of a finding has the
    /// finding's account and region, so these may select versions before the newest one is
    /// chosen; a severity filter may not (a finding's severity changes between versions).
    pub fn where_filter(&self) -> Option<Expr> {
        let mut parts = Vec::new();
        if !self.accounts.is_empty() {
            parts.push(col("account_id").in_list(self.accounts.iter().map(lit).collect(), false));
        }
        if !self.regions.is_empty() {
            parts.push(col("region").in_list(self.regions.iter().map(lit).collect(), false));
        }
        parts.into_iter().reduce(Expr::and)
    }

    /// What `--show-sql` prints above the SQL: the filters and parameter values of this run.
    pub fn describe(&self, report: &Report) -> Result<String, QueryError> {
        let mut lines = Vec::new();
        if let Some(p) = self.predicate(report) {
            lines.push(format!("-- findings and findings_latest filtered to: {p}"));
        }
        for (name, value) in self.params(report)? {
            lines.push(format!("-- ${name} = {value}"));
        }
        Ok(lines.iter().map(|l| format!("{l}\n")).collect())
    }
}

/// Replaces `findings` and `findings_latest` by views of the rows the report may read.
async fn scope(ctx: &SessionContext, report: &Report, o: &ReportOptions) -> Result<(), QueryError> {
    let Some(predicate) = o.predicate(report) else {
        return Ok(());
    };
    for name in [TABLE, LATEST_VIEW] {
        let view = ctx
            .table(name)
            .await
            .and_then(|t| t.filter(predicate.clone()))
            .map_err(QueryError::Plan)?
            .into_view();
        ctx.deregister_table(name).map_err(QueryError::Plan)?;
        ctx.register_table(name, view).map_err(QueryError::Plan)?;
    }
    Ok(())
}

/// Runs `report` and writes its rows to `out` as they arrive; returns the row count.
pub async fn print_report(
    ctx: &SessionContext,
    report: &Report,
    o: &ReportOptions,
    out: &mut dyn Write,
    format: OutputFormat,
) -> Result<u64, QueryError> {
    let frame = report_frame(ctx, report, o).await?;
    crate::session::print_frame(frame, out, format).await
}

/// The report's plan over the scoped session, its parameters bound.
pub async fn report_frame(
    ctx: &SessionContext,
    report: &Report,
    o: &ReportOptions,
) -> Result<datafusion::dataframe::DataFrame, QueryError> {
    scope(ctx, report, o).await?;
    let params: HashMap<&str, ScalarValue> = o.params(report)?.into_iter().collect();
    let frame = ctx.sql(report.sql).await.map_err(QueryError::Plan)?;
    if params.is_empty() {
        return Ok(frame);
    }
    frame.with_param_values(params).map_err(QueryError::Plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_report_has_its_sql_and_a_unique_name() {
        let mut names: Vec<&str> = REPORTS.iter().map(|r| r.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), REPORTS.len());
        for r in REPORTS {
            assert!(
                r.sql.starts_with(&format!("-- {}:", r.name)),
                "{} starts with its name",
                r.name
            );
            let uses_window = r.sql.contains("$since");
            assert_eq!(uses_window, r.params.contains(&Param::Window), "{}", r.name);
            assert_eq!(
                r.sql.contains("$resource"),
                r.params.contains(&Param::Resource)
            );
            assert_eq!(
                r.sql.contains("$threshold"),
                r.params.contains(&Param::Threshold)
            );
            assert_eq!(
                r.sql.contains("$high_before"),
                r.params.contains(&Param::AgeLimits)
            );
        }
    }

    #[test]
    fn a_report_that_needs_a_resource_says_so() {
        let o = ReportOptions {
            since_ms: None,
            until_ms: None,
            accounts: vec![],
            regions: vec![],
            min_severity: None,
            resource: None,
            threshold: 50,
            age_days: [1, 7, 30],
            now_ms: 0,
        };
        let report = find("resource-timeline").unwrap();
        assert!(matches!(o.params(report), Err(QueryError::Usage(_))));
    }
}
