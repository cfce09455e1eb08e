//! The hot stages of an ingest, each alone on one core: gunzip (whole objects in one call, as
//! the ingest does, and streamed, its fallback), split + parse (the decoder over decompressed
//! JSON Lines), normalize (parse + append to the Arrow builders) and
//! Parquet encode (one batch through gdq's writer properties into memory).
//!
//! Input: the bundled sample exports (`testdata/exports`), or the `*.jsonl.gz` files under
//! `$GDQ_BENCH_CORPUS` (a corpus from `testdata/gen_findings.py`), read into memory up front.
//!
//!   cargo bench --bench stages
//!   GDQ_BENCH_CORPUS=/tmp/gdq-bench/corpus-20000-1-5 cargo bench --bench stages

use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gdq_ingest::decode::{Event, TextBuffer, for_each_finding_in};
use gdq_ingest::inflate::Inflater;
use gdq_schemas::{FindingRows, findings_schema, parse_finding};
use gdq_table::writer::writer_properties;
use parquet::arrow::ArrowWriter;

fn export_files() -> Vec<PathBuf> {
    let root = std::env::var_os("GDQ_BENCH_CORPUS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/exports"),
        PathBuf::from,
    );
    let mut files = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("corpus folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(".jsonl.gz") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

fn stages(c: &mut Criterion) {
    let compressed: Vec<Vec<u8>> = export_files()
        .iter()
        .map(|p| std::fs::read(p).expect("export"))
        .collect();
    let json: Vec<Vec<u8>> = compressed.iter().map(|b| gunzip(b)).collect();
    let lines: Vec<&str> = json
        .iter()
        .flat_map(|j| std::str::from_utf8(j).expect("utf-8").lines())
        .filter(|l| !l.is_empty())
        .collect();
    let findings = lines.len() as u64;
    let json_bytes: usize = json.iter().map(Vec::len).sum();
    eprintln!(
        "input: {} objects, {findings} findings, {:.1} MB of JSON",
        compressed.len(),
        json_bytes as f64 / 1e6
    );

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(findings));
    group.sample_size(20);
    group.bench_function("gunzip", |b| {
        let mut inflater = Inflater::new().expect("libdeflate");
        let mut out = vec![0u8; json.iter().map(Vec::len).max().unwrap_or(0)];
        b.iter(|| {
            for object in &compressed {
                black_box(inflater.gunzip(object, &mut out).expect("one gzip member"));
            }
        })
    });
    group.bench_function("gunzip_stream", |b| {
        let mut out = Vec::with_capacity(json.iter().map(Vec::len).max().unwrap_or(0));
        b.iter(|| {
            for object in &compressed {
                out.clear();
                flate2::read::MultiGzDecoder::new(&object[..])
                    .read_to_end(&mut out)
                    .expect("gzip");
                black_box(out.len());
            }
        })
    });
    group.bench_function("split_and_parse", |b| {
        // One window for every object, as an ingest thread keeps it.
        let mut text = TextBuffer::default();
        b.iter(|| {
            let mut found = 0u64;
            for object in &json {
                for_each_finding_in(&mut text, &object[..], |event| {
                    if let Event::Finding { finding, .. } = event {
                        found += finding.id().len() as u64;
                    }
                })
                .expect("in-memory stream");
            }
            black_box(found)
        })
    });
    group.bench_function("normalize", |b| {
        let mut rows = FindingRows::new(0);
        b.iter(|| {
            for line in &lines {
                let finding = parse_finding(line).expect("valid sample");
                rows.append(&finding, "file:///bench");
            }
            black_box(rows.finish().expect("batch").num_rows())
        })
    });
    let mut rows = FindingRows::new(0);
    for line in &lines {
        rows.append(&parse_finding(line).expect("valid sample"), "file:///bench");
    }
    let batch = rows.finish().expect("batch");
    group.bench_function("parquet_encode", |b| {
        b.iter(|| {
            let mut writer =
                ArrowWriter::try_new(Vec::new(), findings_schema(), Some(writer_properties()))
                    .expect("writer");
            writer.write(&batch).expect("encode");
            black_box(writer.into_inner().expect("footer").len())
        })
    });
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
