"""Run `gdq ddl` output in DuckDB and in Spark (local mode); print, per engine, the
`select type, count(*)` of `findings` and the row count of `findings_latest`, as JSON.

  python tests/ddl.py DUCKDB_SQL_FILE SPARK_SQL_FILE

Run by the Rust integration tests (tests/gdq/ddl.rs) with the test venv's Python.
"""
import json
import os
import sys

import duckdb

duckdb_sql, spark_sql = (open(p).read() for p in sys.argv[1:3])
out = {}


def statements(text):
    body = "\n".join(l for l in text.splitlines() if not l.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


con = duckdb.connect()
for s in statements(duckdb_sql):
    con.execute(s)
out["duckdb"] = {
    "types": {t: n for t, n in con.execute("select type, count(*) from findings group by type").fetchall()},
    "latest": con.execute("select count(*) from findings_latest").fetchone()[0],
}

from pyspark.sql import SparkSession  # noqa: E402  (slow import, only after DuckDB passed)

warehouse_dir = os.environ.get("GDQ_SPARK_DIR", "/tmp/gdq-spark")
spark = (
    SparkSession.builder.master("local[1]")
    .appName("gdq-ddl-test")
    .config("spark.ui.enabled", "false")
    .config("spark.sql.warehouse.dir", os.path.join(warehouse_dir, "warehouse"))
    .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse_dir}")
    .config("spark.sql.session.timeZone", "UTC")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
for s in statements(spark_sql):
    spark.sql(s)
out["spark"] = {
    "types": {r[0]: r[1] for r in spark.sql("select type, count(*) from findings group by type").collect()},
    "latest": spark.sql("select count(*) from findings_latest").collect()[0][0],
}
spark.stop()
print(json.dumps(out))
