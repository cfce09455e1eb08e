//! Listing an export bucket without scanning it: GuardDuty writes
//! `[prefix/]AWSLogs/<account>/GuardDuty/<region>/YYYY/MM/DD/<name>.jsonl.gz`, so the walk
//! goes one folder level at a time (`ListObjectsV2` with a `/` delimiter) and only descends
//! into the accounts, regions and dates asked for. A nightly run over the last three days
//! costs a handful of list calls per account and region, whatever the bucket holds.

use std::sync::Mutex;

use aws_sdk_s3::Client;
use futures::StreamExt;
use tracing::debug;

use crate::notification::{export_time_key, parse_export_key};
use gdq_aws::AwsError;

/// How many list calls are in flight at once.
const LIST_CONCURRENCY: usize = 16;

/// A calendar day as `YYYYMMDD`, which orders like the date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day(pub u32);

impl Day {
    pub fn new(year: u32, month: u32, day: u32) -> Day {
        Day(year * 10_000 + month * 100 + day)
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Option<Day> {
        let ms = gdq_schemas::parse_timestamp_ms(&format!("{text}T00:00:00Z"))?;
        Some(Day::from_epoch_ms(ms))
    }

    /// The UTC day of an instant.
    pub fn from_epoch_ms(ms: i64) -> Day {
        let stamp = gdq_schemas::format_rfc3339_ms(ms);
        let n = |r: std::ops::Range<usize>| stamp[r].parse::<u32>().unwrap_or(0);
        Day::new(n(0..4), n(5..7), n(8..10))
    }

    fn year(self) -> u32 {
        self.0 / 10_000
    }

    fn month(self) -> u32 {
        self.0 / 100
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0 / 10_000,
            self.0 / 100 % 100,
            self.0 % 100
        )
    }
}

/// Which exports to list. Empty lists mean all.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    /// First and last export day, both included.
    pub since: Option<Day>,
    pub until: Option<Day>,
}

impl ExportFilter {
    fn keeps_year(&self, year: u32) -> bool {
        self.since.is_none_or(|s| year >= s.year()) && self.until.is_none_or(|u| year <= u.year())
    }

    fn keeps_month(&self, year: u32, month: u32) -> bool {
        let m = year * 100 + month;
        self.since.is_none_or(|s| m >= s.month()) && self.until.is_none_or(|u| m <= u.month())
    }

    fn keeps_day(&self, day: Day) -> bool {
        self.since.is_none_or(|s| day >= s) && self.until.is_none_or(|u| day <= u)
    }
}

/// An export object found by the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedExport {
    pub key: String,
    pub etag: String,
    pub size: u64,
}

/// What a listing found, and which folders it had to list to find it.
#[derive(Debug, Default)]
pub struct Listing {
    pub exports: Vec<ListedExport>,
    pub prefixes_listed: Vec<String>,
}

/// Why a listing failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// A prefix that cannot lead to exports.
    #[error("cannot list s3://{bucket}/{prefix}: {message}")]
    Prefix {
        bucket: String,
        prefix: String,
        message: String,
    },
}

/// The folder levels below `AWSLogs/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Account,
    Service,
    Region,
    Year,
    Month,
    Day,
    Objects,
}

impl Level {
    fn next(self) -> Level {
        match self {
            Level::Account => Level::Service,
            Level::Service => Level::Region,
            Level::Region => Level::Year,
            Level::Year => Level::Month,
            Level::Month => Level::Day,
            Level::Day | Level::Objects => Level::Objects,
        }
    }
}

/// A folder to descend into: its key prefix (ending in `/`), its level, and the date
/// parts above it.
#[derive(Debug, Clone)]
struct Folder {
    prefix: String,
    level: Level,
    year: u32,
    month: u32,
}

