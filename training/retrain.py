"""Retraining: extract a window of the archive, train, then gate, calibrate, publish and maybe promote.

The same steps run in AWS (the retraining state machine in template.yaml: Athena extracts, a SageMaker
training job trains, a processing job runs ``gate``) and in one process here (``make retrain``,
``nudge retrain --ready-file``):

1. **extract**: the window's behaviour events (archive lines, plus optional history from before the
   stack, in the archive's line format) into one ``events.jsonl.gz`` in a channel folder;
2. **train**: ``training/sagemaker_entry.py --before T ...`` (the training job's script: the trainer on
   the archive source) with SageMaker's script-mode environment (SM_CHANNEL_TRAIN, SM_MODEL_DIR,
   SM_OUTPUT_DATA_DIR); the int8 twin is what decide serves, so it is the challenger;
3. **gate**: the champion (the pointer's, or the stack's bootstrap model) and the challenger judged
   forward in time (trained before T, judged on what users did from T on, at decision time:
   training/forward_eval.py); the challenger is calibrated on those days (training/calibration.py,
   ``fit_forward``) and published to the registry with its evaluation whatever the verdict, so a
   rejected version can still be inspected or promoted by hand; it is promoted only if the gate passes.
   The report says what was served before, what was trained, the decision and its reasons.

    python -m training.retrain local --archive out/demo/archive --history out/demo/history \\
        --bootstrap-model out/demo/models/cooccurrence --out out/retrain
    python -m training.retrain gate --events s3://b/retrain/x/events/ --cutoff 1700000000 \\
        --challenger s3://b/retrain/x/model/model.tar.gz --registry-uri s3://b/models/registry/ \\
        --pointer-parameter /nudge/stack/model-pointer --bootstrap-model layers/model/sasrec/int8 --report report.json
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from shared.adapters.model_registry import S3ModelRegistry, SsmModelPointer
from shared.domain.engagement import CALIBRATION_FILE
from shared.domain.model_registry import ModelPointer
from shared.model import MODEL_FILE, OnnxRecommender
from training.calibration import fit_forward
from training.forward_eval import run as judge_forward
from training.sources import archive_objects, archive_rows, jsonl_lines, load_source

ROOT = Path(__file__).resolve().parents[1]
DAY_S = 86_400
EVENTS_FILE = "events.jsonl.gz"
# Decide serves the int8 twin by default (template ServedModel), so that is what is judged and published.
SERVED_VARIANT = "int8"
DEFAULT_HOLDOUT_DAYS = 14.0
DEFAULT_TIME_BUDGET_S = 120.0
DEFAULT_MARGIN = 0.005


class RetrainError(Exception):
    """A step cannot go on; the message says which and why."""


@dataclass(frozen=True)
class Window:
    """Events in [since, until) are extracted; the challenger trains on those before ``cutoff`` (T)."""

    since: int | None
    cutoff: int
    until: int

    @classmethod
    def ending(cls, until: int, holdout_days: float, window_days: float | None = None) -> Window:
        since = None if window_days is None else int(until - window_days * DAY_S)
        return cls(since, int(until - holdout_days * DAY_S), until)

    def holds(self, ts: int) -> bool:
        return (self.since is None or ts >= self.since) and ts < self.until


@dataclass(frozen=True)
class Extracted:
    channel: Path
    events: int
    newest: int | None
    before_cutoff: int = 0  # what the trainer will see (with a window)


def extract(locations: Sequence[str], channel: Path, window: Window | None = None, s3: Any = None) -> Extracted:
    """The behaviour events of ``locations`` (archive prefixes or folders) inside ``window`` (all without
    one) as flat JSON lines in ``channel/events.jsonl.gz``: the local stand-in for Athena's UNLOAD."""
    channel.mkdir(parents=True, exist_ok=True)
    count, newest, before_cutoff = 0, None, 0
    with gzip.open(channel / EVENTS_FILE, "wt", encoding="utf-8") as out:
        for location in locations:
            for _, body in archive_objects(location, s3):
                for user, item, ts in archive_rows(jsonl_lines(body)):
                    if window is not None and not window.holds(ts):
                        continue
                    out.write(json.dumps({"type": "view", "user_id": user, "item_id": item, "timestamp": ts}) + "\n")
                    count += 1
                    before_cutoff += window is not None and ts < window.cutoff
                    newest = ts if newest is None else max(newest, ts)
    return Extracted(channel, count, newest, before_cutoff)


def train(
    channel: Path,
    model_dir: Path,
    output_dir: Path,
    cutoff: int,
    *,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
    epochs: int | None = None,
    seeds: Sequence[int] = (0,),
    log: Path | None = None,
) -> Path:
    """The training job, locally: the trainer's own entry point in SageMaker's script-mode environment.
    Returns the served variant's folder. ``epochs`` fixes the schedule (the same model however busy the
    machine is); the time budget then only caps it."""
    env = {
        **os.environ,
        "SM_CHANNEL_TRAIN": str(channel),
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DATA_DIR": str(output_dir),
    }
    hyperparameters = ["--before", str(cutoff), "--time-budget", str(time_budget_s), "--seeds", *map(str, seeds)]
    if epochs is not None:
        hyperparameters += ["--epochs", str(epochs)]
    # The training job's own command: SageMaker runs this script with the hyperparameters as options.
    command = [sys.executable, str(ROOT / "training" / "sagemaker_entry.py"), *hyperparameters]
    with open(log, "w") if log is not None else open(os.devnull, "w") as sink:
        finished = subprocess.run(command, env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, check=False)
    if finished.returncode != 0:
        raise RetrainError(f"training failed (exit {finished.returncode}); see {log or 'the training log'}")
    return served_variant(model_dir)


