//! `gdq report`: every report's answer against one computed here from the raw exports with
//! serde_json (never from gdq), over the bundled exports; filters, `--show-sql` and bad input.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;

use crate::support::*;

/// The bundled exports, ingested once for every test here.
fn warehouse() -> &'static Path {
    static WH: OnceLock<tempfile::TempDir> = OnceLock::new();
    WH.get_or_init(|| {
        let dir = tempdir();
        let out = ingest(dir.path(), &[&testdata("exports")]);
        assert!(out.status.success(), "{}", stderr(&out));
        dir
    })
    .path()
}

fn raw() -> &'static [Value] {
    static RAW: OnceLock<Vec<Value>> = OnceLock::new();
    RAW.get_or_init(|| oracle_findings(&testdata("exports")))
}

/// `gdq report NAME ARGS --format csv`, without its header.
fn report(name: &str, args: &[&str]) -> Vec<Vec<String>> {
    let out = run(gdq(warehouse())
        .args(["report", name, "--format", "csv"])
        .args(args));
    assert!(out.status.success(), "{name}: {}", stderr(&out));
    let mut rows = parse_csv(&stdout(&out));
    rows.remove(0);
    rows
}

// --- the oracle: plain JSON, the GuardDuty finding format as documented ---

/// An ISO timestamp made comparable as text: milliseconds always present.
fn stamp(v: &Value) -> String {
    let t = v.as_str().unwrap_or_default();
    if t.contains('.') {
        t.to_string()
    } else {
        t.replacen('Z', ".000Z", 1)
    }
}

fn updated(f: &Value) -> String {
    stamp(&f["updatedAt"])
}

fn day(f: &Value) -> String {
    updated(f)[..10].to_string()
}

fn severity(f: &Value) -> f64 {
    f["severity"].as_f64().unwrap()
}

fn label(s: f64) -> &'static str {
    if s < 4.0 {
        "Low"
    } else if s < 7.0 {
        "Medium"
    } else if s < 9.0 {
        "High"
    } else {
        "Critical"
    }
}

fn count(f: &Value) -> i64 {
    f["service"]["count"].as_i64().unwrap_or(0)
}

fn text<'a>(f: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(f, |v, k| v.get(k))?.as_str()
}

/// Each finding at its newest version (ties: the larger count).
fn latest() -> Vec<&'static Value> {
    let mut by_id: HashMap<&str, &Value> = HashMap::new();
    for f in raw() {
        let id = f["id"].as_str().unwrap();
        let newer = by_id
            .get(id)
            .is_none_or(|old| (updated(f), count(f)) > (updated(old), count(old)));
        if newer {
            by_id.insert(id, f);
        }
    }
    by_id.into_values().collect()
}

fn tally<K: Ord>(keys: impl Iterator<Item = K>) -> BTreeMap<K, u64> {
    let mut out = BTreeMap::new();
    for k in keys {
        *out.entry(k).or_insert(0) += 1;
    }
    out
}

fn csv_day(cell: &str) -> String {
    cell[..10].to_string()
}

fn n(cell: &str) -> u64 {
    cell.parse()
        .unwrap_or_else(|_| panic!("{cell:?} is a count"))
}

