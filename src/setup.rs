//! `gdq setup`, `gdq setup verify`, `gdq teardown`: arguments, output and exit status
//! around the `gdq-setup` crate, and the setup record the worker and ingest read.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use gdq_ingest::listing::ExportFilter;
use gdq_ingest::s3::AwsClients;
use gdq_ingest::s3_ingest::{S3IngestOptions, ingest_s3, parse_day};
use gdq_setup::alerts::AlertsWanted;
use gdq_setup::detector::{self, DetectorWanted};
use gdq_setup::record::{self, RegionRecord, SetupRecord};
use gdq_setup::regions::RegionsWanted;
use gdq_setup::teardown::TeardownOptions;
use gdq_setup::verify::Check;
use gdq_setup::{Built, Clients, Report, SetupError, SetupOptions};
use gdq_table::S3Location;

use crate::cli::runtime;
use crate::exit::{Failure, Status};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, after_help = SETUP_HELP)]
pub struct SetupCommand {
    #[command(subcommand)]
    pub action: Option<SetupAction>,
    #[command(flatten)]
    pub args: SetupArgs,
}

#[derive(Subcommand, Debug)]
pub enum SetupAction {
    /// Check every link of the export path and name the broken one.
    #[command(after_help = VERIFY_HELP)]
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct SetupArgs {
    /// Export bucket (created if missing).
    #[arg(long, value_name = "NAME")]
    pub bucket: Option<String>,
    /// Key prefix GuardDuty writes under (default: the bucket root).
    #[arg(long, default_value = "", value_name = "P")]
    pub prefix: String,
    /// Home region: the bucket, the key, the queue and the alerts live here, and it has a
    /// detector (default: AWS_REGION or the profile's).
    #[arg(long, value_name = "R")]
    pub region: Option<String>,
    /// More regions with a detector exporting to the home bucket: R1,R2,… or all (every
    /// region enabled for the account).
    #[arg(long, value_name = "R1,R2,…|all")]
    pub regions: Option<String>,
    /// Organization mode: from the management account, make --admin-account GuardDuty's
    /// delegated administrator; from that account, build the export path and auto-enable
    /// every member account.
    #[arg(long)]
    pub organization: bool,
    /// The organization's GuardDuty administrator account (with --organization).
    #[arg(long, value_name = "ID")]
    pub admin_account: Option<String>,
    /// How often GuardDuty exports updates of existing findings (new ones: within 5 minutes).
    #[arg(long, default_value = "FIFTEEN_MINUTES", value_name = "FREQUENCY")]
    pub frequency: String,
    /// Detector features to turn on, e.g. S3_DATA_EVENTS,RUNTIME_MONITORING (others untouched).
    #[arg(long, value_delimiter = ',', value_name = "FEATURE,...")]
    pub features: Vec<String>,
    /// KMS key alias: found, or created with a new key.
    #[arg(long, default_value = "alias/gdq-findings", value_name = "ALIAS")]
    pub key_alias: String,
    /// SQS queue the worker reads; the dead-letter queue is NAME-dlq.
    #[arg(long, default_value = "gdq-findings", value_name = "NAME")]
    pub queue_name: String,
    /// Wire e-mail alerts to this address (repeatable).
    #[arg(long = "notify-email", value_name = "ADDR")]
    pub notify_emails: Vec<String>,
    /// Alert on findings of at least this severity (GuardDuty: 7 and up is High).
    #[arg(long, default_value_t = 7.0, value_name = "N")]
    pub min_severity: f64,
    /// Name of the alert topic and rule.
    #[arg(long, default_value = "gdq-alerts", value_name = "NAME")]
    pub alerts_name: String,
    /// Print the full plan with every policy document; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Also ask GuardDuty for sample findings, wait for their export, ingest it into the
    /// warehouse and report how long the sample took to become a queryable row.
    #[arg(long)]
    pub sample_findings: bool,
    /// How long to wait for the sample findings.
    #[arg(long, default_value = "15m", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Samples from this recorded region only (default: every recorded region).
    #[arg(long, value_name = "R")]
    pub region: Option<String>,
}

#[derive(Args, Debug)]
#[command(after_help = TEARDOWN_HELP)]
pub struct TeardownArgs {
    /// Also disable the detector (its findings are kept by GuardDuty).
    #[arg(long)]
    pub disable_detector: bool,
    /// Also schedule the KMS key's deletion (30 days; exports it encrypts become unreadable).
    #[arg(long)]
    pub delete_key: bool,
    /// Also delete the export bucket and every finding in it.
    #[arg(long)]
    pub delete_bucket: bool,
    /// Say what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

const SETUP_HELP: &str = "\
Examples:
  gdq setup --bucket acme-guardduty-exports --region eu-west-1 --dry-run
  gdq setup --bucket acme-guardduty-exports --region eu-west-1 --notify-email sec@acme.example
  gdq setup --bucket acme-guardduty-exports --region eu-west-1 --regions all
  gdq setup --bucket acme-guardduty-exports --region eu-west-1 --organization --admin-account 111122223333
  gdq setup verify --sample-findings

With --regions, each listed region gets a detector (same frequency and features) and a
publishing destination into the home region's bucket with its key; other regions' alert
rules forward findings to the home region's event bus.

In order: detector, KMS key (+ policy, rotation), bucket (+ public access block, default
SSE-KMS, policy), publishing destination, dead-letter queue + queue (+ policy), bucket
notification, and with --notify-email the SNS topic + EventBridge rule. Each step prints
what it found and what it changed; a second run changes nothing. Policy statements and
notification configurations that are not gdq's are kept. The result is saved to the setup
record (--config), which gdq worker and gdq ingest read by default.";

const VERIFY_HELP: &str = "\
Examples:
  gdq setup verify
  gdq setup verify --sample-findings --timeout 20m --warehouse /data/gdq

Exit status 0 when every link holds, 1 when one is broken (named on its line).";

const TEARDOWN_HELP: &str = "\
Examples:
  gdq teardown --dry-run
  gdq teardown
  gdq teardown --disable-detector --delete-key --delete-bucket    # everything, findings too

Removes the publishing destination, gdq's bucket notification, the alert rule and topic and
both queues. The detector, the key and the bucket with its findings stay unless named.";

fn setup_failure(e: SetupError) -> Failure {
    let code = match e {
        SetupError::Usage(_) => Status::Usage,
        _ => Status::Failed,
    };
    Failure::new(code, e)
}

/// `--config`, else the default location.
pub fn record_path(config: Option<PathBuf>) -> Result<PathBuf, Failure> {
    config.or_else(record::default_path).ok_or_else(|| {
        Failure::new(
            Status::Usage,
            "no setup record location: set HOME, XDG_CONFIG_HOME or --config",
        )
    })
}

/// The setup record and where it is; `what` (the command that needs it) is named in the
/// usage error when there is none.
pub fn require_record(
    config: Option<PathBuf>,
    what: &str,
) -> Result<(PathBuf, SetupRecord), Failure> {
    let path = record_path(config)?;
    match record::load(&path).map_err(setup_failure)? {
        Some(record) => Ok((path, record)),
        None => Err(Failure::new(
            Status::Usage,
            format!(
                "{what} reads the setup record, and {} does not exist: run gdq setup first (or pass --config)",
                path.display()
            ),
        )),
    }
}

/// Setup's clients and the ingest's, from one load of the AWS configuration.
async fn clients(region: Option<String>) -> (Clients, AwsClients) {
    let config = gdq_ingest::s3::load_config(region).await;
    let ingest = AwsClients::new(&config);
    let setup = Clients::new(&config, ingest.s3.clone(), ingest.sqs.clone());
    (setup, ingest)
}

pub fn run(
    warehouse: &str,
    config: Option<PathBuf>,
    command: SetupCommand,
) -> Result<ExitCode, Failure> {
    match command.action {
        Some(SetupAction::Verify(args)) => verify(warehouse, config, args),
        None => setup(warehouse, config, command.args),
    }
}

fn options(args: &SetupArgs) -> Result<SetupOptions, Failure> {
    let bucket = args.bucket.clone().ok_or_else(|| {
        Failure::new(
            Status::Usage,
            "gdq setup needs --bucket NAME (the export bucket; created if missing)",
        )
    })?;
    let features = args
        .features
        .iter()
        .filter(|f| !f.is_empty())
        .map(|f| detector::parse_feature(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(setup_failure)?;
    Ok(SetupOptions {
        bucket,
        prefix: args.prefix.trim_matches('/').to_string(),
        detector: DetectorWanted {
            frequency: detector::parse_frequency(&args.frequency).map_err(setup_failure)?,
            features,
        },
        key_alias: args.key_alias.clone(),
        queue_name: args.queue_name.clone(),
        alerts_name: args.alerts_name.clone(),
        alerts: (!args.notify_emails.is_empty()).then(|| AlertsWanted {
            emails: args.notify_emails.clone(),
            min_severity: args.min_severity,
        }),
        regions: match &args.regions {
            Some(text) => RegionsWanted::parse(text).map_err(setup_failure)?,
            None => RegionsWanted::Home,
        },
        admin_account: match (args.organization, &args.admin_account) {
            (true, Some(id)) => Some(id.clone()),
            (false, None) => None,
            (true, None) => {
                return Err(Failure::new(
                    Status::Usage,
                    "--organization needs --admin-account ID (the organization's GuardDuty \
                     administrator account)",
                ));
            }
            (false, Some(_)) => {
                return Err(Failure::new(
                    Status::Usage,
                    "--admin-account goes with --organization",
                ));
            }
        },
    })
}

fn setup(warehouse: &str, config: Option<PathBuf>, args: SetupArgs) -> Result<ExitCode, Failure> {
    let options = options(&args)?;
    let explicit_record = config.is_some();
    let path = record_path(config)?;
    let mut stdout = std::io::stdout();
    let mut report = Report::new(&mut stdout, args.dry_run);
    let built = runtime()?.block_on(async {
        let (clients, _) = clients(args.region.clone()).await;
        gdq_setup::setup(&clients, &options, &mut report).await
    });
    let changes = report.changes;
    let built = match built.map_err(setup_failure)? {
        Built::Record(record) => *record,
        Built::Delegated {
            admin_account,
            regions,
        } => {
            if args.dry_run {
                println!("\n{changes} change(s) planned; nothing was changed.");
            } else {
                println!("\n{changes} change(s) made");
            }
            println!(
                "next, with the credentials of account {admin_account} (the export path is \
                 the administrator's):\n  gdq setup --organization --admin-account \
                 {admin_account} --bucket {} --region {}{}",
                options.bucket,
                regions[0],
                if regions.len() > 1 {
                    format!(" --regions {}", regions[1..].join(","))
                } else {
                    String::new()
                }
            );
            return Ok(Status::Ok.into());
        }
    };
    if args.dry_run {
        println!(
            "\n{changes} change(s) planned; nothing was changed. Without --dry-run the record \
             goes to {}.",
            path.display()
        );
        return Ok(Status::Ok.into());
    }
    record::save(&path, &built).map_err(setup_failure)?;
    if changes == 0 {
        println!("\nnothing to change: the export path was already as wanted");
    } else {
        println!("\n{changes} change(s) made");
    }
    print_record(&path, &built);
    print_next(warehouse, explicit_record.then_some(path.as_path()), &built);
    Ok(Status::Ok.into())
}

fn print_record(path: &Path, r: &SetupRecord) {
    println!(
        "saved to {} (gdq worker, ingest, setup verify and teardown read it)",
        path.display()
    );
    println!("  queue         {}", r.queue_url);
    println!("  dead-letter   {}", r.dead_letter_queue_url);
    println!("  kms key       {} ({})", r.key_arn, r.key_alias);
    println!("  exports       {}", r.source());
    for part in r.region_records() {
        println!(
            "  detector      {} in {} (destination {})",
            part.detector_id, part.region, part.destination_id
        );
    }
    if let Some(o) = &r.organization {
        println!(
            "  organization  {}: administrator {}, every member auto-enabled",
            o.organization_id, o.admin_account
        );
    }
    if let Some(a) = &r.alerts {
        println!("  alerts        {} → {}", a.rule_name, a.topic_arn);
    }
}

/// The commands to run next, spelled with this run's warehouse and record.
fn print_next(warehouse: &str, record: Option<&Path>, r: &SetupRecord) {
    let config = record
        .map(|p| format!(" --config {}", p.display()))
        .unwrap_or_default();
    println!("next:");
    println!("  gdq worker --warehouse {warehouse}{config}");
    println!(
        "  (spelled out: gdq worker --warehouse {warehouse} --queue-url {} --kms-key-arn {})",
        r.queue_url, r.key_arn
    );
    println!(
        "  gdq setup verify --sample-findings --warehouse {warehouse}{config}   # end to end, in minutes"
    );
}

fn verify(warehouse: &str, config: Option<PathBuf>, args: VerifyArgs) -> Result<ExitCode, Failure> {
    let (_, record) = require_record(config, "gdq setup verify")?;
    let runtime = runtime()?;
    let (clients, ingest_clients) = runtime.block_on(clients(Some(record.region.clone())));
    let checks = runtime.block_on(gdq_setup::verify::verify(&clients, &record));
    print!("{}", check_table(&record.region_names(), &checks));
    let broken: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    for check in &broken {
        println!(
            "BROKEN {} {}: {}",
            check.region.as_deref().unwrap_or(&record.region),
            check.link,
            check.detail
        );
    }
    if let Some(first) = broken.first() {
        let where_ = first
            .region
            .as_deref()
            .map(|r| format!("{} in {r}", first.link))
            .unwrap_or_else(|| first.link.to_string());
        return Err(Failure::new(
            Status::Failed,
            format!(
                "{} broken link(s), first: {where_} (run gdq setup again to repair what it owns)",
                broken.len()
            ),
        ));
    }
    if !args.sample_findings {
        println!("every link holds");
        return Ok(Status::Ok.into());
    }
    let parts: Vec<RegionRecord> = match &args.region {
        Some(region) => {
            let part = record
                .region_records()
                .into_iter()
                .find(|p| &p.region == region);
            vec![part.ok_or_else(|| {
                Failure::new(
                    Status::Usage,
                    format!(
                        "--region {region}: the setup record has detectors in {} only",
                        record.region_names().join(", ")
                    ),
                )
            })?]
        }
        None => record.region_records(),
    };
    runtime.block_on(sample_round_trip(
        warehouse,
        &clients,
        &ingest_clients,
        &record,
        &parts,
        args.timeout,
    ))
}

/// The region × link table: a row per link, a column per region; shared links (the home
/// region's bucket, key, queue, topic) fill the home column, `-` where a link has no part.
fn check_table(regions: &[String], checks: &[Check]) -> String {
    let mut links: Vec<&str> = Vec::new();
    for c in checks {
        if !links.contains(&c.link) {
            links.push(c.link);
        }
    }
    let width = regions.iter().map(String::len).max().unwrap_or(0).max(6) + 2;
    let mut out = format!("{:<19}", "link");
    for region in regions {
        out.push_str(&format!("{region:<width$}"));
    }
    out = out.trim_end().to_string() + "\n";
    for link in links {
        let mut line = format!("{link:<19}");
        for (i, region) in regions.iter().enumerate() {
            let cell = checks
                .iter()
                .find(|c| {
                    c.link == link
                        && match &c.region {
                            Some(r) => r == region,
                            None => i == 0,
                        }
                })
                .map(|c| if c.ok { "ok" } else { "BROKEN" })
                .unwrap_or("-");
            line.push_str(&format!("{cell:<width$}"));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// CreateSampleFindings in each region → the export objects → an ingest → rows `gdq` can
/// query; polls the export bucket (not the queue, which belongs to the worker) and reports
/// each region's time.
async fn sample_round_trip(
    warehouse: &str,
    clients: &Clients,
    aws: &AwsClients,
    record: &SetupRecord,
    parts: &[RegionRecord],
    timeout: Duration,
) -> Result<ExitCode, Failure> {
    let warehouse_handle = gdq_table::Warehouse::open(warehouse)
        .await
        .map_err(crate::cli::table_failure)?;
    let source = S3Location::parse(&record.source()).map_err(crate::cli::table_failure)?;
    let since_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let started = Instant::now();
    for part in parts {
        gdq_setup::verify::create_sample_findings(clients, part)
            .await
            .map_err(setup_failure)?;
        println!(
            "sample findings requested from detector {} in {}; waiting for their export",
            part.detector_id, part.region
        );
    }
    let options = S3IngestOptions {
        filter: ExportFilter {
            accounts: vec![record.account.clone()],
            regions: parts.iter().map(|p| p.region.clone()).collect(),
            // Yesterday too: the export of a request made just before midnight UTC.
            since: parse_day("1d"),
            until: None,
        },
        kms_key: Some(record.key_arn.clone()),
        ..S3IngestOptions::default()
    };
    // Sample findings carry the time GuardDuty made them; a minute of slack for clock skew.
    let since = since_ms - 60_000;
    let mut waiting: Vec<&str> = parts.iter().map(|p| p.region.as_str()).collect();
    loop {
        ingest_s3(aws, &warehouse_handle, &source, &options)
            .await
            .map_err(|e| Failure::new(Status::Failed, e))?;
        let (ctx, _) = gdq_query::open_session(&warehouse_handle)
            .await
            .map_err(crate::cli::query_failure)?;
        let mut arrived = Vec::new();
        for region in &waiting {
            // Region names come from the setup record, which took them from EC2's list;
            // anything else is refused rather than spliced into SQL.
            if !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(Failure::new(
                    Status::Failed,
                    format!("setup record names region {region:?}, which is not a region name"),
                ));
            }
            let sql = format!(
                "select count(*) from findings where sample and region = '{region}' and \
                 updated_at >= to_timestamp_millis({since})"
            );
            let rows = gdq_query::query_count(&ctx, &sql)
                .await
                .map_err(crate::cli::query_failure)?
                .unwrap_or(0);
            if rows > 0 {
                println!(
                    "sample findings from {region}: {rows} row(s) queryable in {warehouse} \
                     {:.1} s after CreateSampleFindings",
                    started.elapsed().as_secs_f64()
                );
                arrived.push(*region);
            }
        }
        waiting.retain(|r| !arrived.contains(r));
        if waiting.is_empty() {
            println!(
                "  gdq --warehouse {warehouse} \"select region, type, severity, title from findings where sample\""
            );
            return Ok(Status::Ok.into());
        }
        if started.elapsed() >= timeout {
            return Err(Failure::new(
                Status::Failed,
                format!(
                    "no sample finding from {} reached {} within {}: the links above hold, so \
                     check the destination's status in the GuardDuty console of that region \
                     (Settings → Findings export)",
                    waiting.join(", "),
                    record.source(),
                    humantime::format_duration(timeout)
                ),
            ));
        }
        tokio::time::sleep(Duration::from_secs(5).min(timeout.saturating_sub(started.elapsed())))
            .await;
    }
}

pub fn teardown(config: Option<PathBuf>, args: TeardownArgs) -> Result<ExitCode, Failure> {
    let (path, record) = require_record(config, "gdq teardown")?;
    let options = TeardownOptions {
        disable_detector: args.disable_detector,
        delete_key: args.delete_key,
        delete_bucket: args.delete_bucket,
    };
    let mut stdout = std::io::stdout();
    let mut report = Report::new(&mut stdout, args.dry_run);
    let done = runtime()?.block_on(async {
        let (clients, _) = clients(Some(record.region.clone())).await;
        gdq_setup::teardown::teardown(&clients, &record, options, &mut report).await
    });
    let changes = report.changes;
    done.map_err(setup_failure)?;
    if args.dry_run {
        println!("\n{changes} removal(s) planned; nothing was changed");
        return Ok(Status::Ok.into());
    }
    record::remove(&path).map_err(setup_failure)?;
    println!(
        "\n{changes} removal(s); setup record {} removed",
        path.display()
    );
    Ok(Status::Ok.into())
}
