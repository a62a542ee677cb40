"""Cold start per function, in fresh interpreters: the init phase (import the handler module,
validate its settings, load the model for decide, build its service and boto3 clients), then,
in a second set of processes, the first invocation.

    python -m bench.cold_start [--runs 7] [--build-dir .aws-sam/build] [--xray] [--out out/bench/cold_start.json]

Init is what Lambda's init phase does before the first invocation; it is measured in a process that
has imported nothing else, with the environment template.yaml sets (its plain-string values, e.g.
decide's OPENBLAS_NUM_THREADS; stand-ins for the names it builds from references). The first
invocation is measured in a separate process (moto must be imported before the handler to answer its
AWS calls, which would spoil the init numbers): it handles the sample event from events/ against
resources created from template.yaml in in-process moto, and moto's own time is subtracted (what is
left is the handler's work plus botocore's first-call costs: request serialisation, endpoint
resolution, signing and response parsing; not network latency, not TLS set-up). Caveat: moto has
already imported some modules the first invocation would otherwise import, so that number is a lower
bound.

After init, the same process also measures what an environment restored from a SnapStart snapshot
(template parameter SnapStart) still pays before its first invocation's work: the session, clients
and services that the after-restore hook forgets, rebuilt from the snapshot's parsed service models
(snapstart_rebuild_ms; the restore itself happens outside the process and is not measured here).

With --build-dir, `shared` is imported from the built shared layer and the model read from the
built model layer. Third-party packages always come from this interpreter's environment: the
dependencies layer holds cp312 aarch64 wheels that cannot load on another platform, so the
numbers are x86_64/this-Python figures, indicative of (not equal to) Lambda arm64 init.
--xray measures with POWERTOOLS_TRACE_DISABLED=false (template parameter XRaySdk=true), where
Powertools' Tracer imports the X-Ray SDK and patches botocore.

Medians over the runs (the machine is shared: contention only ever adds time, but one quiet
run is luck, so the median of fresh processes is reported, with the minimum beside it).
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

from bench import shipped_layers
from runner.deploy import load_yaml

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
    "EVENT_IDS_TABLE": "bench-event-ids",
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
t1, c1 = time.perf_counter(), time.process_time()
from shared.plumbing import bootstrap
settings = {"ingest": "IngestSettings", "features": "FeaturesSettings", "decide": "DecideSettings",
            "feedback": "FeedbackSettings"}[sys.argv[2]]
import shared.plumbing.config
getattr(shared.plumbing.config, settings)()
t2, c2 = time.perf_counter(), time.process_time()
model_ms = 0.0
if sys.argv[2] == "decide":
    bootstrap.recommender()
    model_ms = (time.perf_counter() - t2) * 1000
t3, c3 = time.perf_counter(), time.process_time()
getattr(bootstrap, sys.argv[3])()
t4 = time.perf_counter()
c4 = time.process_time()
# SnapStart (template parameter): a restored environment keeps all of the above but its session and
# clients, which after_restore forgets; what rebuilding them costs its first invocation (after init).
bootstrap.forget_connections()
t5 = time.perf_counter()
getattr(bootstrap, sys.argv[3])()
rebuild_ms = (time.perf_counter() - t5) * 1000
heavy = sorted(m for m in ("boto3", "numpy", "onnxruntime", "aws_xray_sdk", "pydantic", "pydantic_settings")
               if m in sys.modules)
print(json.dumps({"import_ms": (t1 - t0) * 1000, "config_ms": (t2 - t1) * 1000, "model_ms": model_ms,
                  "service_ms": (t4 - t3) * 1000, "total_ms": (t4 - t0) * 1000, "cpu_ms": (c4 - c0) * 1000,
                  "import_cpu_ms": (c1 - c0) * 1000, "config_cpu_ms": (c2 - c1) * 1000,
                  "model_cpu_ms": (c3 - c2) * 1000, "service_cpu_ms": (c4 - c3) * 1000,
                  "snapstart_rebuild_ms": rebuild_ms, "loaded": heavy}))
"""