#[test]
fn the_list_names_every_report_first_one_per_line() {
    let out = run(gdq(warehouse()).arg("report"));
    assert!(out.status.success(), "{}", stderr(&out));
    let names: Vec<String> = stdout(&out)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    for expected in [
        "daily-severity",
        "severity-bands",
        "top-types",
        "account-region",
        "resource-severity",
        "top-resources",
        "resource-timeline",
        "top-remote",
        "api-users",
        "threat-matrix",
        "new-types",
        "spikes",
        "recurring",
        "open-past-age",
        "new-vs-updated",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert_eq!(names.len(), 15);
}

#[test]
fn counts_by_severity_type_account_and_resource_equal_the_raw_exports() {
    let latest = latest();
    // severity-bands: all four bands, in order, with the newest versions' labels.
    let bands = report("severity-bands", &[]);
    let expected = tally(latest.iter().map(|f| label(severity(f))));
    let got: Vec<(String, u64)> = bands.iter().map(|r| (r[0].clone(), n(&r[3]))).collect();
    let want: Vec<(String, u64)> = ["Low", "Medium", "High", "Critical"]
        .iter()
        .map(|b| (b.to_string(), expected.get(b).copied().unwrap_or(0)))
        .collect();
    assert_eq!(got, want);

    // top-types: count and max severity per type.
    let types = report("top-types", &[]);
    let mut per_type: BTreeMap<&str, (u64, f64)> = BTreeMap::new();
    for f in &latest {
        let e = per_type
            .entry(f["type"].as_str().unwrap())
            .or_insert((0, 0.0));
        e.0 += 1;
        e.1 = e.1.max(severity(f));
    }
    assert_eq!(types.len(), per_type.len().min(50));
    for row in &types {
        let (c, max) = per_type[row[0].as_str()];
        assert_eq!(
            (n(&row[1]), row[2].parse::<f64>().unwrap()),
            (c, max),
            "{row:?}"
        );
    }
    let counts: Vec<u64> = types.iter().map(|r| n(&r[1])).collect();
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]),
        "most findings first"
    );

    // account-region, with High and above counted apart.
    let got: BTreeMap<(String, String), (u64, u64)> = report("account-region", &[])
        .into_iter()
        .map(|r| ((r[0].clone(), r[1].clone()), (n(&r[2]), n(&r[3]))))
        .collect();
    let mut want: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for f in &latest {
        let key = (
            f["accountId"].as_str().unwrap().to_string(),
            f["region"].as_str().unwrap().to_string(),
        );
        let e = want.entry(key).or_default();
        e.0 += 1;
        e.1 += u64::from(severity(f) >= 7.0);
    }
    assert_eq!(got, want);

    // resource-severity.
    let got: BTreeMap<(String, String), u64> = report("resource-severity", &[])
        .into_iter()
        .map(|r| ((r[0].clone(), r[1].clone()), n(&r[2])))
        .collect();
    let want = tally(latest.iter().map(|f| {
        (
            text(f, &["resource", "resourceType"])
                .unwrap_or("")
                .to_string(),
            label(severity(f)).to_string(),
        )
    }));
    assert_eq!(got, want);

    // threat-matrix: the three parts of the type name.
    let got: BTreeMap<(String, String, String), u64> = report("threat-matrix", &[])
        .into_iter()
        .map(|r| ((r[0].clone(), r[1].clone(), r[2].clone()), n(&r[3])))
        .collect();
    let want = tally(latest.iter().map(|f| {
        let t = f["type"].as_str().unwrap();
        let (purpose, rest) = t.split_once(':').unwrap_or((t, ""));
        let (resource, family) = rest.split_once('/').unwrap_or((rest, ""));
        let family = family.split(['.', '!']).next().unwrap_or("");
        (
            purpose.to_string(),
            resource.to_string(),
            family.to_string(),
        )
    }));
    assert_eq!(got, want);

    // api-users: API-call findings per API and user.
    let got: BTreeMap<(String, String), u64> = report("api-users", &[])
        .into_iter()
        .map(|r| ((r[0].clone(), r[2].clone()), n(&r[4])))
        .collect();
    let api_calls: Vec<&&Value> = latest
        .iter()
        .filter(|f| text(f, &["service", "action", "actionType"]) == Some("AWS_API_CALL"))
        .collect();
    assert!(!api_calls.is_empty());
    let want = tally(api_calls.iter().map(|f| {
        (
            text(f, &["service", "action", "awsApiCallAction", "api"])
                .unwrap_or("")
                .to_string(),
            text(f, &["resource", "accessKeyDetails", "userName"])
                .unwrap_or("")
                .to_string(),
        )
    }));
    let top: u64 = want.values().copied().max().unwrap();
    assert_eq!(got.values().copied().max(), Some(top));
    for (k, c) in &got {
        assert_eq!(want.get(k), Some(c), "{k:?}");
    }
}

