//! `gdq dashboard` (the page as one file) and `gdq serve` (the same page live, with
//! filters and a read-only SQL box), over the warehouse.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use gdq_query::dashboard::LiveDashboard;
use gdq_query::reports::ReportOptions;
use gdq_table::Warehouse;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cli::{query_failure, runtime, table_failure};
use crate::exit::{Failure, Status};

/// The filters of reports, the dashboard and `serve`.
#[derive(Args, Debug, Clone, Default)]
pub struct Filters {
    /// From this date, timestamp or time ago (UTC), on updated_at.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Up to this date (included), timestamp or time ago.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only this account's findings; repeatable.
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
    /// Only this region's findings; repeatable.
    #[arg(long = "region", value_name = "R")]
    pub regions: Vec<String>,
    /// Only findings of at least this severity (4 Medium, 7 High, 9 Critical).
    #[arg(long, value_name = "N")]
    pub min_severity: Option<f64>,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  gdq dashboard --out findings.html\n  gdq dashboard --out week.html --since 7d --account 123456789012"
)]
pub struct DashboardArgs {
    /// The HTML file to write (self-contained: opens with no network).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub filters: Filters,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  gdq serve\n  gdq serve --listen 127.0.0.1:9000 --warehouse s3://lake/gdq\n\nBinds to loopback unless told otherwise: the page and its SQL box show every finding\nin the warehouse to whoever can reach the address."
)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
}

/// The report options of `f`, with the reports' default parameters.
pub fn options(f: &Filters) -> Result<ReportOptions, Failure> {
    let now_ms = gdq_table::layout::now_ms();
    if let Some(s) = f.min_severity
        && !(0.0..=10.0).contains(&s)
    {
        return Err(Failure::new(
            Status::Usage,
            format!("--min-severity {s}: GuardDuty severities run from 1.0 to 10.0"),
        ));
    }
    Ok(ReportOptions {
        since_ms: f
            .since
            .as_deref()
            .map(|t| crate::report::instant("--since", t, now_ms, false))
            .transpose()?,
        until_ms: f
            .until
            .as_deref()
            .map(|t| crate::report::instant("--until", t, now_ms, true))
            .transpose()?,
        accounts: f.accounts.clone(),
        regions: f.regions.clone(),
        min_severity: f.min_severity,
        resource: None,
        threshold: 50,
        age_days: [1, 7, 30],
        now_ms,
    })
}

pub fn dashboard(warehouse: &str, args: DashboardArgs) -> Result<ExitCode, Failure> {
    let options = options(&args.filters)?;
    let started = Instant::now();
    let data = runtime()?.block_on(async {
        let warehouse = Warehouse::open(warehouse).await.map_err(table_failure)?;
        gdq_query::dashboard::dashboard_data(&warehouse, &options)
            .await
            .map_err(query_failure)
    })?;
    let page = crate::dashboard::page(&data, false);
    std::fs::write(&args.out, page).map_err(|e| {
        Failure::new(
            Status::Failed,
            format!("cannot write {}: {e}", args.out.display()),
        )
    })?;
    println!(
        "wrote {} ({} findings) in {:.2} s",
        args.out.display(),
        data["panels"]["totals"]["rows"][0]["findings"],
        started.elapsed().as_secs_f64()
    );
    Ok(Status::Ok.into())
}

pub fn serve(warehouse: &str, args: ServeArgs) -> Result<ExitCode, Failure> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let handle = Warehouse::open(warehouse).await.map_err(table_failure)?;
        let listener = TcpListener::bind(args.listen).await.map_err(|e| {
            Failure::new(Status::Failed, format!("cannot listen on {}: {e}", args.listen))
        })?;
        let local = listener.local_addr().map_err(|e| Failure::new(Status::Failed, e.to_string()))?;
        let exposure = if local.ip().is_loopback() {
            "loopback only"
        } else {
            "NOT loopback: anyone who can reach this address reads every finding"
        };
        eprintln!(
            "gdq: serving the dashboard and a read-only SQL endpoint over {} at http://{local}/ ({exposure})",
            handle.name()
        );
        let live = Arc::new(LiveDashboard::default());
        {
            // Read the table while the first visitor is on the way; an error here is
            // answered to that visitor, who retries the read.
            let (live, warehouse) = (live.clone(), handle.clone());
            tokio::spawn(async move {
                if let Err(e) = live.warm(&warehouse).await {
                    eprintln!("gdq: reading {}: {e}", warehouse.name());
                }
            });
        }
        loop {
            let (stream, _) = listener
                .accept()
                .await
                .map_err(|e| Failure::new(Status::Failed, format!("accept: {e}")))?;
            let (live, warehouse) = (live.clone(), handle.clone());
            tokio::spawn(async move {
                let _ = answer(stream, &live, &warehouse).await;
            });
        }
    })
}

/// The request line's path and query, from a request head.
fn target(head: &str) -> Option<(&str, &str)> {
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    if method != "GET" {
        return None;
    }
    Some(target.split_once('?').unwrap_or((target, "")))
}

fn filters_of(query: &str) -> Filters {
    let mut f = Filters::default();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let v = v.trim().to_string();
        if v.is_empty() {
            continue;
        }
        match k.as_ref() {
            "since" => f.since = Some(v),
            "until" => f.until = Some(v),
            "account" => f.accounts.push(v),
            "region" => f.regions.push(v),
            "min_severity" => f.min_severity = v.parse().ok(),
            _ => {}
        }
    }
    f
}

async fn data(live: &LiveDashboard, warehouse: &Warehouse, query: &str) -> Value {
    let options = match options(&filters_of(query)) {
        Ok(o) => o,
        Err(e) => return json!({ "error": e.message }),
    };
    match live.data(warehouse, &options).await {
        Ok(d) => d,
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// The SQL box: one read-only query, its first rows.
async fn sql(warehouse: &Warehouse, query: &str) -> Value {
    let Some(sql) = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.into_owned())
    else {
        return json!({ "error": "no SQL given (?q=…)" });
    };
    match gdq_query::select_rows(warehouse, &sql, 1000).await {
        Ok((columns, rows)) => json!({ "columns": columns, "rows": rows }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

async fn answer(
    mut stream: TcpStream,
    live: &LiveDashboard,
    warehouse: &Warehouse,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let (status, kind, body) = match target(&head) {
        Some(("/", query)) => {
            let d = data(live, warehouse, query).await;
            (
                "200 OK",
                "text/html; charset=utf-8",
                crate::dashboard::page(&d, true),
            )
        }
        Some(("/api/dashboard", query)) => (
            "200 OK",
            "application/json",
            data(live, warehouse, query).await.to_string(),
        ),
        Some(("/api/sql", query)) => (
            "200 OK",
            "application/json",
            sql(warehouse, query).await.to_string(),
        ),
        Some(_) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        None => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