def served_variant(model_dir: Path) -> Path:
    return model_dir / SERVED_VARIANT if (model_dir / SERVED_VARIANT / MODEL_FILE).is_file() else model_dir


@dataclass
class GateStack:
    """Where the gate reads the champion and writes the challenger and, if it wins, the pointer."""

    registry: S3ModelRegistry
    pointer: SsmModelPointer
    bootstrap_model: Path  # what decide serves while the pointer names nothing


@dataclass(frozen=True)
class GateSettings:
    margin: float = DEFAULT_MARGIN
    cold_tolerance: float = 0.0
    per_user: int = 20  # forward cases (and calibration cases) per user: their first N events from T on
    cold_max: int = 5


def gate(
    stack: GateStack,
    events: Sequence[str],
    cutoff: int,
    challenger: Path,
    scratch: Path,
    settings: GateSettings = GateSettings(),
    s3: Any = None,
) -> dict[str, Any]:
    """Calibrate, judge, publish and maybe promote ``challenger``; returns the report."""
    rows = load_source("archive", _one_location(events, scratch / "events", s3), s3).rows()
    before = stack.pointer.read()
    champion_dir, champion_version = _champion(stack, before, scratch / "champion")
    candidate = scratch / "challenger"
    shutil.copytree(challenger, candidate, dirs_exist_ok=True)
    shutil.rmtree(candidate / SERVED_VARIANT, ignore_errors=True)
    try:
        calibration = fit_forward(OnnxRecommender.from_dir(candidate), rows, cutoff, per_user=settings.per_user)
    except ValueError as exc:
        # Too few days after T to fit a table: the model cannot be served (no calibration), so it is not
        # published either; the report says why and the champion stays.
        return _not_judged(champion_version, before, cutoff, f"not calibrated: {exc}")
    (candidate / CALIBRATION_FILE).write_text(calibration.model_dump_json(indent=2) + "\n")
    judged = judge_forward(
        rows,
        cutoff,
        champion_dir,
        candidate,
        per_user=settings.per_user,
        cold_max=settings.cold_max,
        margin=settings.margin,
        cold_tolerance=settings.cold_tolerance,
    )
    version = stack.registry.publish(candidate, evaluation={"forward": judged, "calibration": calibration.samples})
    promote = bool(judged["gate"]["promote"])
    after = before
    if promote:
        # The same check decide makes before serving it: downloads, matches its id, loads with calibration.
        stack.registry.load(version, scratch / "loaded")
        after = before.promoted(version) if before is not None else ModelPointer.first(version)
        stack.pointer.write(after)
    return {
        "champion_before": {"version": champion_version, "pointer": _pointer_json(before)},
        "challenger": {"version": version, "calibration_samples": calibration.samples},
        "decision": "promoted" if promote else "rejected",
        "promoted": promote,  # the state machine's Choice reads these two (template.yaml, RetrainStateMachine)
        "reason": "; ".join(judged["gate"]["reasons"]),
        "reasons": judged["gate"]["reasons"],
        "pointer_after": _pointer_json(after),
        "cutoff": cutoff,
        "metrics": {
            "champion": _metrics(judged["models"]["champion"]),
            "challenger": _metrics(judged["models"]["challenger"]),
        },
        "gate": judged["gate"],
        "difference": judged["difference"],
    }


def _not_judged(champion: str, pointer: ModelPointer | None, cutoff: int, reason: str) -> dict[str, Any]:
    return {
        "champion_before": {"version": champion, "pointer": _pointer_json(pointer)},
        "challenger": {"version": None, "calibration_samples": 0},
        "decision": "rejected",
        "promoted": False,
        "reason": reason,
        "reasons": [reason],
        "pointer_after": _pointer_json(pointer),
        "cutoff": cutoff,
        "metrics": None,
        "gate": None,
    }


def _champion(stack: GateStack, pointer: ModelPointer | None, dest: Path) -> tuple[Path, str]:
    if pointer is None:
        return stack.bootstrap_model, OnnxRecommender.from_dir(stack.bootstrap_model).manifest.version
    return stack.registry.download(pointer.champion, dest), pointer.champion


def _metrics(judged: Mapping[str, Any]) -> dict[str, Any]:
    return {key: judged[key] for key in ("all", "cold", "cases", "cold_cases")}


def _pointer_json(pointer: ModelPointer | None) -> dict[str, Any] | None:
    return None if pointer is None else pointer.model_dump(mode="json")