#[test]
fn reports_about_days_and_versions_equal_the_raw_exports() {
    // daily-severity: per day, distinct findings by the label of that day's newest version.
    let mut newest_of_day: HashMap<(String, &str), &Value> = HashMap::new();
    for f in raw() {
        let key = (day(f), f["id"].as_str().unwrap());
        let rank = |v: &Value| (updated(v), count(v), (severity(v) * 10.0) as i64);
        if newest_of_day
            .get(&key)
            .is_none_or(|old| rank(f) > rank(old))
        {
            newest_of_day.insert(key, f);
        }
    }
    let want = tally(
        newest_of_day
            .iter()
            .map(|((d, _), f)| (d.clone(), label(severity(f)).to_string())),
    );
    let got: BTreeMap<(String, String), u64> = report("daily-severity", &[])
        .into_iter()
        .map(|r| ((csv_day(&r[0]), r[1].clone()), n(&r[2])))
        .collect();
    assert_eq!(got, want);

    // new-vs-updated: a finding's first version is new on its day, later ones updates.
    let mut versions: HashMap<&str, Vec<String>> = HashMap::new();
    for f in raw() {
        versions
            .entry(f["id"].as_str().unwrap())
            .or_default()
            .push(updated(f));
    }
    let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for stamps in versions.values_mut() {
        stamps.sort();
        for (i, s) in stamps.iter().enumerate() {
            let e = want.entry(s[..10].to_string()).or_default();
            if i == 0 {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }
    let got: BTreeMap<String, (u64, u64)> = report("new-vs-updated", &[])
        .into_iter()
        .map(|r| (csv_day(&r[0]), (n(&r[1]), n(&r[2]))))
        .collect();
    assert_eq!(got, want);
    // A window shows its days only, still ranked over the whole history.
    let window = report(
        "new-vs-updated",
        &["--since", "2024-02-01", "--until", "2024-02-29"],
    );
    let want_feb: BTreeMap<String, (u64, u64)> = want
        .iter()
        .filter(|(d, _)| d.as_str() >= "2024-02-01" && d.as_str() <= "2024-02-29")
        .map(|(d, c)| (d.clone(), *c))
        .collect();
    let got_feb: BTreeMap<String, (u64, u64)> = window
        .into_iter()
        .map(|r| (csv_day(&r[0]), (n(&r[1]), n(&r[2]))))
        .collect();
    assert_eq!(got_feb, want_feb);

    // spikes: account-days above the threshold.
    let mut per_account_day: HashMap<(String, String), BTreeSet<&str>> = HashMap::new();
    for f in raw() {
        per_account_day
            .entry((f["accountId"].as_str().unwrap().to_string(), day(f)))
            .or_default()
            .insert(f["id"].as_str().unwrap());
    }
    let want: BTreeMap<(String, String), u64> = per_account_day
        .into_iter()
        .map(|(k, ids)| (k, ids.len() as u64))
        .filter(|(_, c)| *c > 10)
        .collect();
    assert!(!want.is_empty());
    let got: BTreeMap<(String, String), u64> = report("spikes", &["--threshold", "10"])
        .into_iter()
        .map(|r| ((r[0].clone(), csv_day(&r[1])), n(&r[2])))
        .collect();
    assert_eq!(got, want);

    // recurring: growth of the count across versions.
    let mut counts: HashMap<&str, Vec<i64>> = HashMap::new();
    for f in raw() {
        counts
            .entry(f["id"].as_str().unwrap())
            .or_default()
            .push(count(f));
    }
    let growth: HashMap<&str, i64> = counts
        .iter()
        .filter(|(_, c)| c.len() > 1)
        .map(|(id, c)| (*id, c.iter().max().unwrap() - c.iter().min().unwrap()))
        .collect();
    let got = report("recurring", &[]);
    let mut all: Vec<i64> = growth.values().copied().collect();
    all.sort_unstable_by(|a, b| b.cmp(a));
    let shown: Vec<i64> = got.iter().map(|r| r[6].parse().unwrap()).collect();
    assert_eq!(
        shown,
        all[..shown.len()],
        "the largest growths, largest first"
    );
    for r in &got {
        assert_eq!(growth[r[0].as_str()], r[6].parse::<i64>().unwrap(), "{r:?}");
    }

    // new-types: types first created on or after --since.
    let mut first: BTreeMap<&str, String> = BTreeMap::new();
    for f in raw() {
        let t = f["type"].as_str().unwrap();
        let c = stamp(&f["createdAt"]);
        if first.get(t).is_none_or(|old| &c < old) {
            first.insert(t, c);
        }
    }
    let want: BTreeSet<&str> = first
        .iter()
        .filter(|(_, c)| c.as_str() >= "2024-03-01")
        .map(|(t, _)| *t)
        .collect();
    assert!(!want.is_empty() && want.len() < first.len());
    let got: BTreeSet<String> = report("new-types", &["--since", "2024-03-01"])
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(got, want.iter().map(|t| t.to_string()).collect());
    // The default window is the last 7 days: the bundled history is older.
    assert!(report("new-types", &[]).is_empty());
}

#[test]
fn resources_remote_addresses_and_open_findings_equal_the_raw_exports() {
    let latest = latest();
    // top-resources: instances at High and above.
    let want = tally(
        latest
            .iter()
            .filter(|f| severity(f) >= 7.0)
            .filter_map(|f| text(f, &["resource", "instanceDetails", "instanceId"])),
    );
    let rows = report("top-resources", &[]);
    let instances: Vec<&Vec<String>> = rows.iter().filter(|r| r[0] == "instance").collect();
    assert!(!instances.is_empty());
    for r in &instances {
        assert_eq!(want.get(r[1].as_str()), Some(&n(&r[2])), "{r:?}");
    }

    // resource-timeline: every version touching the busiest instance, in time order.
    let (instance, _) = tally(
        raw()
            .iter()
            .filter_map(|f| text(f, &["resource", "instanceDetails", "instanceId"])),
    )
    .into_iter()
    .max_by_key(|(_, c)| *c)
    .unwrap();
    let mut want: Vec<String> = raw()
        .iter()
        .filter(|f| text(f, &["resource", "instanceDetails", "instanceId"]) == Some(instance))
        .map(updated)
        .collect();
    want.sort();
    let got: Vec<String> = report("resource-timeline", &["--resource", instance])
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(got.len(), want.len(), "{instance}");
    assert!(got.windows(2).all(|w| w[0] <= w[1]), "in time order");

    // top-remote: the remote address of network connections and API calls.
    let remote = |f: &Value| -> Option<String> {
        let action = &f["service"]["action"];
        [
            "networkConnectionAction",
            "awsApiCallAction",
            "kubernetesApiCallAction",
            "rdsLoginAttemptAction",
        ]
        .iter()
        .find_map(|a| action[*a]["remoteIpDetails"]["ipAddressV4"].as_str())
        .or_else(|| {
            action["portProbeAction"]["portProbeDetails"][0]["remoteIpDetails"]["ipAddressV4"]
                .as_str()
        })
        .map(str::to_string)
    };
    let want = tally(latest.iter().filter_map(|f| remote(f)));
    let rows = report("top-remote", &[]);
    assert!(!rows.is_empty());
    for r in &rows {
        assert_eq!(want.get(&r[0]), Some(&n(&r[4])), "{r:?}");
    }
    assert_eq!(n(&rows[0][4]), *want.values().max().unwrap());

    // open-past-age: limits per band, against now. The bundled findings are years old, so
    // a limit of 0 days catches every open one of its band and a huge one none.
    let open = |f: &&&Value| !f["service"]["archived"].as_bool().unwrap_or(false);
    let got = tally(
        report(
            "open-past-age",
            &[
                "--high-days",
                "100000",
                "--medium-days",
                "0",
                "--low-days",
                "0",
            ],
        )
        .into_iter()
        .map(|r| r[3].clone()),
    );
    let want = tally(
        latest
            .iter()
            .filter(open)
            .map(|f| label(severity(f)).to_string())
            .filter(|l| l == "Low" || l == "Medium"),
    );
    assert_eq!(got, want);
    let links = report("open-past-age", &[]);
    assert!(links.iter().all(|r| {
        r[9].starts_with("https://console.aws.amazon.com/guardduty/home?region=")
            && r[9].ends_with(&format!("fId={}", r[0]))
    }));
}

#[test]
fn filters_narrow_every_report_and_the_shown_sql_runs_as_it_is() {
    let latest = latest();
    let account = latest[0]["accountId"].as_str().unwrap().to_string();
    let region = "us-east-1";
    let got: u64 = report(
        "severity-bands",
        &["--account", &account, "--region", region],
    )
    .iter()
    .map(|r| n(&r[3]))
    .sum();
    let want = latest
        .iter()
        .filter(|f| f["accountId"] == account.as_str() && f["region"] == region)
        .count() as u64;
    assert_eq!(got, want);
    assert!(want > 0 && (want as usize) < latest.len());
    // --since/--until: newest versions updated in that window (--until includes its day).
    let got: u64 = report(
        "severity-bands",
        &["--since", "2024-02-01", "--until", "2024-02-29"],
    )
    .iter()
    .map(|r| n(&r[3]))
    .sum();
    let want = latest
        .iter()
        .filter(|f| updated(f).as_str() >= "2024-02-01" && updated(f).as_str() < "2024-03-01")
        .count() as u64;
    assert_eq!(got, want);

    // --show-sql prints the SQL file; run as it is, it answers what the report answers.
    let shown = run(gdq(warehouse()).args(["report", "threat-matrix", "--show-sql"]));
    assert!(shown.status.success());
    let sql = stdout(&shown);
    assert!(sql.starts_with("-- threat-matrix:"), "{sql}");
    let file = tempdir();
    let path = file.path().join("threat-matrix.sql");
    std::fs::write(&path, &sql).unwrap();
    let pasted = run(gdq(warehouse())
        .args(["--format", "csv", "query", "-f"])
        .arg(&path));
    assert!(pasted.status.success(), "{}", stderr(&pasted));
    let mut rows = parse_csv(&stdout(&pasted));
    rows.remove(0);
    assert_eq!(rows, report("threat-matrix", &[]));
    let with_params = stdout(&run(gdq(warehouse()).args([
        "report",
        "spikes",
        "--show-sql",
        "--threshold",
        "12",
        "--account",
        &account,
    ])));
    assert!(with_params.contains("-- $threshold = 12"), "{with_params}");
    assert!(with_params.contains(&account), "{with_params}");
}

#[test]
fn bad_report_input_gets_one_line_and_status_2() {
    for (args, expect) in [
        (vec!["report", "top-typos"], "no report \"top-typos\""),
        (vec!["report", "resource-timeline"], "needs --resource"),
        (
            vec!["report", "top-types", "--since", "last tuesday"],
            "--since \"last tuesday\"",
        ),
    ] {
        let out = run(gdq(warehouse()).args(&args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).lines().count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains(expect), "{args:?}: {}", stderr(&out));
    }
}