# The first invocation: moto answers (its time is subtracted), the sample event is handled.
FIRST = """
import importlib.util, json, os, sys, time
import boto3
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber
from pathlib import Path
from runner.deploy import load_yaml
from runner.stack import deploy_local
from runner.lambda_invoke import LambdaContext
mock = mock_aws()
mock.start()
stack, _ = deploy_local(load_yaml(Path(sys.argv[4])), lambda s: boto3.client(s, region_name="us-east-1"),
                        "bench", {}, "us-east-1")
out = stack.outputs
os.environ.update({"ARCHIVE_BUCKET": out["ArchiveBucketName"], "USER_STATE_TABLE": out["UserStateTableName"],
                   "CATALOG_TABLE": out["CatalogTableName"], "LEDGER_TABLE": out["LedgerTableName"],
                   "IDEMPOTENCY_TABLE": out["IdempotencyTableName"], "EVENT_IDS_TABLE": out["EventIdsTableName"],
                   "PUSH_COUNTERS_TABLE": out["PushCountersTableName"], "PUSH_TOPIC_ARN": out["PushTopicArn"]})
in_moto = [0.0, 0]
original = BotocoreStubber.__call__
def timed(self, event_name, request, **kwargs):
    started = time.perf_counter()
    try:
        return original(self, event_name, request, **kwargs)
    finally:
        in_moto[0] += time.perf_counter() - started
        in_moto[1] += 1
BotocoreStubber.__call__ = timed
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from shared.plumbing import bootstrap
getattr(bootstrap, sys.argv[3])()
event = json.loads(open(sys.argv[5]).read())
context = LambdaContext(function_name=sys.argv[2], function_arn="arn:aws:lambda:us-east-1:123456789012:function:x",
                        memory_mb=512, timeout_s=60)
in_moto[:] = [0.0, 0]
t0 = time.perf_counter()
module.lambda_handler(event, context)
wall = time.perf_counter() - t0
t1 = time.perf_counter()
module.lambda_handler(event, context)
second = time.perf_counter() - t1
print(json.dumps({"first_ms": (wall - in_moto[0]) * 1000, "first_wall_ms": wall * 1000,
                  "second_wall_ms": second * 1000, "aws_calls": in_moto[1]}))
"""
SAMPLE_EVENTS = {
    "ingest": "kinesis-behaviour.json",
    "features": "kinesis-behaviour.json",
    "decide": "dynamodb-user-state-changed.json",
    "feedback": "kinesis-feedback.json",
}


def template_variables(function_id: str) -> dict[str, str]:
    """The environment template.yaml gives the function as plain strings (Globals, then its own);
    values built from references (table names, parameters) are left to ENV."""
    template = load_yaml(ROOT / "template.yaml")
    variables: dict[str, Any] = {}
    for properties in (template["Globals"]["Function"], template["Resources"][function_id]["Properties"]):
        variables |= properties.get("Environment", {}).get("Variables", {})
    return {k: v for k, v in variables.items() if isinstance(v, str)}


def _environment(
    name: str, build_dir: Path | None, xray: bool, served_model: str = "sasrec/int8", layers: list[Path] | None = None
) -> dict[str, str]:
    shared_root = build_dir / "SharedLayer" / "python" if build_dir else ROOT
    layer = build_dir / "ModelLayer" / "model" if build_dir else ROOT / "layers" / "model"
    # The template's ServedModel parameter: "cooccurrence" is the layer's root, the rest sub-folders.
    model_dir = layer if served_model == "cooccurrence" else layer / served_model
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "OPENBLAS_"))}
    function_id = next(fid for fid, (n, _) in FUNCTIONS.items() if n == name)
    env.update(template_variables(function_id), **ENV)
    env.update(MODEL_DIR=str(model_dir), POWERTOOLS_SERVICE_NAME=name)
    env["POWERTOOLS_TRACE_DISABLED"] = "false" if xray else "true"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions" / name), str(shared_root), str(ROOT)])
    if layers:  # the layers as Lambda loads them (bench/shipped_layers.py); nothing from the checkout
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions" / name), *map(str, layers)])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(
    script: str, args: list[str], env: dict[str, str], function_id: str, python: str = sys.executable
) -> dict[str, Any]:
    # `python -c` puts the working directory first on sys.path: run where Lambda does, in the function's
    # own directory (/var/task), so `shared` comes from PYTHONPATH (the shipped layer) and not from the
    # checkout's source, which has no bytecode for the measured interpreter.
    app_dir = Path(args[0]).parent
    python = os.path.abspath(python) if os.sep in python else python  # a relative --python stays valid there
    done = subprocess.run(
        [python, "-c", script, *args], env=env, capture_output=True, text=True, check=False, cwd=app_dir
    )
    if done.returncode != 0:
        raise RuntimeError(f"{function_id}: {done.stderr[-2000:]}")
    parsed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return parsed


