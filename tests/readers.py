"""Read a gdq warehouse with the readers analysts use; print {reader: {type: count}} as JSON.

Run by the Rust integration tests (tests/gdq/readers.rs) with the test venv's Python.
"""
import json
import sys

import duckdb
import pandas as pd
import polars as pl
import pyarrow.dataset as ds

root = sys.argv[1]
findings = f"{root}/findings"
out = {}

con = duckdb.connect()
rows = con.execute(
    f"select type, count(*) from read_parquet('{findings}/type=*/*.parquet', hive_partitioning=true) group by type"
).fetchall()
out["duckdb"] = {t: n for t, n in rows}

table = ds.dataset(findings, format="parquet", partitioning="hive").to_table(columns=["type", "updated_at"])
counts = {}
for t in table.column("type").to_pylist():
    counts[t] = counts.get(t, 0) + 1
out["pyarrow"] = counts
out["pyarrow_updated_at_type"] = str(table.schema.field("updated_at").type)

frame = pd.read_parquet(findings, columns=["type", "id"])
out["pandas"] = {str(k): int(v) for k, v in frame["type"].astype(str).value_counts().items()}

lazy = pl.scan_parquet(f"{findings}/type=*/*.parquet", hive_partitioning=True)
grouped = lazy.group_by("type").agg(pl.len().alias("n")).collect()
out["polars"] = {t: n for t, n in zip(grouped["type"].to_list(), grouped["n"].to_list())}

print(json.dumps(out))
