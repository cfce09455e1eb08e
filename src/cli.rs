//! Command-line interface.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gdq_ingest::IngestError;
use gdq_query::{OutputFormat, QueryError, open_session, print_sql};
use gdq_table::{TableError, Warehouse};

use crate::choices::{EngineChoice, FormatChoice, LogFormatChoice, ProgressChoice};
use crate::exit::{Failure, Status};
use crate::output::Stdout;

const AFTER_HELP: &str = "\
Examples:
  gdq setup --bucket acme-guardduty-exports --region eu-west-1 --dry-run
  gdq ingest testdata/exports
  gdq \"select type, count(*) from findings group by type order by 2 desc\"
  gdq --format csv \"select id, severity, title from findings_latest where severity >= 7\"
  gdq \"select json_get_str(finding, 'service', 'runtimeDetails', 'process', 'name') from findings limit 5\"

Exit status: 0 ok, 1 failure (unreadable input or warehouse, a failed AWS call, a link
setup verify found broken), 2 bad usage or SQL,
3 ingest finished but quarantined lines or objects (see <warehouse>/_gdq/quarantine/).";

/// GuardDuty findings exports → a queryable Parquet history.
///
/// With SQL and no subcommand, runs the SQL over the warehouse (`gdq query`).
#[derive(Parser, Debug)]
#[command(name = "gdq", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    warehouse: WarehouseArg,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    query: QueryArgs,
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
struct WarehouseArg {
    /// Warehouse: a directory, or s3://bucket/prefix (AWS settings from the standard chain).
    #[arg(
        long,
        global = true,
        env = "GDQ_WAREHOUSE",
        default_value = "gdq-warehouse",
        value_name = "DIR|s3://BUCKET/PREFIX"
    )]
    warehouse: String,
}

#[derive(Args, Debug, Clone)]
struct ConfigArg {
    /// Setup record: written by `gdq setup`; the queue, key and export bucket `gdq worker`
    /// and `gdq ingest` use when not given. Default ~/.config/gdq/setup.json.
    #[arg(long, global = true, env = "GDQ_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct OutputArgs {
    /// Output format of results.
    #[arg(long, global = true, value_enum, default_value_t = FormatChoice::Table, value_name = "FORMAT")]
    format: FormatChoice,
}

