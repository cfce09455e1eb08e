"""Read a gdq warehouse as a Delta table with the Delta readers analysts use, and print
what each saw as JSON: {reader: {"types": {type: rows}, "rows", "ids", "min_updated_at",
"max_updated_at", "updated_at_type"}, "version": v}.

Usage: delta_readers.py <warehouse> [<exact type to filter on>]
S3 warehouses (s3://bucket/prefix) are read with the emulator settings from the environment
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION).
Run by the Rust integration tests with the test venv's Python.
"""
import json
import os
import sys

import deltalake
import polars as pl

root = sys.argv[1].rstrip("/")
only = sys.argv[2] if len(sys.argv) > 2 else None
table = f"{root}/findings"
storage = None
if root.startswith("s3://"):
    storage = {
        "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
        "AWS_ALLOW_HTTP": "true",
    }


def summary(frame):
    """What a reader saw, from a polars frame of type, id, updated_at."""
    types = frame.group_by("type").agg(pl.len().alias("n"))
    stamps = frame["updated_at"].drop_nulls()
    iso = lambda t: None if t is None else t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {
        "types": {t: n for t, n in zip(types["type"].to_list(), types["n"].to_list())},
        "rows": frame.height,
        "ids": frame["id"].n_unique(),
        "min_updated_at": iso(stamps.min()) if len(stamps) else None,
        "max_updated_at": iso(stamps.max()) if len(stamps) else None,
        "updated_at_type": str(frame.schema["updated_at"]),
    }


out = {}
dt = deltalake.DeltaTable(table, storage_options=storage)
out["version"] = dt.version()
filters = [("type", "=", only)] if only else None
columns = ["type", "id", "updated_at"]
arrow = dt.to_pyarrow_table(columns=columns, filters=filters) if hasattr(dt, "to_pyarrow_table") else None
if arrow is None:
    import pyarrow.dataset as ds  # noqa: F401

    arrow = dt.to_pyarrow_dataset().to_table(columns=columns)
out["deltalake"] = summary(pl.from_arrow(arrow))

lazy = pl.scan_delta(table, storage_options=storage).select(columns)
if only:
    lazy = lazy.filter(pl.col("type") == only)
out["polars"] = summary(lazy.collect())
print(json.dumps(out))