def _one_location(locations: Sequence[str], dest: Path, s3: Any) -> str:
    if len(locations) == 1:
        return locations[0]
    return str(extract(locations, dest, None, s3).channel)


def model_folder(path: str, dest: Path, s3: Any = None) -> Path:
    """A model folder from a folder, or from SageMaker's ``model.tar.gz`` (local or s3://)."""
    if not path.endswith(".tar.gz"):
        return served_variant(Path(path))
    archive = Path(path)
    if path.startswith("s3://"):
        uri = urlparse(path)
        archive = dest / "model.tar.gz"
        dest.mkdir(parents=True, exist_ok=True)
        archive.write_bytes(s3.get_object(Bucket=uri.netloc, Key=uri.path.lstrip("/"))["Body"].read())
    unpacked = dest / "model"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    return served_variant(unpacked)


@dataclass(frozen=True)
class LocalRun:
    """``make retrain`` and ``nudge retrain --ready-file``: every step against one stack."""

    archive: str  # s3://bucket/archive/ of the stack, or a folder
    history: Sequence[str] = ()
    holdout_days: float = DEFAULT_HOLDOUT_DAYS
    window_days: float | None = None
    until: int | None = None  # default: just after the newest archived event
    time_budget_s: float = DEFAULT_TIME_BUDGET_S
    epochs: int | None = None  # None: the recipe's, cut by the time budget
    settings: GateSettings = GateSettings()


def run_local(stack: GateStack, run: LocalRun, out: Path, s3: Any = None) -> dict[str, Any]:
    """Extract, train and gate in this process; writes ``out/report.json`` (and the training log)."""
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    locations = [run.archive, *run.history]
    with tempfile.TemporaryDirectory(prefix="retrain-") as tmp:
        scratch = Path(tmp)
        with _timed(seconds, "extract"):
            until = run.until if run.until is not None else _after_newest(run.archive, scratch / "probe", s3)
            window = Window.ending(until, run.holdout_days, run.window_days)
            extracted = extract(locations, scratch / "train", window, s3)
        if extracted.before_cutoff == 0:
            raise RetrainError(f"no behaviour events before T ({window.cutoff}): nothing to train on")
        with _timed(seconds, "train"):
            challenger = train(
                extracted.channel,
                scratch / "model",
                out / "training",
                window.cutoff,
                time_budget_s=run.time_budget_s,
                epochs=run.epochs,
                log=out / "training.log",
            )
        with _timed(seconds, "gate"):
            report = gate(stack, [str(extracted.channel)], window.cutoff, challenger, scratch / "gate", run.settings)
    report = {
        **report,
        "window": asdict(window),
        "events": extracted.events,
        "seconds": {step: round(value, 1) for step, value in seconds.items()},
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _after_newest(archive: str, scratch: Path, s3: Any) -> int:
    newest = extract([archive], scratch, None, s3).newest
    if newest is None:
        raise RetrainError(f"{archive}: no behaviour events archived yet")
    return newest + 1


@contextlib.contextmanager
def _timed(into: dict[str, float], step: str) -> Iterator[None]:
    began = time.perf_counter()
    try:
        yield
    finally:
        into[step] = into.get(step, 0.0) + time.perf_counter() - began


def registry_of(session: Any, registry_uri: str, pointer_parameter: str, bootstrap_model: Path) -> GateStack:
    return GateStack(
        S3ModelRegistry.at(session.client("s3"), registry_uri),
        SsmModelPointer(session.client("ssm"), pointer_parameter),
        bootstrap_model,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.retrain", description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    g = steps.add_parser("gate", help="calibrate, judge, publish and maybe promote a trained model (AWS's gate step)")
    g.add_argument("--events", action="append", required=True, help="the extracted window (folder or s3:// prefix)")
    g.add_argument("--cutoff", type=int, required=True, help="T: the challenger trained on events before it")
    g.add_argument("--challenger", required=True, help="model folder, or SageMaker's model.tar.gz (local or s3://)")
    g.add_argument("--registry-uri", required=True)
    g.add_argument("--pointer-parameter", required=True)
    g.add_argument("--bootstrap-model", type=Path, default=ROOT / "layers/model/sasrec/int8")
    g.add_argument("--margin", type=float, default=DEFAULT_MARGIN)
    g.add_argument("--cold-tolerance", type=float, default=0.0)
    g.add_argument("--report", type=Path, default=Path("out/retrain/report.json"))
    args = parser.parse_args(argv)
    import boto3  # offline tool: the session is the caller's (profile, region, role of the job)

    session = boto3.session.Session()
    s3 = session.client("s3")
    stack = registry_of(session, args.registry_uri, args.pointer_parameter, args.bootstrap_model)
    settings = GateSettings(margin=args.margin, cold_tolerance=args.cold_tolerance)
    with tempfile.TemporaryDirectory(prefix="gate-") as tmp:
        challenger = model_folder(args.challenger, Path(tmp) / "download", s3)
        report = gate(stack, args.events, args.cutoff, challenger, Path(tmp) / "gate", settings, s3)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['decision']} {report['challenger']['version']}: " + "; ".join(report["reasons"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
