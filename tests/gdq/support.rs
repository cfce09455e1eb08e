//! Helpers shared by the integration tests.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn testdata(rel: &str) -> PathBuf {
    repo().join("testdata").join(rel)
}

/// The public sample findings in `../shared/testdata/findings` (not all of them may be
/// redistributed, so the project reads them in place). `None` when absent, unless
/// `GDQ_REQUIRE_SHARED` is set (CI sets it): then absence fails the test.
pub fn shared_findings() -> Option<PathBuf> {
    let dir = repo().join("../shared/testdata/findings");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("GDQ_REQUIRE_SHARED").is_none(),
        "GDQ_REQUIRE_SHARED is set but {} is missing",
        dir.display()
    );
    eprintln!(
        "note: {} not found; shared sample findings not checked",
        dir.display()
    );
    None
}

/// The Python of the test venv (made by scripts/test). Fails loudly when missing.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("GDQ_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no test venv: run scripts/test (it creates .venv with the readers and the AWS emulator)"
    );
    venv
}

pub fn gdq(warehouse: &Path) -> Command {
    // Another build may stand in, to compare (the S3 request counts); tests assume this one.
    let binary =
        std::env::var_os("GDQ_TEST_BINARY").unwrap_or_else(|| env!("CARGO_BIN_EXE_gdq").into());
    let mut cmd = Command::new(binary);
    cmd.arg("--warehouse")
        .arg(warehouse)
        .env_remove("GDQ_WAREHOUSE")
        .env_remove("GDQ_CRASH_AT");
    if warehouse.to_string_lossy().starts_with("s3://") {
        crate::moto::aws_env(&mut cmd);
    }
    cmd
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("gdq runs")
}

/// Runs `cmd` with `input` on its standard input.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gdq starts");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .expect("stdin written");
    child.wait_with_output().expect("gdq runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn ingest(warehouse: &Path, paths: &[&Path]) -> Output {
    let mut cmd = gdq(warehouse);
    cmd.arg("ingest").args(paths);
    run(&mut cmd)
}

/// Runs SQL, returns the CSV rows (header dropped). Panics with stderr on failure.
pub fn sql_rows(warehouse: &Path, sql: &str) -> Vec<Vec<String>> {
    let out = run(gdq(warehouse).args(["--format", "csv", sql]));
    assert!(
        out.status.success(),
        "query failed: {sql}\n{}",
        stderr(&out)
    );
    let mut rows = parse_csv(&stdout(&out));
    rows.remove(0);
    rows
}

/// CSV records (quoted fields may hold commas, doubled quotes and newlines).
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => row.push(std::mem::take(&mut cur)),
            '\n' if !quoted => {
                row.push(std::mem::take(&mut cur));
                rows.push(std::mem::take(&mut row));
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() || !row.is_empty() {
        row.push(cur);
        rows.push(row);
    }
    rows
}

pub fn sql_count(warehouse: &Path, sql: &str) -> u64 {
    sql_rows(warehouse, sql)[0][0].parse().expect("a count")
}

/// All export files under a folder, sorted.
pub fn export_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".jsonl.gz")
                || p.to_string_lossy().ends_with(".jsonl")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Raw lines of an export file (gunzipped when needed), split on `\n` only.
pub fn raw_lines(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let mut text = Vec::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut text)
            .unwrap();
    } else {
        text = bytes;
    }
    text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

/// What an independent reader (serde_json::Value) makes of a line.
pub enum Oracle {
    Blank,
    Good(Value),
    Bad,
}

pub fn classify(line: &[u8]) -> Oracle {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Oracle::Blank;
    }
    match serde_json::from_slice::<Value>(line) {
        Ok(v)
            if v.get("id")
                .is_some_and(|i| i.as_str().is_some_and(|s| !s.is_empty()))
                && v.get("type").is_some_and(Value::is_string) =>
        {
            Oracle::Good(v)
        }
        _ => Oracle::Bad,
    }
}

/// Every good finding under `dir`, by the oracle.
pub fn oracle_findings(dir: &Path) -> Vec<Value> {
    export_files(dir)
        .iter()
        .flat_map(|f| raw_lines(f))
        .filter_map(|l| match classify(&l) {
            Oracle::Good(v) => Some(v),
            _ => None,
        })
        .collect()
}

