"""The learning loop on the demo's data: retrain from what ingest archived, gate, promote, keep serving.

The demo's stack starts from a model trained before the replay (its bootstrap default). Mid-replay,
``retrain_in`` runs training/retrain.py's steps against the running stack: the archive bucket's events
plus the history the stack was seeded with (the training period, written in the archive's line format by
``write_history``: events from before the stack existed) are extracted, the transformer is trained on
everything before T = now - holdout, judged against the model decide serves on the days since T, and
promoted through the model pointer if it wins; decide picks it up within the pointer's TTL and the replay
goes on. The demo saves its archive to ``out/demo/archive`` when it ends.

``python -m demo.retrain`` (``make retrain``) does the same once on that saved archive, in a fresh local
stack holding it, and writes out/retrain/report.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from runner.pipeline import LocalPipeline
from testkit import traffic
from testkit.harness_speed import faster_harness
from training.movielens import Interactions
from training.retrain import DAY_S, GateSettings, GateStack, LocalRun, registry_of, run_local
from training.sources import archive_objects

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE_PREFIX = "archive/"
HISTORY_FILE = "events.jsonl.gz"
# The demo's replay is about six weeks: a week of forward days judges the mid-replay retrain.
DEMO_HOLDOUT_DAYS = 7.0
# A fixed number of epochs, not a wall-clock budget, so the demo trains the same model on a busy machine
# as on an idle one (about 5 s an epoch here); the budget only caps a machine far slower than this one.
DEMO_EPOCHS = 10
RETRAIN_EPOCHS = 20
DEMO_TIME_BUDGET_S = 300.0
# The demo replays few users (30 of users 1..100), so the forward days are judged on all their events.
DEMO_CASES_PER_USER = 50


def write_history(train: Interactions, dest: Path) -> Path:
    """The training period as archive lines (``{"event": {...}}``), the way a product backfills its past."""
    dest.mkdir(parents=True, exist_ok=True)
    with gzip.open(dest / HISTORY_FILE, "wt", encoding="utf-8") as out:
        for event in traffic.rating_events(train):
            out.write(json.dumps({"event": event.model_dump(mode="json", exclude_none=True)}) + "\n")
    return dest


def archive_uri(pipe: LocalPipeline) -> str:
    return f"s3://{pipe.outputs['ArchiveBucketName']}/{ARCHIVE_PREFIX}"


def stack_of(pipe: LocalPipeline, bootstrap_model: Path) -> GateStack:
    session = boto3.session.Session(region_name=pipe.region)
    outputs = pipe.outputs
    return registry_of(session, outputs["ModelRegistryUri"], outputs["ModelPointerParameterName"], bootstrap_model)


def retrain_in(
    pipe: LocalPipeline,
    bootstrap_model: Path,
    history: Path,
    out: Path,
    *,
    until: int | None = None,
    holdout_days: float = DEMO_HOLDOUT_DAYS,
    time_budget_s: float = DEMO_TIME_BUDGET_S,
    epochs: int = DEMO_EPOCHS,
) -> dict[str, Any]:
    """training/retrain.py's steps against a running local stack; returns the report."""
    run = LocalRun(
        archive=archive_uri(pipe),
        history=[str(history)],
        holdout_days=holdout_days,
        until=until,
        time_budget_s=time_budget_s,
        epochs=epochs,
        settings=GateSettings(per_user=DEMO_CASES_PER_USER),
    )
    s3 = boto3.client("s3", region_name=pipe.region)
    return run_local(stack_of(pipe, bootstrap_model), run, out, s3)


def save_archive(pipe: LocalPipeline, demo_dir: Path) -> int:
    """The stack's archived events, key for key, under ``demo_dir/archive/`` (what ``make retrain`` reads)."""
    dest = demo_dir / ARCHIVE_PREFIX
    shutil.rmtree(dest, ignore_errors=True)  # a previous demo's objects are another replay's
    s3 = boto3.client("s3", region_name=pipe.region)
    count = 0
    for key, body in archive_objects(archive_uri(pipe), s3):
        path = demo_dir / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        count += 1
    return count