def measure(
    function_id: str,
    build_dir: Path | None,
    runs: int,
    xray: bool = False,
    first_runs: int = 3,
    served_model: str = "sasrec/int8",
    python: str = sys.executable,
    layers: list[Path] | None = None,
) -> dict[str, Any]:
    name, factory = FUNCTIONS[function_id]
    env = _environment(name, build_dir, xray, served_model, layers)
    app = str(ROOT / "functions" / name / "app.py")
    samples = [_run(PROBE, [app, name, factory], env, function_id, python) for _ in range(runs)]
    keys: tuple[str, ...] = ("import_ms", "config_ms", "model_ms", "service_ms", "total_ms", "cpu_ms")
    keys += ("import_cpu_ms", "config_cpu_ms", "model_cpu_ms", "service_cpu_ms", "snapstart_rebuild_ms")
    result: dict[str, Any] = {k: round(statistics.median(s[k] for s in samples), 1) for k in keys}
    result["total_ms_min"] = round(min(s["total_ms"] for s in samples), 1)
    result["loaded"] = samples[-1]["loaded"]
    first_env = dict(env, AWS_ACCOUNT_ID_ENDPOINT_MODE="disabled")
    event = str(ROOT / "events" / SAMPLE_EVENTS[name])
    firsts = [
        _run(FIRST, [app, name, factory, str(ROOT / "template.yaml"), event], first_env, function_id)
        for _ in range(first_runs)
    ]
    for key in ("first_ms", "first_wall_ms", "second_wall_ms"):
        result[key] = round(statistics.median(f[key] for f in firsts), 1) if firsts else 0.0
    result["first_aws_calls"] = firsts[-1]["aws_calls"] if firsts else 0
    result["init_plus_first_ms"] = round(result["total_ms"] + result["first_ms"], 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--build-dir", type=Path, default=None)
    parser.add_argument("--xray", action="store_true", help="with the X-Ray SDK (template parameter XRaySdk=true)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "cold_start.json")
    parser.add_argument("--first-runs", type=int, default=3, help="processes measuring the first invocation")
    parser.add_argument("--functions", nargs="*", default=list(FUNCTIONS))
    parser.add_argument(
        "--served-model", default="sasrec/int8", choices=("sasrec/int8", "sasrec", "cooccurrence"), help="ServedModel"
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter for the measured processes")
    parser.add_argument(
        "--shipped",
        choices=(*shipped_layers.VARIANTS, "both"),
        help="measure against the layers as Lambda loads them (bench/shipped_layers.py), without or with bytecode;"
        " the first invocation is not measured then",
    )
    args = parser.parse_args(argv)
    if args.shipped:
        trees = shipped_layers.build(args.python, ROOT / "out" / "bench" / "shipped-layers")
        variants = list(shipped_layers.VARIANTS) if args.shipped == "both" else [args.shipped]
        # Interleaved, function by function, so a change in the machine's load hits both variants alike.
        reports: dict[str, dict[str, Any]] = {v: {} for v in variants}
        for fid in args.functions:
            for variant in variants:
                reports[variant][fid] = measure(
                    fid, None, args.runs, args.xray, 0, args.served_model, args.python, trees[variant]
                )
    else:
        reports = {
            "dev": {
                fid: measure(fid, args.build_dir, args.runs, args.xray, args.first_runs, args.served_model, args.python)
                for fid in args.functions
            }
        }
    for variant, report in reports.items():
        _print(variant, report)
    python_version = subprocess.run(
        [args.python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "runs": args.runs,
                "statistic": "median of fresh processes (total_ms_min: the minimum)",
                "xray_sdk": args.xray,
                "python": python_version,
                "layout": "shipped" if args.shipped else "dev",
                # "dev": the checkout and venv (cached bytecode); "source"/"bytecode": the shipped layers.
                "variants": reports,
            },
            indent=2,
        )
    )
    return 0


def _print(variant: str, report: dict[str, Any]) -> None:
    print(f"-- {variant}")
    for fid, r in report.items():
        print(
            f"{fid:18s} init {r['total_ms']:6.1f} ms (cpu {r['cpu_ms']:6.1f}, min {r['total_ms_min']:6.1f})"
            f"  import {r['import_ms']:6.1f}"
            f"  config {r['config_ms']:5.1f}  model {r['model_ms']:6.1f}  service {r['service_ms']:6.1f}"
            f"  | after a SnapStart restore {r['snapstart_rebuild_ms']:5.1f}"
            f"  | first invocation {r['first_ms']:6.1f} ({r['first_aws_calls']} AWS calls, moto time excluded)"
            f"  init+first {r['init_plus_first_ms']:6.1f}  loaded {','.join(r['loaded'])}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
