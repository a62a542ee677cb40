"""Retraining against a local stack built from template.yaml: the gate, the registry, the pointer, the trainer.

The gate (training/retrain.py) reads the window from the stack's archive bucket, calibrates the challenger on
the days after T, judges it against what decide serves, publishes it with its evaluation and moves the pointer
only when it wins. `nudge retrain --ready-file` runs every step, the real trainer included.
"""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import boto3
import pytest

from cli.__main__ import main
from demo.retrain import stack_of
from runner.pipeline import LocalPipeline
from shared.model import read_manifest
from testkit.tiny_model import build_tiny_model
from training.retrain import DAY_S, GateSettings, gate

pytestmark = pytest.mark.slow(seconds=40)

ROOT = Path(__file__).resolve().parents[2]
VOCAB = [f"i{k}" for k in range(12)]
START = 1_700_000_000
HOUR = 3_600
USERS = 60


def chain_rows() -> list[tuple[str, str, int]]:
    """Users walk the catalogue in order, an hour a step, a new user every half day (30 days in all)."""
    return [
        (f"u{u}", VOCAB[u % 4 + step], START + u * DAY_S // 2 + step * HOUR) for u in range(USERS) for step in range(8)
    ]


CUTOFF = START + 10 * DAY_S  # users 20..59 come after T


def put_archive(pipe: LocalPipeline, rows: list[tuple[str, str, int]]) -> str:
    """Ingest's layout and line shape: archive/dt=.../hour=.../<shard>-<sequence>.jsonl.gz."""
    s3 = boto3.client("s3", region_name=pipe.region)
    bucket = pipe.outputs["ArchiveBucketName"]
    by_day: dict[str, list[dict[str, object]]] = {}
    for n, (user, item, ts) in enumerate(rows):
        event = {"event_id": f"e{n}", "type": "view", "user_id": user, "item_id": item, "timestamp": ts}
        by_day.setdefault(datetime.fromtimestamp(ts).strftime("%Y-%m-%d"), []).append({"event": event})
    for day, lines in by_day.items():
        body = gzip.compress("".join(json.dumps(line) + "\n" for line in lines).encode())
        s3.put_object(Bucket=bucket, Key=f"archive/dt={day}/hour=00/shard-0-{day}.jsonl.gz", Body=body)
    return f"s3://{bucket}/archive/"


@pytest.fixture
def pipe() -> Iterator[LocalPipeline]:
    with LocalPipeline(ROOT / "template.yaml", stack_name="nudge-retrain", functions=[]) as pipeline:
        yield pipeline


def knows_the_chain(path: Path) -> Path:
    return build_tiny_model(path, VOCAB, neighbours={a: {b: 5.0} for a, b in itertools.pairwise(VOCAB)})


def knows_nothing(path: Path) -> Path:
    flat = dict.fromkeys(VOCAB, 0.0)
    return build_tiny_model(path, VOCAB, neighbours={}, popularity={**flat, "i11": 1.0})


def test_a_challenger_that_wins_forward_is_calibrated_published_and_promoted(
    pipe: LocalPipeline, tmp_path: Path
) -> None:
    events = put_archive(pipe, chain_rows())
    stack = stack_of(pipe, knows_nothing(tmp_path / "bootstrap"))
    report = gate(stack, [events], CUTOFF, knows_the_chain(tmp_path / "challenger"), tmp_path / "gate")
    version = report["challenger"]["version"]
    assert report["decision"] == "promoted" and report["promoted"] is True, report["reasons"]
    assert report["metrics"]["challenger"]["all"]["NDCG@10"] > report["metrics"]["champion"]["all"]["NDCG@10"]
    assert report["champion_before"] == {"version": read_manifest(tmp_path / "bootstrap").version, "pointer": None}
    pointer = stack.pointer.read()
    assert pointer is not None and pointer.champion == version
    served = stack.registry.load(version, tmp_path / "served")  # what decide does with the pointer's champion
    assert served.calibration is not None and served.calibration.samples == report["challenger"]["calibration_samples"]
    evaluation = stack.registry.describe(version).evaluation
    assert evaluation is not None and evaluation["forward"]["gate"]["promote"] is True


def test_a_challenger_that_loses_is_published_with_its_reasons_and_the_pointer_stays(
    pipe: LocalPipeline, tmp_path: Path
) -> None:
    events = put_archive(pipe, chain_rows())
    stack = stack_of(pipe, knows_nothing(tmp_path / "bootstrap"))
    first = gate(stack, [events], CUTOFF, knows_the_chain(tmp_path / "good"), tmp_path / "g1")
    pointer = stack.pointer.read()
    worse = gate(stack, [events], CUTOFF, knows_nothing(tmp_path / "worse"), tmp_path / "g2")
    assert worse["decision"] == "rejected" and worse["promoted"] is False
    assert worse["reason"] == "; ".join(worse["reasons"])  # what the state machine's failure output carries
    assert worse["champion_before"]["version"] == first["challenger"]["version"]  # judged against the pointer's
    assert "does not win" in worse["reasons"][0]
    assert stack.pointer.read() == pointer
    evaluation = stack.registry.describe(worse["challenger"]["version"]).evaluation
    assert evaluation is not None and evaluation["forward"]["gate"]["reasons"] == worse["reasons"]


def test_too_few_days_after_the_cutoff_reject_without_publishing(pipe: LocalPipeline, tmp_path: Path) -> None:
    events = put_archive(pipe, chain_rows())
    stack = stack_of(pipe, knows_nothing(tmp_path / "bootstrap"))
    late = START + 29 * DAY_S  # two users after T: 16 events, too few to calibrate on
    report = gate(stack, [events], late, knows_the_chain(tmp_path / "c"), tmp_path / "g", GateSettings(per_user=20))
    assert report["decision"] == "rejected" and report["reasons"][0].startswith("not calibrated")
    assert stack.registry.versions() == [] and stack.pointer.read() is None


def test_nudge_retrain_runs_every_step_against_a_local_stack(
    pipe: LocalPipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put_archive(pipe, chain_rows())
    ready = tmp_path / "ready.json"
    ready.write_text(json.dumps(pipe.describe()))
    bootstrap = knows_nothing(tmp_path / "bootstrap")
    out = tmp_path / "out"
    argv = ["retrain", "--ready-file", str(ready), "--bootstrap-model", str(bootstrap), "--out", str(out)]
    status = main([*argv, "--holdout-days", "20", "--time-budget", "5"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    report = json.loads(captured.out)
    assert report == json.loads((out / "report.json").read_text())
    assert set(report["seconds"]) == {"extract", "train", "gate"}
    assert report["events"] == USERS * 8
    # The trainer saw only what came before T (its manifest's window), and was judged on what came after.
    cutoff = report["window"]["cutoff"]
    assert report["window"]["until"] - cutoff == 20 * DAY_S
    stack = stack_of(pipe, bootstrap)
    version = report["challenger"]["version"]
    manifest = stack.registry.describe(version).manifest
    assert manifest.kind == "sasrec"
    assert manifest.training_window is not None
    assert manifest.training_window["end"].timestamp() < cutoff
    assert report["metrics"]["challenger"]["cases"] == report["metrics"]["champion"]["cases"] > 0
    pointer = stack.pointer.read()
    if report["decision"] == "promoted":
        assert pointer is not None and pointer.champion == version
    else:
        assert pointer is None
    assert (out / "training.log").read_text().count("wrote") >= 2  # the fp32 model and its int8 twin


def test_a_scenario_checkpoint_runs_once_between_the_records_around_its_time() -> None:
    """The hook the demo's mid-replay retrain hangs on (testkit/scenario.py ``checkpoints``)."""
    from datetime import timedelta

    from testkit import traffic
    from testkit.scenario import Scenario, StackSpec, Timeline, run

    first = datetime.fromtimestamp(START).astimezone()
    records = traffic.records_of(traffic.behaviour("u1", 4, first, ["i1"], spacing=timedelta(minutes=10)))
    seen: list[tuple[int, int]] = []
    progress: list[dict[str, int]] = []

    def hook(pipe: LocalPipeline) -> None:
        seen.append((int(pipe.clock.now()), len(pipe.positions)))

    scenario = Scenario(
        StackSpec(name="nudge-checkpoint", functions=["IngestFunction"]),
        records,
        Timeline(step_s=300),
        progress=lambda done, total, counters: progress.append(dict(counters)),
        checkpoints=[(START + 900, "retraining", hook)],
    )
    result = run(scenario)
    assert len(result.put) == 4
    assert seen == [(START + 900, 2)]  # at the end of the step reaching it: the records at +0 and +10 min are in
    assert [c for c in progress if "retraining" in c] == [{"pushes": 0, "feedback": 0, "retraining": 1}]


def test_make_retrain_reads_the_archive_the_demo_saved(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`make retrain` (python -m demo.retrain): the demo's saved archive, history and model, in a fresh stack."""
    from demo import retrain as demo_retrain

    rows = chain_rows()
    demo_dir = tmp_path / "demo"
    assert demo_retrain.main(["--demo-dir", str(demo_dir)]) == 2
    assert "run `make demo` first" in capsys.readouterr().err
    with LocalPipeline(ROOT / "template.yaml", stack_name="nudge-demo-full", functions=[]) as demo_stack:
        put_archive(demo_stack, rows[len(rows) // 2 :])
        saved = demo_retrain.save_archive(demo_stack, demo_dir)  # what the demo does when its replay ends
    assert saved == len(list((demo_dir / "archive").rglob("*.jsonl.gz"))) > 0
    history = demo_dir / "history"
    history.mkdir()
    lines = [
        {"event": {"type": "rate", "user_id": u, "item_id": i, "timestamp": t}} for u, i, t in rows[: len(rows) // 2]
    ]
    (history / "events.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode()))
    knows_nothing(demo_dir / "models" / "cooccurrence")
    out = tmp_path / "out"
    argv = ["--demo-dir", str(demo_dir), "--out", str(out), "--holdout-days", "20", "--epochs", "2"]
    assert demo_retrain.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["events"] == len(rows)  # the saved archive and the history, together
    assert report["champion_before"]["version"] == read_manifest(demo_dir / "models" / "cooccurrence").version
    assert "forward cases" in capsys.readouterr().out
    trained = json.loads((out / "training" / "report.json").read_text())  # the trainer's SM_OUTPUT_DATA_DIR
    assert trained["config"]["cfg_epochs"] == 2