#[derive(Args, Debug, Clone)]
struct QueryArgs {
    /// Read the SQL from a file.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        conflicts_with = "sql"
    )]
    file: Option<PathBuf>,
    /// SQL to run; several statements may be separated by `;`. Without it (and without -f),
    /// the SQL is read from standard input.
    sql: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ingest GuardDuty export files (`.jsonl.gz`, `.jsonl`) or folders of them.
    #[command(
        after_help = INGEST_HELP
    )]
    Ingest(IngestArgs),
    /// Run SQL over the warehouse (tables: findings, findings_latest, findings_ocsf).
    #[command(
        after_help = "Example:\n  gdq query \"select severity_label, count(*) from findings_latest group by 1\""
    )]
    Query(QueryArgs),
    /// Consume S3 object notifications from SQS and commit each export object exactly once.
    #[command(after_help = WORKER_HELP)]
    Worker(WorkerArgs),
    /// What the warehouse holds: per type files, rows, bytes, newest updated_at; ledger; quarantine.
    #[command(
        after_help = "Example:\n  gdq status --warehouse /data/gdq\n  gdq status --format json\n  gdq status --by account    # an organization's accounts and regions"
    )]
    Status(StatusArgs),
    /// Merge each type partition's small files into large ones sorted by updated_at.
    #[command(after_help = COMPACT_HELP)]
    Compact(CompactArgs),
    /// Delete files no commit names: dead writers' debris, and files compaction removed
    /// once the retention (1 hour) has passed.
    #[command(after_help = VACUUM_HELP)]
    Vacuum(VacuumArgs),
    /// Upgrade a warehouse of an older gdq (plain Parquet folders) to the Delta table, in
    /// place and without rewriting data. Any write does it too.
    #[command(
        after_help = "Example:\n  gdq upgrade --warehouse /data/gdq\n\nIdempotent: a second run, or a run after a crash, changes nothing. Stop older gdq writers first."
    )]
    Upgrade,
    /// Table definitions of the warehouse's Delta table for Athena, Spark, Trino, DuckDB or
    /// Snowflake (--plain: Parquet folders, for engines without Delta).
    #[command(after_help = DDL_HELP)]
    Ddl(DdlArgs),
    /// Interactive SQL shell (also what `gdq` without SQL opens on a terminal).
    #[command(
        after_help = "Example:\n  gdq shell --warehouse /data/gdq\n  gdq> \\d findings\n  gdq> select type, count(*)\n    -> from findings group by type;"
    )]
    Shell,
    /// The analysts' questions as named reports: list them, run one, or print its SQL.
    #[command(after_help = crate::report::REPORT_HELP)]
    Report(crate::report::ReportArgs),
    /// Write the dashboard as one self-contained HTML file.
    Dashboard(crate::serve::DashboardArgs),
    /// Serve the dashboard live over the warehouse, with filters and a SQL box (loopback).
    Serve(crate::serve::ServeArgs),
    /// Print the table schema.
    #[command(after_help = "Example:\n  gdq schema --markdown")]
    Schema(SchemaArgs),
    /// Enable GuardDuty and build its encrypted export path (idempotent); `setup verify`
    /// checks it end to end.
    Setup(crate::setup::SetupCommand),
    /// Remove what `gdq setup` created (the detector, key and findings stay unless asked).
    Teardown(crate::setup::TeardownArgs),
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Export files or folders, or s3://bucket[/prefix] of an export bucket (default: the
    /// export bucket and key of the setup record).
    #[arg(value_name = "PATH|s3://BUCKET/PREFIX")]
    pub paths: Vec<String>,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Close a data file and start another past this many MiB.
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    pub target_file_mib: u64,
    /// Commit after this many MiB of input (as stored): bounds what a crash makes the next
    /// run redo. 0 commits after every object. Default 4096 (local), 1024 (s3://).
    #[arg(long, value_name = "MIB")]
    pub commit_mib: Option<u64>,
    /// Memory for buffered rows, in MiB, whatever the input: three quarters hold the open
    /// row groups (larger ones make faster scans), a quarter the threads' row buffers; past
    /// it the largest are written out first. Peak RSS is about 3.4 times this.
    #[arg(long, default_value_t = gdq_ingest::batch::DEFAULT_MEMORY_BUDGET >> 20, value_name = "MIB")]
    pub memory_mib: usize,
    /// s3:// only: first export day to read, YYYY-MM-DD or a time ago (3d, 36h); UTC.
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// s3:// only: last export day to read (included), YYYY-MM-DD or a time ago.
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// s3:// only: read only these accounts' export folders; repeatable.
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
    /// s3:// only: read only these regions' export folders; repeatable.
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    /// s3:// only: refuse objects not encrypted with this KMS key (ARN or key id).
    #[arg(long, value_name = "ARN")]
    pub kms_key_arn: Option<String>,
    /// s3:// only: objects fetched and decoded at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub concurrency: usize,
    /// s3:// only: list what would be ingested (and what is already in), change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Progress display on stderr.
    #[arg(long, value_enum, default_value_t = ProgressChoice::Auto, value_name = "MODE")]
    pub progress: ProgressChoice,
}

const INGEST_HELP: &str = "\
Examples:
  gdq ingest --warehouse ./wh ~/exports/AWSLogs
  gdq ingest --warehouse s3://lake/gdq s3://export-bucket --since 3d       # nightly catch-up
  gdq ingest s3://export-bucket/org --since 2024-01-01 --until 2024-06-30 --account 123456789012
  gdq ingest s3://export-bucket --since 7d --dry-run

Folders are walked recursively; s3:// sources are listed one folder level at a time and
only within the accounts, regions and dates asked for. Objects already in the warehouse are
skipped without being downloaded, so running the same ingest twice changes nothing, and a
run after a worker outage picks up exactly the objects the worker missed.";

const COMPACT_HELP: &str = "\
Examples:
  gdq compact --warehouse /data/gdq
  gdq compact --warehouse s3://lake/gdq --type Recon:EC2/PortProbeUnprotectedPort --dedupe

