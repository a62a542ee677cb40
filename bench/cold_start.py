"""Cold-start init per function: a fresh interpreter imports the handler module, validates its
settings and builds its service (boto3 clients; decide also loads the ONNX model), as Lambda's
init phase does before the first invocation.

    python -m bench.cold_start [--runs 5] [--build-dir .aws-sam/build] [--out out/bench/cold_start.json]

With --build-dir, `shared` is imported from the built shared layer and the model read from the
built model layer. Third-party packages always come from this interpreter's environment: the
dependencies layer holds cp312 aarch64 wheels that cannot load on another platform, so the
numbers are x86_64/this-Python figures, indicative of (not equal to) Lambda arm64 init.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = {
    "IngestFunction": ("ingest", "ingest_service"),
    "FeaturesFunction": ("features", "features_service"),
    "DecideFunction": ("decide", "decide_service"),
    "FeedbackFunction": ("feedback", "feedback_service"),
}
ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "ARCHIVE_BUCKET": "bench-archive",
    "USER_STATE_TABLE": "bench-user-state",
    "CATALOG_TABLE": "bench-catalog",
    "LEDGER_TABLE": "bench-ledger",
    "IDEMPOTENCY_TABLE": "bench-idempotency",
    "PUSH_COUNTERS_TABLE": "bench-push-counters",
    "PUSH_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:bench-push",
    "POWERTOOLS_METRICS_NAMESPACE": "Nudge",
    "POWERTOOLS_TRACE_DISABLED": "true",
}

# Runs in the fresh interpreter; prints one JSON line of phase timings in milliseconds.
PROBE = """
import importlib.util, json, sys, time
c0 = time.process_time()
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
t1 = time.perf_counter()
from shared import bootstrap
settings = {"ingest": "IngestSettings", "features": "FeaturesSettings", "decide": "DecideSettings",
            "feedback": "FeedbackSettings"}[sys.argv[2]]
import shared.config
getattr(shared.config, settings)()
t2 = time.perf_counter()
model_ms = 0.0
if sys.argv[2] == "decide":
    bootstrap.recommender()
    model_ms = (time.perf_counter() - t2) * 1000
t3 = time.perf_counter()
getattr(bootstrap, sys.argv[3])()
t4 = time.perf_counter()
c4 = time.process_time()
heavy = sorted(m for m in ("boto3", "numpy", "onnxruntime", "aws_xray_sdk", "pydantic") if m in sys.modules)
print(json.dumps({"import_ms": (t1 - t0) * 1000, "config_ms": (t2 - t1) * 1000, "model_ms": model_ms,
                  "service_ms": (t4 - t3) * 1000, "total_ms": (t4 - t0) * 1000, "cpu_ms": (c4 - c0) * 1000,
                  "loaded": heavy}))
"""


def measure(function_id: str, build_dir: Path | None, runs: int) -> dict[str, Any]:
    name, factory = FUNCTIONS[function_id]
    shared_root = build_dir / "SharedLayer" / "python" if build_dir else ROOT
    model_dir = build_dir / "ModelLayer" / "model" if build_dir else ROOT / "layers" / "model"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(ENV, MODEL_DIR=str(model_dir), POWERTOOLS_SERVICE_NAME=name)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions" / name), str(shared_root)])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    samples: list[dict[str, Any]] = []
    app = str(ROOT / "functions" / name / "app.py")
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", PROBE, app, name, factory], env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{function_id}: {done.stderr[-2000:]}")
        samples.append(json.loads(done.stdout.strip().splitlines()[-1]))
    # The minimum over fresh processes: the machine is shared, and contention only ever adds time.
    keys = ("import_ms", "config_ms", "model_ms", "service_ms", "total_ms", "cpu_ms")
    result: dict[str, Any] = {k: round(min(s[k] for s in samples), 1) for k in keys}
    result["total_ms_median"] = round(statistics.median(s["total_ms"] for s in samples), 1)
    result["loaded"] = samples[-1]["loaded"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--build-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "cold_start.json")
    parser.add_argument("--functions", nargs="*", default=list(FUNCTIONS))
    args = parser.parse_args(argv)
    report = {fid: measure(fid, args.build_dir, args.runs) for fid in args.functions}
    for fid, r in report.items():
        print(
            f"{fid:18s} total {r['total_ms']:7.1f} ms  cpu {r['cpu_ms']:7.1f}  import {r['import_ms']:7.1f}"
            f"  config {r['config_ms']:5.1f}"
            f"  model {r['model_ms']:6.1f}  service {r['service_ms']:6.1f}  loaded {','.join(r['loaded'])}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"runs": args.runs, "python": sys.version.split()[0], "functions": report}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
