//! `gdq dashboard` and `gdq serve`: the page loaded in headless Chromium (Debian's
//! `chromium`), every panel drew a chart with data, the numbers on the page are the
//! warehouse's, hostile finding text stays text; `serve` answers a filter and a query.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::*;

/// Headless Chromium, when installed. CI sets GDQ_REQUIRE_BROWSER, so absence fails there.
fn chromium() -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin/chromium");
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("GDQ_REQUIRE_BROWSER").is_none(),
        "GDQ_REQUIRE_BROWSER is set but /usr/bin/chromium is missing (apt-get install chromium)"
    );
    eprintln!("note: no /usr/bin/chromium; the dashboard is not checked in a browser");
    None
}

fn browser(chromium: &Path, profile: &Path) -> Command {
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--virtual-time-budget=15000",
        "--window-size=1400,2600",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// The page's DOM after its scripts ran.
fn dom(chromium: &Path, url: &str) -> String {
    let profile = tempdir();
    let out = run(browser(chromium, profile.path()).arg("--dump-dom").arg(url));
    assert!(out.status.success(), "chromium: {}", stderr(&out));
    stdout(&out)
}

/// `data-NAME="…"` of the element with `id`, from a dumped DOM.
fn attribute(dom: &str, id: &str, name: &str) -> Option<String> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..start].rfind('<')?;
    let tag = &dom[tag_start..tag_start + dom[tag_start..].find('>')?];
    let key = format!("{name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(tag[at..at + tag[at..].find('"')?].to_string())
}

/// The DOM without the text of its script elements (ECharts' own code holds `<img` strings).
fn without_scripts(dom: &str) -> String {
    let mut out = String::new();
    let mut rest = dom;
    while let Some(start) = rest.find("<script") {
        out.push_str(&rest[..start]);
        match rest[start..].find("</script>") {
            Some(end) => rest = &rest[start + end + "</script>".len()..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// The number shown in a headline box.
fn total(dom: &str, what: &str) -> u64 {
    let start = dom
        .find(&format!("id=\"total-{what}\""))
        .unwrap_or_else(|| panic!("total-{what} on the page"));
    let rest = &dom[start..];
    let n = rest.find("class=\"n\">").unwrap() + "class=\"n\">".len();
    rest[n..n + rest[n..].find('<').unwrap()].parse().unwrap()
}

const CHART_PANELS: [&str; 7] = [
    "severity-over-time",
    "by-severity",
    "top-types",
    "account-region",
    "resource-severity",
    "top-remote",
    "top-countries",
];

const HOSTILE_TITLE: &str = "<img src=x onerror=\"document.body.dataset.pwned='img'\"><script>document.body.dataset.pwned='script'</script>";

fn hostile_export(dir: &Path) {
    let finding = serde_json::json!({
        "id": "hostile0000000000000000000000001",
        "type": "UnauthorizedAccess:EC2/<b>TorClient</b>",
        "accountId": "999999999999",
        "region": "us-east-1",
        "severity": 8.5,
        "createdAt": "2024-03-01T00:00:00.000Z",
        "updatedAt": "2024-03-01T00:05:00.000Z",
        "title": HOSTILE_TITLE,
        "description": "</script><script>document.body.dataset.pwned='desc'</script>",
        "service": {"count": 1, "archived": false},
    });
    std::fs::write(dir.join("hostile.jsonl"), format!("{finding}\n")).unwrap();
}

#[test]
fn the_dashboard_file_draws_every_panel_with_the_warehouses_numbers_and_keeps_hostile_text_inert() {
    let Some(chromium) = chromium() else {
        return;
    };
    let work = tempdir();
    let wh = work.path().join("wh");
    let extra = work.path().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    hostile_export(&extra);
    let out = ingest(&wh, &[&testdata("exports"), &extra]);
    assert!(out.status.success(), "{}", stderr(&out));

    let page = work.path().join("dashboard.html");
    let written = run(gdq(&wh).args(["dashboard", "--out"]).arg(&page));
    assert!(written.status.success(), "{}", stderr(&written));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("http://") || !html.contains("src=\"http"),
        "no remote scripts"
    );
    assert!(!html.contains("<script src="), "scripts are inline");

    let dom = dom(&chromium, &format!("file://{}", page.display()));
    assert!(dom.contains("data-rendered=\"true\""), "the page rendered");
    for id in CHART_PANELS {
        let panel = format!("panel-{id}");
        assert_eq!(
            attribute(&dom, &panel, "data-drawn").as_deref(),
            Some("true"),
            "{id} drew a chart"
        );
        let points: u64 = attribute(&dom, &panel, "data-points")
            .unwrap()
            .parse()
            .unwrap();
        assert!(points > 0, "{id} has data");
    }
    // The numbers on the page are the warehouse's.
    assert_eq!(
        total(&dom, "findings"),
        sql_count(&wh, "select count(*) from findings_latest")
    );
    assert_eq!(
        total(&dom, "versions"),
        sql_count(&wh, "select count(*) from findings")
    );
    assert_eq!(
        total(&dom, "open-high-or-critical"),
        sql_count(
            &wh,
            "select count(*) from findings_latest where severity >= 7 and not archived"
        )
    );
    let open: u64 = attribute(&dom, "panel-open-past-age", "data-rows")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        open,
        sql_count(
            &wh,
            "select count(*) from findings_latest where severity >= 7 and not archived \
             and created_at < now() - interval '1 day'"
        )
    );
    // Hostile text is shown as text and runs nothing.
    assert!(
        !dom.contains("data-pwned"),
        "no injected script or handler ran"
    );
    assert!(
        !without_scripts(&dom).contains("<img"),
        "no injected element"
    );
    assert!(
        dom.contains("&lt;img src=x onerror="),
        "the title is on the page as text"
    );
    assert!(dom.contains("<title>gdq — GuardDuty findings</title>"));
}

#[test]
fn a_screenshot_of_the_dashboard_over_the_bundled_exports() {
    let Some(chromium) = chromium() else {
        return;
    };
    let work = tempdir();
    let wh = work.path().join("wh");
    assert!(ingest(&wh, &[&testdata("exports")]).status.success());
    let page = work.path().join("dashboard.html");
    assert!(
        run(gdq(&wh).args(["dashboard", "--out"]).arg(&page))
            .status
            .success()
    );
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempdir();
    let out = run(browser(&chromium, profile.path())
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display())));
    assert!(out.status.success(), "{}", stderr(&out));
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 50_000,
        "{} bytes",
        png.len()
    );
    eprintln!("dashboard screenshot: {}", shot.display());
}