Each partition is one commit that removes the inputs and adds the outputs: every Delta
reader sees the files before or after, never both. Safe beside the worker and scheduled
ingests (appends committed meanwhile are kept; a concurrent compaction of the same files
wins or loses as a whole). The inputs stay for the retention (1 hour) for readers of older
snapshots, then a vacuum deletes them; plain-Parquet readers of the folders see both until
then. The ledger is untouched, so a late redelivery of a compacted object adds nothing.";

const VACUUM_HELP: &str = "\
Examples:
  gdq vacuum --warehouse /data/gdq
  gdq vacuum --warehouse s3://lake/gdq --dry-run
  gdq vacuum --retention 0s     # removed files now: plain-Parquet readers then read exactly the table

Removes data, index and quarantine files of batches that never committed (locally once
their writer is gone; in S3 once older than 15 minutes, GDQ_STAGING_TTL_SECS), and files
compaction removed from the table once the retention has passed. Every writer does the
same when it starts.";

const DDL_HELP: &str = "\
Examples:
  gdq ddl --engine athena --warehouse s3://lake/gdq > findings.sql
  gdq ddl --engine spark --location s3a://lake/gdq/findings
  gdq ddl --engine duckdb --warehouse ./wh | duckdb
  gdq ddl --engine duckdb --plain --warehouse ./wh | duckdb     # without the delta extension

The statements define `findings` (every exported version; schema and partitions from the
Delta log, so new finding types need no repair) and `findings_latest` (one row per id).
--plain defines Parquet tables over the folders instead; Trino and Athena then register the
partitions, to run again when new types appear.";

const WORKER_HELP: &str = "\
Example:
  gdq worker --queue-url https://sqs.us-east-1.amazonaws.com/123456789012/gdq-findings \\
             --kms-key-arn arn:aws:kms:us-east-1:123456789012:key/… --warehouse /data/gdq

AWS settings come from the standard chain (environment, profiles and SSO, container and
instance roles) and AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL. Messages are deleted only
after their rows are committed; refused or unreadable objects stay on the queue for its
dead-letter queue. SIGINT/SIGTERM: stop receiving, commit what is in hand, exit 0.";

#[derive(Args, Debug)]
pub struct DdlArgs {
    /// The engine whose SQL to print.
    #[arg(long, value_enum, value_name = "ENGINE")]
    pub engine: EngineChoice,
    /// Plain Parquet tables over the partition folders instead of the Delta table (exact
    /// only with no writer in flight, after `gdq vacuum --retention 0s`).
    #[arg(long)]
    pub plain: bool,
    /// Location of the findings folder as the engine sees it (default: from --warehouse).
    #[arg(long, value_name = "URI")]
    pub location: Option<String>,
    /// Trino schema (database) to create the table in.
    #[arg(long, default_value = "security", value_name = "NAME")]
    pub trino_schema: String,
}

#[derive(Args, Debug)]
pub struct VacuumArgs {
    /// Keep removed files this long instead of the table's retention (1h): 0s deletes them
    /// now; a reader of an older snapshot then fails.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub retention: Option<std::time::Duration>,
    /// Say what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct CompactArgs {
    /// Only this finding type (repeatable; default all).
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Size at which an output file is closed: 128MiB, 1GiB, 500MB, or bytes.
    #[arg(long, default_value = "128MiB", value_name = "SIZE", value_parser = parse_size)]
    pub target_file_size: u64,
    /// Keep one row per (id, updated_at): drops re-exported identical versions.
    #[arg(long)]
    pub dedupe: bool,
}

/// Parses a size such as `128MiB`, `1GiB`, `500MB` or `1048576`.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 128MiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    number
        .checked_mul(scale)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is not a usable size"))
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// URL of the SQS queue that receives the export bucket's notifications (default: the
    /// setup record's queue, with its key and region).
    #[arg(long, value_name = "URL")]
    pub queue_url: Option<String>,
    /// Drain the queue (until a receive returns nothing), commit, print a summary and exit.
    #[arg(long)]
    pub once: bool,
    /// Refuse objects not encrypted with this KMS key (ARN or key id).
    #[arg(long, value_name = "ARN")]
    pub kms_key_arn: Option<String>,
    /// Accept only these accounts (export key and finding accountId); repeatable.
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
    /// Objects fetched and decoded at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub concurrency: usize,
    /// Commit when this many rows are waiting …
    #[arg(long, default_value_t = 250_000, value_name = "ROWS")]
    pub flush_rows: u64,
    /// … or when the oldest waiting message is this old.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub flush_interval: std::time::Duration,
    /// Long-poll wait of one receive (at most 20s); --once uses 1s unless set.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub wait: Option<std::time::Duration>,
    /// Interval of the one-line progress log.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub progress_interval: std::time::Duration,
    /// Log format on stderr. Level from GDQ_LOG (default: gdq at info, libraries at warn).
    #[arg(long, value_enum, default_value_t = LogFormatChoice::Text, value_name = "FORMAT")]
    pub log_format: LogFormatChoice,
}