/// Where the walk starts for a user's prefix: `bucket`, `bucket/org`, or a prefix already
/// inside the layout such as `AWSLogs/123456789012/GuardDuty/us-east-1/2024`.
fn start(prefix: &str) -> Result<Folder, String> {
    let segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    let Some(at) = segments.iter().position(|s| *s == "AWSLogs") else {
        let mut base = segments.join("/");
        if !base.is_empty() {
            base.push('/');
        }
        return Ok(Folder {
            prefix: format!("{base}AWSLogs/"),
            level: Level::Account,
            year: 0,
            month: 0,
        });
    };
    let mut folder = Folder {
        prefix: format!("{}/", segments[..=at].join("/")),
        level: Level::Account,
        year: 0,
        month: 0,
    };
    for segment in &segments[at + 1..] {
        let number = segment.parse::<u32>().ok();
        match (folder.level, number) {
            (Level::Service, _) if *segment != "GuardDuty" => {
                return Err(format!("{prefix:?} is not in the GuardDuty export layout"));
            }
            (Level::Year, Some(y)) => folder.year = y,
            (Level::Month, Some(m)) => folder.month = m,
            (Level::Year | Level::Month | Level::Day, None) | (Level::Objects, _) => {
                return Err(format!("{prefix:?} is not in the GuardDuty export layout"));
            }
            _ => {}
        }
        folder.prefix.push_str(segment);
        folder.prefix.push('/');
        folder.level = folder.level.next();
    }
    Ok(folder)
}

/// One `ListObjectsV2` walk of a folder (all pages): its sub-folders and objects.
async fn list_folder(
    s3: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<(Vec<String>, Vec<ListedExport>), ListError> {
    let mut folders = Vec::new();
    let mut objects = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .delimiter("/")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            AwsError::new("s3:ListBucket", Some(format!("s3://{bucket}/{prefix}")), &e)
        })?;
        folders.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_string)),
        );
        objects.extend(page.contents().iter().filter_map(|o| {
            Some(ListedExport {
                key: o.key()?.to_string(),
                etag: o.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                size: o.size().unwrap_or(0).max(0) as u64,
            })
        }));
    }
    Ok((folders, objects))
}

/// The children of `folder` the filter keeps, named directly where the filter says which
/// (accounts, regions, the `GuardDuty` folder) instead of listed.
fn named_children(folder: &Folder, filter: &ExportFilter) -> Option<Vec<String>> {
    let names: Vec<String> = match folder.level {
        Level::Account if !filter.accounts.is_empty() => filter.accounts.clone(),
        Level::Service => vec!["GuardDuty".to_string()],
        Level::Region if !filter.regions.is_empty() => filter.regions.clone(),
        _ => return None,
    };
    Some(
        names
            .into_iter()
            .map(|n| format!("{}{n}/", folder.prefix))
            .collect(),
    )
}

/// Whether a listed sub-folder of `folder` is wanted; gives the child with its date parts.
fn keep_child(folder: &Folder, child_prefix: &str, filter: &ExportFilter) -> Option<Folder> {
    let name = child_prefix
        .strip_prefix(&folder.prefix)?
        .trim_end_matches('/');
    let number = || name.parse::<u32>().ok();
    let mut child = Folder {
        prefix: child_prefix.to_string(),
        level: folder.level.next(),
        year: folder.year,
        month: folder.month,
    };
    match folder.level {
        Level::Account => {
            let wanted = filter.accounts.is_empty() || filter.accounts.iter().any(|a| a == name);
            wanted.then_some(child)
        }
        Level::Region => {
            let wanted = filter.regions.is_empty() || filter.regions.iter().any(|r| r == name);
            wanted.then_some(child)
        }
        Level::Year => {
            child.year = number().filter(|y| filter.keeps_year(*y))?;
            Some(child)
        }
        Level::Month => {
            child.month = number().filter(|m| filter.keeps_month(folder.year, *m))?;
            Some(child)
        }
        Level::Day => {
            let day = number()?;
            filter
                .keeps_day(Day::new(folder.year, folder.month, day))
                .then_some(child)
        }
        Level::Service | Level::Objects => None,
    }
}

