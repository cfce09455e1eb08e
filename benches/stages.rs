//! The normalizer alone: JSON text → typed row in Arrow builders, per core.
//!
//! Input: every line of the bundled sample exports (testdata/exports), decompressed once
//! up front so only parse + append is timed.

use std::hint::black_box;
use std::io::Read;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gdq_schemas::{FindingRows, parse_finding};

fn lines() -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/exports")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).expect("testdata/exports") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let mut text = String::new();
            let file = std::fs::File::open(&path).expect("export");
            flate2::read::MultiGzDecoder::new(file)
                .read_to_string(&mut text)
                .expect("gzip");
            out.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_owned));
        }
    }
    out
}

fn normalize(c: &mut Criterion) {
    let lines = lines();
    let bytes: usize = lines.iter().map(String::len).sum();
    let mut group = c.benchmark_group("normalize");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(parse_finding(line).expect("valid sample").id().len());
            }
        })
    });
    group.bench_function("parse_and_append", |b| {
        let mut rows = FindingRows::new(0);
        b.iter(|| {
            for line in &lines {
                let finding = parse_finding(line).expect("valid sample");
                rows.append(&finding, "file:///bench");
            }
            black_box(rows.finish().expect("batch").num_rows())
        })
    });
    group.finish();
    eprintln!(
        "input: {} findings, {:.1} MB of JSON",
        lines.len(),
        bytes as f64 / 1e6
    );
}

criterion_group!(benches, normalize);
criterion_main!(benches);