#[derive(Args, Debug)]
struct SchemaArgs {
    /// Print the column table as Markdown.
    #[arg(long)]
    markdown: bool,
    #[command(subcommand)]
    action: Option<SchemaAction>,
}

#[derive(Subcommand, Debug)]
enum SchemaAction {
    /// JSON paths of the raw `finding` column that no typed column covers, with counts,
    /// first/last seen and an example value: new GuardDuty fields to ask columns for.
    #[command(
        after_help = "Example:\n  gdq schema drift --warehouse /data/gdq\n  gdq schema drift --format csv > drift.csv"
    )]
    Drift,
}

pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let warehouse = cli.warehouse.warehouse;
    let config = cli.config.config;
    match cli.command {
        Some(Command::Ingest(args)) => crate::ingest::run(&warehouse, config, args),
        Some(Command::Setup(command)) => crate::setup::run(&warehouse, config, command),
        Some(Command::Teardown(args)) => crate::setup::teardown(config, args),
        Some(Command::Query(args)) => query(&warehouse, args, cli.output.format.into()),
        Some(Command::Dashboard(args)) => crate::serve::dashboard(&warehouse, args),
        Some(Command::Serve(args)) => crate::serve::serve(&warehouse, args),
        Some(Command::Report(args)) => {
            crate::report::run(&warehouse, args, cli.output.format.into())
        }
        Some(Command::Schema(SchemaArgs {
            action: Some(SchemaAction::Drift),
            ..
        })) => drift(&warehouse, cli.output.format.into()),
        Some(Command::Schema(args)) => schema(args),
        Some(Command::Status(args)) if args.by == StatusBy::Account => {
            status_by_account(&warehouse, cli.output.format.into())
        }
        Some(Command::Status(_)) => status(&warehouse, cli.output.format.into()),
        Some(Command::Compact(args)) => compact(&warehouse, args),
        Some(Command::Vacuum(args)) => vacuum(&warehouse, args),
        Some(Command::Upgrade) => upgrade(&warehouse),
        Some(Command::Ddl(args)) => ddl(&warehouse, args),
        Some(Command::Shell) => crate::shell::run(&warehouse, cli.output.format.into()),
        None if cli.query.sql.is_none()
            && cli.query.file.is_none()
            && std::io::stdin().is_terminal() =>
        {
            crate::shell::run(&warehouse, cli.output.format.into())
        }
        Some(Command::Worker(args)) => crate::worker::run(&warehouse, config, args),
        None => query(&warehouse, cli.query, cli.output.format.into()),
    }
}

pub fn ingest_failure(e: IngestError) -> Failure {
    match e {
        IngestError::Table(e) => table_failure(e),
        IngestError::MissingPath(_) | IngestError::Usage(_) => Failure::new(Status::Usage, e),
        _ => Failure::new(Status::Failed, e),
    }
}

pub fn table_failure(e: TableError) -> Failure {
    let code = match e {
        TableError::Usage(_) => Status::Usage,
        _ => Status::Failed,
    };
    Failure::new(code, e)
}

/// Opens the warehouse (for S3, with the standard AWS configuration). Not from async code:
/// there, `Warehouse::open(..).await` with [`table_failure`].
pub fn open_warehouse(location: &str) -> Result<Warehouse, Failure> {
    gdq_table::block_on(Warehouse::open(location)).map_err(table_failure)
}