/// Count of findings per type, by the oracle.
pub fn oracle_type_counts(dir: &Path) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for f in oracle_findings(dir) {
        *counts
            .entry(f["type"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    counts
}

/// Count of findings per type, by gdq.
pub fn gdq_type_counts(warehouse: &Path) -> BTreeMap<String, u64> {
    sql_rows(
        warehouse,
        "select type, count(*) from findings group by type",
    )
    .into_iter()
    .map(|r| (r[0].clone(), r[1].parse().unwrap()))
    .collect()
}

/// A stable fingerprint of the table's rows: sorted (id, type, updated_at, count, source,
/// finding) tuples; `ingested_at` and file names are left out, as they differ between runs.
pub fn row_fingerprint(warehouse: &Path) -> Vec<Vec<String>> {
    let mut rows = sql_rows(
        warehouse,
        "select id, type, updated_at, \"count\", source, finding from findings",
    );
    rows.sort();
    rows
}

/// Writes a gzip file.
pub fn write_gz(path: &Path, text: &[u8]) {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(text).unwrap();
    std::fs::write(path, enc.finish().unwrap()).unwrap();
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Runs two processes at once and returns both outputs once both succeeded.
pub fn run_both(spawn: impl Fn() -> std::process::Child) -> (Output, Output) {
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{}{}",
        stderr(&a),
        stderr(&b)
    );
    (a, b)
}

/// The data files a plan scans, from `explain verbose` (which, unlike `explain`, lists
/// every file; a large file may be split in ranges).
pub fn scanned_files(warehouse: &std::path::Path, sql: &str) -> std::collections::BTreeSet<String> {
    let plan = sql_rows(warehouse, &format!("explain verbose {sql}"))
        .into_iter()
        .find(|row| row[0] == "physical_plan")
        .expect("a physical plan")
        .remove(1);
    plan.split([' ', ',', '[', ']'])
        .map(|word| word.split(':').next().unwrap_or(word))
        .filter(|path| path.ends_with(".parquet"))
        .map(str::to_string)
        .collect()
}

pub fn data_files(warehouse: &std::path::Path) -> usize {
    parquet_files(warehouse).len()
}

pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The table's data files (not the log's checkpoints).
pub fn parquet_files(warehouse: &std::path::Path) -> Vec<std::path::PathBuf> {
    walk(&warehouse.join("findings"))
        .into_iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "parquet")
                && !p.components().any(|c| c.as_os_str() == "_delta_log")
        })
        .collect()
}

/// The actions of the table's newest version.
pub fn last_commit(warehouse: &std::path::Path) -> Vec<Value> {
    let mut commits: Vec<_> = std::fs::read_dir(warehouse.join("findings/_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    commits.sort();
    std::fs::read_to_string(commits.last().expect("a commit"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What the `deltalake` package and `polars` read from the warehouse's Delta table
/// (tests/delta_readers.py), optionally of one exact type only.
pub fn delta_readers(warehouse: &Path, only_type: Option<&str>) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("tests/delta_readers.py"))
        .arg(warehouse);
    if let Some(t) = only_type {
        cmd.arg(t);
    }
    if warehouse.to_string_lossy().starts_with("s3://") {
        crate::moto::aws_env(&mut cmd);
    }
    let out = cmd.output().expect("python runs");
    assert!(
        out.status.success(),
        "delta_readers.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from delta_readers.py")
}

/// Rows of the Delta table as both Delta readers count them (they must agree).
pub fn delta_rows(warehouse: &Path) -> u64 {
    let read = delta_readers(warehouse, None);
    let rows = read["deltalake"]["rows"].as_u64().expect("rows");
    assert_eq!(
        read["polars"]["rows"].as_u64(),
        Some(rows),
        "polars and deltalake disagree"
    );
    rows
}

/// Waits (polling, with a deadline) until `path` exists: a paused gdq reached its point.
pub fn wait_for(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} did not appear within 120 s",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `gdq status --format json`.
pub fn status_json(warehouse: &Path) -> Value {
    let out = run(gdq(warehouse).args(["status", "--format", "json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("status JSON")
}

/// gdq's part of the commit info of the version `attempt` committed.
pub fn commit_info(warehouse: &Path, attempt: &str) -> Value {
    for entry in std::fs::read_dir(warehouse.join("findings/_delta_log")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let action: Value = serde_json::from_str(line).unwrap();
            if action["commitInfo"]["gdq"]["attempt"] == attempt {
                return action["commitInfo"]["gdq"].clone();
            }
        }
    }
    panic!("no commit of {attempt}")
}

/// What the plain-Parquet readers (tests/readers.py: DuckDB, pyarrow, pandas, polars) count
/// per type when they read the table's folders.
pub fn plain_readers(warehouse: &Path) -> Value {
    let output = Command::new(python())
        .arg(repo().join("tests/readers.py"))
        .arg(warehouse)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "readers.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
