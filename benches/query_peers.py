#!/usr/bin/env python3
"""Query benchmark: the whole `gdq` process (start-up included) against DuckDB in-process,
on the same Parquet files (a gdq warehouse), same queries, medians of N runs, ratios.

  benches/query_peers.py WAREHOUSE [--gdq target/release/gdq] [--runs 5]

Prints a Markdown table. DuckDB gets a warm connection and one unmeasured run per query;
gdq is a fresh process every time, as a user would run it.
"""
import argparse
import statistics
import subprocess
import time

import duckdb

ap = argparse.ArgumentParser()
ap.add_argument("warehouse")
ap.add_argument("--gdq", default="target/release/gdq")
ap.add_argument("--runs", type=int, default=5)
args = ap.parse_args()

con = duckdb.connect()
con.execute(
    f"create view findings as select * from read_parquet('{args.warehouse}/findings/type=*/*.parquet', hive_partitioning=true)"
)
con.execute(
    "create view findings_latest as select * exclude (rn) from (select *, row_number() over "
    "(partition by id order by updated_at desc nulls last, count desc nulls last) as rn from findings) where rn = 1"
)
some_id = con.execute("select min(id) from findings where type = 'Recon:EC2/Portscan'").fetchone()[0]
lo, hi = "2024-02-01", "2024-02-08"

queries = {
    "group by type": "select type, count(*) from findings group by type order by 2 desc",
    "one-week updated_at range": f"select count(*), avg(severity) from findings where updated_at >= timestamp '{lo}' and updated_at < timestamp '{hi}'",
    "lookup by id": f"select * from findings where id = '{some_id}'",
    "findings_latest by type": "select type, count(*), sum(severity) from findings_latest group by type order by 2 desc",
}


def gdq_once(sql):
    t0 = time.perf_counter()
    out = subprocess.run([args.gdq, "--warehouse", args.warehouse, "--format", "csv", sql], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"gdq failed on {sql!r}: {out.stderr}")
    return dt, out.stdout.count("\n") - 1


def duck_once(sql):
    t0 = time.perf_counter()
    rows = con.execute(sql).fetchall()
    return time.perf_counter() - t0, len(rows)


print(f"warehouse: {args.warehouse}; {args.runs} runs each; gdq = whole process, DuckDB {duckdb.__version__} = in-process, warm")
print()
print("| query | gdq median s | DuckDB median s | gdq ÷ DuckDB | median of pair ratios | rows (gdq / DuckDB) |")
print("|---|---|---|---|---|---|")
for name, sql in queries.items():
    duck_once(sql)
    g, d = [], []
    for _ in range(args.runs):
        gt, gr = gdq_once(sql)
        dt, dr = duck_once(sql)
        g.append(gt)
        d.append(dt)
    gm, dm = statistics.median(g), statistics.median(d)
    # Each gdq run is followed by a DuckDB run: the ratio within a pair shares the host's
    # load at that moment, so its median drifts less than the ratio of medians.
    pairs = statistics.median(a / b for a, b in zip(g, d))
    print(f"| {name} | {gm:.3f} | {dm:.3f} | {gm / dm:.2f} | {pairs:.2f} | {gr} / {dr} |")