fn read_sql(args: &QueryArgs) -> Result<String, Failure> {
    if let Some(sql) = &args.sql {
        return Ok(sql.clone());
    }
    if let Some(path) = &args.file {
        return std::fs::read_to_string(path).map_err(|e| {
            Failure::new(
                Status::Usage,
                format!("cannot read {}: {e}", path.display()),
            )
        });
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(Failure::new(
            Status::Usage,
            "no SQL given: pass it as an argument, with -f FILE, or on standard input (see gdq --help)",
        ));
    }
    let mut sql = String::new();
    stdin
        .lock()
        .read_to_string(&mut sql)
        .map_err(|e| Failure::new(Status::Usage, format!("cannot read standard input: {e}")))?;
    Ok(sql)
}

pub fn query_failure(e: QueryError) -> Failure {
    match e {
        QueryError::Plan(_) | QueryError::Usage(_) => Failure::new(Status::Usage, e),
        QueryError::Table(e) => table_failure(e),
        _ => Failure::new(Status::Failed, e),
    }
}

/// The async runtime every command that talks to AWS or queries runs on.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Status::Failed, format!("cannot start the runtime: {e}")))
}

fn drift(warehouse: &str, format: OutputFormat) -> Result<ExitCode, Failure> {
    runtime()?.block_on(async {
        let warehouse = Warehouse::open(warehouse).await.map_err(table_failure)?;
        let (ctx, warning) = open_session(&warehouse).await.map_err(query_failure)?;
        if let Some(warning) = warning {
            eprintln!("gdq: {warning}");
        }
        let result = gdq_query::drift::schema_drift(&ctx)
            .await
            .map_err(query_failure)?;
        let mut out = Stdout::lock();
        let written = gdq_query::format::write_result(&mut out, &result, format)
            .map(|()| Status::Ok.into())
            .map_err(query_failure);
        out.finish(written)
    })
}

fn query(warehouse: &str, args: QueryArgs, format: OutputFormat) -> Result<ExitCode, Failure> {
    let sql = read_sql(&args)?;
    print_query(warehouse, &sql, format)
}