/// Lists the export objects under `s3://bucket/prefix` that the filter selects.
pub async fn list_exports(
    s3: &Client,
    bucket: &str,
    prefix: &str,
    filter: &ExportFilter,
) -> Result<Listing, ListError> {
    let root = start(prefix).map_err(|message| ListError::Prefix {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        message,
    })?;
    let listed = Mutex::new(Vec::new());
    let mut exports = Vec::new();
    let mut frontier = vec![root];
    while !frontier.is_empty() {
        let mut to_list = Vec::new();
        let mut next = Vec::new();
        for folder in frontier {
            match named_children(&folder, filter) {
                Some(children) => next.extend(children.into_iter().map(|prefix| Folder {
                    prefix,
                    level: folder.level.next(),
                    year: folder.year,
                    month: folder.month,
                })),
                None => to_list.push(folder),
            }
        }
        let results: Vec<_> = futures::stream::iter(to_list)
            .map(|folder| {
                let listed = &listed;
                async move {
                    debug!(bucket, prefix = %folder.prefix, "listing");
                    listed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(folder.prefix.clone());
                    let found = list_folder(s3, bucket, &folder.prefix).await;
                    (folder, found)
                }
            })
            .buffer_unordered(LIST_CONCURRENCY)
            .collect()
            .await;
        for (folder, found) in results {
            let (folders, objects) = found?;
            if folder.level == Level::Objects {
                exports.extend(
                    objects
                        .into_iter()
                        .filter(|o| parse_export_key(&o.key).is_some()),
                );
            } else {
                next.extend(
                    folders
                        .iter()
                        .filter_map(|child| keep_child(&folder, child, filter)),
                );
            }
        }
        frontier = next;
    }
    exports.sort_by_cached_key(|e| export_time_key(&e.key));
    let mut prefixes_listed = listed.into_inner().unwrap_or_else(|p| p.into_inner());
    prefixes_listed.sort();
    Ok(Listing {
        exports,
        prefixes_listed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_and_order() {
        assert_eq!(Day::parse("2024-03-07"), Some(Day(20240307)));
        assert_eq!(Day::parse("2024-3-7x"), None);
        assert!(Day::parse("2024-02-29").unwrap() < Day::parse("2024-03-01").unwrap());
        assert_eq!(Day(20240307).to_string(), "2024-03-07");
        assert_eq!(Day::from_epoch_ms(0), Day(19700101));
    }

    #[test]
    fn the_walk_starts_at_the_level_the_prefix_names() {
        let f = start("").unwrap();
        assert_eq!((f.prefix.as_str(), f.level), ("AWSLogs/", Level::Account));
        let f = start("org/exports/").unwrap();
        assert_eq!(f.prefix, "org/exports/AWSLogs/");
        let f = start("x/AWSLogs/123/GuardDuty/eu-west-1/2024/05").unwrap();
        assert_eq!(f.prefix, "x/AWSLogs/123/GuardDuty/eu-west-1/2024/05/");
        assert_eq!((f.level, f.year, f.month), (Level::Day, 2024, 5));
        assert!(start("AWSLogs/123/CloudTrail").is_err());
        assert!(start("AWSLogs/123/GuardDuty/r/20x4").is_err());
    }

    #[test]
    fn dates_prune_years_months_and_days() {
        let filter = ExportFilter {
            since: Day::parse("2024-02-27"),
            until: Day::parse("2024-03-02"),
            ..ExportFilter::default()
        };
        let year = Folder {
            prefix: "AWSLogs/1/GuardDuty/r/".into(),
            level: Level::Year,
            year: 0,
            month: 0,
        };
        assert!(keep_child(&year, "AWSLogs/1/GuardDuty/r/2024/", &filter).is_some());
        assert!(keep_child(&year, "AWSLogs/1/GuardDuty/r/2023/", &filter).is_none());
        assert!(keep_child(&year, "AWSLogs/1/GuardDuty/r/tmp/", &filter).is_none());
        let month = keep_child(&year, "AWSLogs/1/GuardDuty/r/2024/", &filter).unwrap();
        assert!(keep_child(&month, "AWSLogs/1/GuardDuty/r/2024/02/", &filter).is_some());
        assert!(keep_child(&month, "AWSLogs/1/GuardDuty/r/2024/04/", &filter).is_none());
        let day = keep_child(&month, "AWSLogs/1/GuardDuty/r/2024/02/", &filter).unwrap();
        assert!(keep_child(&day, "AWSLogs/1/GuardDuty/r/2024/02/28/", &filter).is_some());
        assert!(keep_child(&day, "AWSLogs/1/GuardDuty/r/2024/02/26/", &filter).is_none());
    }
}
