#!/usr/bin/env python3
"""Worker throughput through the AWS emulator: N SSE-KMS export objects uploaded to a moto
bucket whose notifications go to an SQS queue, then one `gdq worker --once` drain, timed as a
whole process. Prints objects/s and findings/s.

  .venv/bin/python benches/worker_drain.py --objects 500 --corpus /tmp/gdq-bench/corpus-20000-1-5
  .venv/bin/python benches/worker_drain.py --objects 500 --corpus … --s3-warehouse   # table in S3 too

The corpus's findings are dealt round-robin into N objects in the export key layout. moto
serves ~300-400 small requests/s, so this measures gdq's request pipeline against a slow
server, not S3.
"""
import argparse
import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

ap = argparse.ArgumentParser()
ap.add_argument("--objects", type=int, default=500)
ap.add_argument("--corpus", required=True)
ap.add_argument("--gdq", default="target/release/gdq")
ap.add_argument("--concurrency", type=int, default=16)
ap.add_argument("--s3-warehouse", action="store_true", help="commit to s3://drain-wh/gdq in the emulator")
args = ap.parse_args()

lines = []
for path in sorted(Path(args.corpus).rglob("*.jsonl.gz")):
    lines.extend(l for l in gzip.decompress(path.read_bytes()).splitlines() if l.strip())

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
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
    queue = sqs.create_queue(QueueName="drain", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.create_bucket(Bucket="drain")
    s3.put_bucket_notification_configuration(Bucket="drain", NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    key_arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    for i in range(args.objects):
        body = gzip.compress(b"\n".join(lines[i::args.objects]) + b"\n")
        s3.put_object(Bucket="drain", Key=f"AWSLogs/123456789012/GuardDuty/us-east-1/2024/06/01/obj-{i:05d}.jsonl.gz",
                      Body=body, ServerSideEncryption="aws:kms", SSEKMSKeyId=key_arn)
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="t", AWS_SECRET_ACCESS_KEY="t",
               AWS_REGION="us-east-1", GDQ_LOG=os.environ.get("GDQ_LOG", "warn"))
    if args.s3_warehouse:
        s3.create_bucket(Bucket="drain-wh")
    with tempfile.TemporaryDirectory() as local_wh:
        wh = "s3://drain-wh/gdq" if args.s3_warehouse else local_wh
        t0 = time.perf_counter()
        out = subprocess.run([args.gdq, "--warehouse", wh, "worker", "--queue-url", queue, "--once",
                              "--kms-key-arn", key_arn, "--concurrency", str(args.concurrency)],
                             env=env, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if out.returncode != 0:
            sys.exit(f"worker failed: {out.stderr}")
    if os.environ.get("GDQ_LOG"):
        print(out.stderr, file=sys.stderr)
    print(out.stdout.strip())
    print(json.dumps({"warehouse": "s3" if args.s3_warehouse else "local", "objects": args.objects, "findings": len(lines), "seconds": round(dt, 2),
                      "objects_per_s": round(args.objects / dt, 1), "findings_per_s": round(len(lines) / dt)}))
finally:
    server.kill()