/// Runs `sql` over the warehouse's newest snapshot and streams the results to stdout.
fn print_query(warehouse: &str, sql: &str, format: OutputFormat) -> Result<ExitCode, Failure> {
    crate::allocator::purge_freed_memory_when_long_running();
    runtime()?.block_on(async {
        let warehouse = Warehouse::open(warehouse).await.map_err(table_failure)?;
        let (ctx, warning) = open_session(&warehouse).await.map_err(query_failure)?;
        if let Some(warning) = warning {
            eprintln!("gdq: {warning}");
        }
        let mut out = Stdout::lock();
        let printed = print_sql(&ctx, sql, &mut out, format)
            .await
            .map(|_| Status::Ok.into())
            .map_err(query_failure);
        out.finish(printed)
    })
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// `type`: per finding type, from the table's log (no data read); `account`: findings
    /// and versions per account and region (scans the account and region columns).
    #[arg(long, value_enum, default_value_t = StatusBy::Type)]
    pub by: StatusBy,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusBy {
    Type,
    Account,
}

/// What `gdq status --by account` runs: an organization's warehouse at a glance.
pub const STATUS_BY_ACCOUNT_SQL: &str = "select account_id, region, \
     count(distinct id) as findings, count(*) as versions, max(updated_at) as newest_updated_at \
     from findings group by account_id, region order by findings desc, account_id, region";

fn status_by_account(warehouse: &str, format: OutputFormat) -> Result<ExitCode, Failure> {
    print_query(warehouse, STATUS_BY_ACCOUNT_SQL, format)
}

fn status(warehouse: &str, format: OutputFormat) -> Result<ExitCode, Failure> {
    let handle = open_warehouse(warehouse)?;
    let status =
        gdq_table::block_on(gdq_table::status::warehouse_status(&handle)).map_err(table_failure)?;
    let mut out = Stdout::lock();
    let written = match format {
        OutputFormat::Json | OutputFormat::Ndjson => {
            writeln!(out, "{}", status_document(warehouse, &status)).map_err(write_failure)
        }
        // Rows of one shape only: the per-type table (the totals are a sum away).
        OutputFormat::Csv | OutputFormat::Tsv => gdq_query::status::status_by_type(&status)
            .and_then(|result| gdq_query::format::write_result(&mut out, &result, format))
            .map_err(query_failure),
        OutputFormat::Table => write_status_text(&mut out, &status).map_err(write_failure),
    };
    out.finish(written.map(|()| Status::Ok.into()))
}

fn write_failure(e: std::io::Error) -> Failure {
    Failure::new(Status::Failed, format!("writing to standard output: {e}"))
}

fn status_document(
    warehouse: &str,
    status: &gdq_table::status::WarehouseStatus,
) -> serde_json::Value {
    let types: Vec<serde_json::Value> = status
        .types
        .iter()
        .map(|(t, p)| {
            serde_json::json!({"type": t, "files": p.files, "rows": p.rows, "bytes": p.bytes,
                "newest_updated_at": p.newest_updated_at_ms.map(gdq_schemas::format_rfc3339_ms)})
        })
        .collect();
    serde_json::json!({"warehouse": warehouse, "version": status.version, "types": types,
        "commits": status.commits, "objects": status.objects, "quarantine_records": status.quarantine_records,
        "unreferenced_files": status.unreferenced_files})
}

fn write_status_text(
    out: &mut impl Write,
    status: &gdq_table::status::WarehouseStatus,
) -> std::io::Result<()> {
    let time = |ms: Option<i64>| ms.map(gdq_schemas::format_rfc3339_ms).unwrap_or_default();
    let mut rows: Vec<_> = status.types.iter().collect();
    rows.sort_by(|a, b| b.1.rows.cmp(&a.1.rows).then(a.0.cmp(b.0)));
    let width = rows.iter().map(|(t, _)| t.len()).max().unwrap_or(4).max(5);
    writeln!(
        out,
        "{:width$}  {:>6}  {:>10}  {:>10}  newest updated_at",
        "type", "files", "rows", "MB"
    )?;
    for (t, p) in &rows {
        writeln!(
            out,
            "{t:width$}  {:>6}  {:>10}  {:>10.1}  {}",
            p.files,
            p.rows,
            p.bytes as f64 / 1e6,
            time(p.newest_updated_at_ms)
        )?;
    }
    let total = status.total();
    writeln!(
        out,
        "{:width$}  {:>6}  {:>10}  {:>10.1}  {}",
        "total",
        total.files,
        total.rows,
        total.bytes as f64 / 1e6,
        time(total.newest_updated_at_ms)
    )?;
    let version = status
        .version
        .map_or_else(|| "no table yet".to_string(), |v| format!("version {v}"));
    writeln!(
        out,
        "table: {version}; ledger: {} objects in {} commits; quarantine: {} records; files no commit names: {}",
        status.objects, status.commits, status.quarantine_records, status.unreferenced_files
    )
}

pub fn print_recovery(out: &mut impl Write, recovery: &gdq_table::Recovery) {
    if !recovery.discarded.is_empty() || recovery.expired_files > 0 {
        let _ = writeln!(
            out,
            "  recovered   {} uncommitted batch(es) discarded ({} files), {} removed file(s) past the retention deleted",
            recovery.discarded.len(),
            recovery.debris_files,
            recovery.expired_files
        );
    }
}

fn compact(warehouse: &str, args: CompactArgs) -> Result<ExitCode, Failure> {
    let options = gdq_table::compact::CompactOptions {
        types: args.types,
        target_file_bytes: args.target_file_size,
        dedupe: args.dedupe,
        ..Default::default()
    };
    let warehouse = open_warehouse(warehouse)?;
    let report = gdq_table::block_on(async {
        let mut table = gdq_table::Table::open(&warehouse).await?;
        gdq_table::compact::compact(&mut table, &options).await
    })
    .map_err(table_failure)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "compact {}", warehouse.name());
    print_recovery(&mut out, &report.recovery);
    let (mut before, mut after, mut rows_before, mut rows_after) = (0, 0, 0, 0);
    for p in &report.partitions {
        before += p.files_before;
        after += p.files_after;
        if let Some(reason) = &p.skipped {
            if reason != "already compact" {
                let _ = writeln!(out, "  {}: left as it is: {reason}", p.finding_type);
            }
            continue;
        }
        rows_before += p.rows_before;
        rows_after += p.rows_after;
        let _ = writeln!(
            out,
            "  {}: {} files -> {}, {} rows -> {}, {:.1} MB -> {:.1} MB",
            p.finding_type,
            p.files_before,
            p.files_after,
            p.rows_before,
            p.rows_after,
            p.bytes_before as f64 / 1e6,
            p.bytes_after as f64 / 1e6
        );
    }
    let compacted = report
        .partitions
        .iter()
        .filter(|p| p.skipped.is_none())
        .count();
    let _ = writeln!(
        out,
        "  total: {compacted} of {} partitions compacted; files {before} -> {after}; rows {rows_before} -> {rows_after} in the compacted partitions",
        report.partitions.len()
    );
    if report.vacuumed.expired_files > 0 || report.vacuumed.retained_files > 0 {
        let _ = writeln!(
            out,
            "  removed files: {} deleted past the retention, {} kept for readers of older snapshots (gdq vacuum)",
            report.vacuumed.expired_files, report.vacuumed.retained_files
        );
    }
    Ok(Status::Ok.into())
}