/// One finding exported twice: High first, Low at its newest version, both long past
/// their age limits.
const DOWNGRADED: &str = "downgraded00000000000000000000001";

fn downgraded_export(dir: &Path) {
    let version = |severity: f64, updated: &str| {
        serde_json::json!({
            "id": DOWNGRADED,
            "type": "Recon:EC2/PortProbeUnprotectedPort",
            "accountId": "888888888888",
            "region": "us-east-1",
            "severity": severity,
            "createdAt": "2024-03-01T00:00:00.000Z",
            "updatedAt": updated,
            "title": "downgraded",
            "service": {"count": 1, "archived": false},
        })
    };
    let lines = format!(
        "{}\n{}\n",
        version(8.0, "2024-03-01T00:05:00.000Z"),
        version(2.0, "2024-03-02T00:05:00.000Z")
    );
    std::fs::write(dir.join("downgraded.jsonl"), lines).unwrap();
}

fn get(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[test]
fn serve_answers_a_filter_and_a_query_on_loopback() {
    let work = tempdir();
    let wh = work.path().join("wh");
    let downgraded = work.path().join("downgraded");
    std::fs::create_dir_all(&downgraded).unwrap();
    downgraded_export(&downgraded);
    assert!(
        ingest(&wh, &[&testdata("exports"), &downgraded])
            .status
            .success()
    );
    let mut child = gdq(&wh)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("loopback only"), "{line}");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_string();

    let (status, body) = get(&addr, "/api/dashboard?min_severity=7&region=us-east-1");
    assert!(status.contains("200"), "{status}");
    let data: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        data["panels"]["totals"]["rows"][0]["findings"].as_u64(),
        Some(sql_count(
            &wh,
            "select count(*) from findings_latest where severity >= 7 and region = 'us-east-1'"
        ))
    );
    // The open-findings table keeps High and Critical by each finding's newest version: a
    // finding once High, now Low, is not in it (the report itself lists it, as Low).
    let (_, body) = get(&addr, "/api/dashboard");
    let data: Value = serde_json::from_str(&body).unwrap();
    let open = &data["panels"]["open-past-age"];
    assert_eq!(
        open["total"].as_u64(),
        Some(sql_count(
            &wh,
            "select count(*) from findings_latest where severity >= 7 and not archived \
             and created_at < now() - interval '1 day'"
        ))
    );
    let ids: Vec<&str> = open["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert!(!ids.is_empty() && !ids.contains(&DOWNGRADED), "{ids:?}");
    let listed = run(gdq(&wh).args(["report", "open-past-age", "--format", "csv"]));
    assert!(
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .any(|l| l.starts_with(DOWNGRADED) && l.contains("Low")),
        "the report lists it as Low"
    );
    let (_, body) = get(
        &addr,
        "/api/sql?q=select%20count(*)%20as%20n%20from%20findings",
    );
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["rows"][0]["n"].as_u64(),
        Some(sql_count(&wh, "select count(*) from findings"))
    );
    for (q, expect) in [
        ("select%20nope%20from%20findings", "nope"),
        ("copy%20findings%20to%20'%2Ftmp%2Fx.csv'", "only queries"),
        ("drop%20view%20findings_ocsf", "only queries"),
    ] {
        let (_, body) = get(&addr, &format!("/api/sql?q={q}"));
        let err: Value = serde_json::from_str(&body).unwrap();
        let text = err["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{q}: {body}"));
        assert!(text.contains(expect) && !text.contains('\n'), "{q}: {text}");
    }
    // serve keeps the rows it read per table version: a commit made while it runs shows in
    // the next answer, a filter changed without one is answered from the same rows.
    let findings = |addr: &str, query: &str| -> Option<u64> {
        let (_, body) = get(addr, &format!("/api/dashboard{query}"));
        let data: Value = serde_json::from_str(&body).unwrap();
        data["panels"]["totals"]["rows"][0]["findings"].as_u64()
    };
    let before = findings(&addr, "");
    assert_eq!(
        before,
        Some(sql_count(&wh, "select count(*) from findings_latest"))
    );
    let extra = work.path().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    hostile_export(&extra);
    assert!(ingest(&wh, &[&extra]).status.success());
    assert_eq!(
        findings(&addr, ""),
        before.map(|n| n + 1),
        "the new commit is read"
    );
    assert_eq!(
        findings(&addr, "?account=999999999999"),
        Some(1),
        "a new filter over the same version"
    );
    let (status, page) = get(&addr, "/");
    assert!(
        status.contains("200") && page.contains("data-live=\"1\""),
        "{status}"
    );
    if let Some(chromium) = chromium() {
        let dom = dom(&chromium, &format!("http://{addr}/"));
        assert!(dom.contains("data-rendered=\"true\""));
        assert!(
            !dom.contains("id=\"filters\" hidden"),
            "filters shown when live"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
