#!/usr/bin/env python3
"""Batch ingest from an S3 export bucket through the AWS emulator: every export of a corpus
uploaded (SSE-KMS, in its key layout) to a moto bucket, then one `gdq ingest s3://bucket`
into an empty local warehouse, timed as a whole process; then the same command again (all
objects already in the ledger: the cost of a no-op nightly run). Prints JSON.

  .venv/bin/python benches/s3_ingest.py --corpus /tmp/gdq-bench/corpus-20000-1-5 --runs 3

moto serves a few hundred small requests per second, so this measures gdq's listing and
request pipeline against a slow server, not S3.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

ap = argparse.ArgumentParser()
ap.add_argument("--corpus", required=True)
ap.add_argument("--gdq", default="target/release/gdq")
ap.add_argument("--runs", type=int, default=3)
args = ap.parse_args()

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
endpoint = f"http://127.0.0.1:{port}"
try:
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="t", aws_secret_access_key="t")
    s3.create_bucket(Bucket="exports")
    key_arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    corpus = Path(args.corpus)
    files = sorted(corpus.rglob("*.jsonl.gz"))
    for path in files:
        s3.put_object(Bucket="exports", Key=str(path.relative_to(corpus)), Body=path.read_bytes(),
                      ServerSideEncryption="aws:kms", SSEKMSKeyId=key_arn)
    findings = sum(1 for p in files for _ in __import__("gzip").open(p))
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="t", AWS_SECRET_ACCESS_KEY="t",
               AWS_REGION="us-east-1")
    first, again = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as wh:
            cmd = [args.gdq, "--warehouse", wh, "ingest", "s3://exports", "--progress", "none"]
            for times in (first, again):
                t0 = time.perf_counter()
                out = subprocess.run(cmd, env=env, capture_output=True, text=True)
                times.append(time.perf_counter() - t0)
                if out.returncode != 0:
                    sys.exit(f"ingest failed: {out.stderr}")
    print(out.stdout.strip())
    median = statistics.median(first)
    print(json.dumps({"objects": len(files), "findings": findings, "runs": args.runs,
                      "ingest_median_s": round(median, 2), "findings_per_s": round(findings / median),
                      "objects_per_s": round(len(files) / median, 1),
                      "rerun_median_s": round(statistics.median(again), 2)}))
finally:
    server.kill()