fn vacuum(warehouse: &str, args: VacuumArgs) -> Result<ExitCode, Failure> {
    let options = gdq_table::VacuumOptions {
        retention: args.retention,
        dry_run: args.dry_run,
    };
    let warehouse = open_warehouse(warehouse)?;
    let (opened, swept) = gdq_table::block_on(async {
        let mut table = gdq_table::Table::open(&warehouse).await?;
        let opened = table.recovery().clone();
        let swept = gdq_table::vacuum::vacuum(&mut table, &options).await?;
        Ok::<_, TableError>((opened, swept))
    })
    .map_err(table_failure)?;
    let mut out = std::io::stdout().lock();
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let _ = writeln!(out, "vacuum {}", warehouse.name());
    let _ = writeln!(
        out,
        "  {verb} {} file(s) of {} uncommitted batch(es), {} removed file(s) past the retention; {} removed file(s) kept",
        opened.debris_files + swept.debris_files,
        opened.discarded.len() + swept.discarded.len(),
        opened.expired_files + swept.expired_files,
        swept.retained_files
    );
    Ok(Status::Ok.into())
}

fn upgrade(warehouse: &str) -> Result<ExitCode, Failure> {
    let warehouse = open_warehouse(warehouse)?;
    let report = gdq_table::block_on(gdq_table::legacy::upgrade(
        warehouse.store(),
        warehouse.log(),
    ))
    .map_err(table_failure)?;
    let mut out = std::io::stdout().lock();
    if report.upgraded {
        let _ = writeln!(
            out,
            "upgraded {}: {} files ({} rows) and a ledger of {} objects from {} commits are table version 0; {} interrupted step(s) of the old layout finished first",
            warehouse.name(),
            report.files,
            report.rows,
            report.objects,
            report.commits,
            report.recovered
        );
    } else {
        let _ = writeln!(out, "{}: nothing to upgrade", warehouse.name());
    }
    Ok(Status::Ok.into())
}

fn ddl(warehouse: &str, args: DdlArgs) -> Result<ExitCode, Failure> {
    let location = match args.location {
        Some(location) => location,
        None if warehouse.starts_with("s3://") => {
            format!("{}/findings", warehouse.trim_end_matches('/'))
        }
        None => {
            let absolute = std::path::absolute(warehouse)
                .map_err(|e| Failure::new(Status::Usage, format!("warehouse {warehouse}: {e}")))?;
            absolute.join("findings").display().to_string()
        }
    };
    let text = if args.plain {
        gdq_schemas::ddl::plain_ddl(args.engine.into(), &location, &args.trino_schema)
            .map_err(|e| Failure::new(Status::Usage, e))?
    } else {
        gdq_schemas::ddl::ddl(args.engine.into(), &location, &args.trino_schema)
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    Ok(Status::Ok.into())
}

fn schema(args: SchemaArgs) -> Result<ExitCode, Failure> {
    let mut out = std::io::stdout().lock();
    if args.markdown {
        let _ = write!(out, "{}", gdq_schemas::schema_markdown());
    } else {
        let width = gdq_schemas::COLUMNS
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "{:width$}  {:<28}  Finding type, from the directory name",
            "type", "Utf8 (partition)"
        );
        for c in gdq_schemas::COLUMNS {
            let _ = writeln!(
                out,
                "{:width$}  {:<28}  {}",
                c.name,
                c.kind.data_type().to_string(),
                c.meaning
            );
        }
    }
    Ok(Status::Ok.into())
}