def load_archive(pipe: LocalPipeline, demo_dir: Path) -> int:
    """What ``save_archive`` wrote, back into a stack's archive bucket under the same keys."""
    s3 = boto3.client("s3", region_name=pipe.region)
    bucket = pipe.outputs["ArchiveBucketName"]
    paths = sorted(p for p in (demo_dir / ARCHIVE_PREFIX).rglob("*") if p.is_file())
    for path in paths:
        s3.put_object(Bucket=bucket, Key=path.relative_to(demo_dir).as_posix(), Body=path.read_bytes())
    return len(paths)


@dataclass(frozen=True)
class MidReplay:
    """The demo's retrain: at ``at`` (simulated epoch seconds), from the stack's archive plus ``history``."""

    at: int
    bootstrap_model: Path
    history: Path
    out: Path

    def save(self, pipe: LocalPipeline) -> None:
        """At the end of the replay: the archive into ``out``'s parent (the demo folder) for ``make retrain``."""
        save_archive(pipe, self.out.parent)

    def __call__(self, pipe: LocalPipeline) -> None:
        report = retrain_in(pipe, self.bootstrap_model, self.history, self.out, until=self.at)
        report["at"] = self.at
        (self.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.retrain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-dir", type=Path, default=ROOT / "out" / "demo", help="what `make demo` left")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "retrain")
    parser.add_argument("--holdout-days", type=float, default=28.0, help="the forward days the gate judges on")
    parser.add_argument("--epochs", type=int, default=RETRAIN_EPOCHS, help="passes over the training window")
    parser.add_argument("--time-budget", type=float, default=DEMO_TIME_BUDGET_S, help="at most this many seconds")
    args = parser.parse_args(argv)
    archive, history = args.demo_dir / ARCHIVE_PREFIX, args.demo_dir / "history"
    bootstrap = args.demo_dir / "models" / "cooccurrence"
    missing = [str(p) for p in (archive, history, bootstrap) if not p.is_dir()]
    if missing:
        print(f"run `make demo` first: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    with faster_harness(), LocalPipeline(ROOT / "template.yaml", stack_name="nudge-retrain", functions=[]) as pipe:
        objects = load_archive(pipe, args.demo_dir)
        print(f"[1/2] a local stack holding the demo's archive ({objects} objects) and its model as the default")
        print(f"[2/2] extract, train ({args.epochs} epochs), gate; training log in {args.out}/training.log")
        report = retrain_in(
            pipe,
            bootstrap,
            history,
            args.out,
            holdout_days=args.holdout_days,
            time_budget_s=args.time_budget,
            epochs=args.epochs,
        )
    print(describe(report))
    print(f"wrote {args.out / 'report.json'}")
    return 0


def describe(report: dict[str, Any]) -> str:
    """The report in a few lines for the console."""
    reasons = "\n".join(f"  {reason}" for reason in report["reasons"])
    seconds = ", ".join(f"{step} {value:.0f} s" for step, value in report["seconds"].items())
    tail = f"\n  {report['events']:,} events; {seconds}"
    champion = report["champion_before"]["version"]
    if report["metrics"] is None:
        return f"{report['decision']}: nothing to judge against {champion}\n{reasons}{tail}"
    metrics = report["metrics"]
    line = ", ".join(
        f"{role} NDCG@10 {metrics[role]['all']['NDCG@10']:.4f} HR@10 {metrics[role]['all']['HR@10']:.4f}"
        for role in ("champion", "challenger")
    )
    days = (report["window"]["until"] - report["window"]["cutoff"]) / DAY_S
    diff = report["difference"]
    low, high = diff["ci95"]
    paired = (
        f"\n  case by case: challenger - champion {diff['metric']} {diff['mean']:+.4f} (95 % interval {low:+.4f} "
        f"to {high:+.4f}; better on {diff['challenger_better']}, worse on {diff['champion_better']}, "
        f"tied on {diff['ties']})"
    )
    return (
        f"{report['decision']} {report['challenger']['version']} over {champion} "
        f"on {metrics['challenger']['cases']} forward cases ({days:.0f} days): {line}\n{reasons}{paired}{tail}"
    )


if __name__ == "__main__":
    sys.exit(main())
