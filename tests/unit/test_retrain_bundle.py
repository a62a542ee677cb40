"""The retraining jobs' source bundle (training/source_bundle.py) and entry script (training/sagemaker_entry.py):
what the container unpacks is enough to import what the entry script runs, and nothing it should not carry."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from training import sagemaker_entry, source_bundle
from training.sources import load_archive

ROOT = Path(__file__).resolve().parents[2]


def test_bundle_holds_the_packages_the_bootstrap_model_and_pinned_requirements(tmp_path: Path) -> None:
    out = tmp_path / "sourcedir.tar.gz"
    names = source_bundle.build(out)
    with tarfile.open(out) as archive:
        assert sorted(archive.getnames()) == sorted(names)
        requirements = archive.extractfile("requirements.txt")
        assert requirements is not None
        pins = [line for line in requirements.read().decode().splitlines() if line and not line.startswith("#")]
    assert {"training/sagemaker_entry.py", "training/train_sasrec.py", "training/sources.py"} <= set(names)
    assert {"layers/model/sasrec/int8/model.onnx", "layers/model/sasrec/int8/manifest.json"} <= set(names)
    assert {name.split("/")[0] for name in names} == {"shared", "training", "layers", "requirements.txt"}
    for name in names:
        parts = set(name.split("/"))
        assert not parts & {".venv", "out", "torch", "__pycache__", "functions", "tests"}, name
        assert not name.endswith(".pyc"), name
    assert all("==" in pin for pin in pins), pins
    assert not [pin for pin in pins if pin.split("==")[0] == "torch"]
    assert any(pin.startswith("onnx==") for pin in pins) and any(pin.startswith("onnxruntime==") for pin in pins)
    # Byte-identical when rebuilt from the same sources (same S3 ETag: an upload that changed nothing shows).
    again = tmp_path / "again.tar.gz"
    source_bundle.build(again)
    assert again.read_bytes() == out.read_bytes()


def test_unpacked_bundle_imports_what_the_entry_script_runs(tmp_path: Path) -> None:
    """In a fresh interpreter outside the checkout, the entry script's own path set-up finds every
    project module the jobs import inside the unpacked bundle (as /opt/ml/code in the container)."""
    bundle = tmp_path / "sourcedir.tar.gz"
    source_bundle.build(bundle)
    code = tmp_path / "code"
    with tarfile.open(bundle) as archive:
        archive.extractall(code, filter="data")
    modules = ["training.train_sasrec", "training.sources"]
    if (code / "training" / "retrain.py").is_file():
        modules.append("training.retrain")
    probe = (
        "import importlib, runpy, sys\n"
        f"runpy.run_path({str(code / 'training' / 'sagemaker_entry.py')!r}, run_name='probe')\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "ours = {n: m.__file__ for n, m in sys.modules.items() if n.split('.')[0] in ('training', 'shared')}\n"
        f"outside = {{n: f for n, f in ours.items() if f and not f.startswith({str(code)!r})}}\n"
        "print(len(ours), outside)\n"
        "sys.exit(1 if outside else 0)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr


def _event_line(user: str, item: str, ts: str, kind: str = "view") -> dict[str, object]:
    return {"event": {"type": kind, "user_id": user, "item_id": item, "timestamp": ts}}


def test_unload_files_are_read_as_archive_files(tmp_path: Path) -> None:
    """UNLOAD's files are not named `*.jsonl*` (here `<query id>_<id>.gz`, one of them an empty writer's);
    the archive reader takes them as they are."""
    events = tmp_path / "events"
    events.mkdir()
    lines = [_event_line("u1", "10", "2026-11-27T10:00:00Z"), _event_line("u1", "11", "2026-11-27T10:01:00Z")]
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    (events / "20261203_095501_00007_abcde_5d1c.gz").write_bytes(gzip.compress(body))
    (events / "20261203_095501_00007_abcde_77aa.gz").write_bytes(gzip.compress(b""))
    assert load_archive(str(events)).interactions.user.size == 2


def test_the_entry_script_hands_gate_to_training_retrain(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        sagemaker_entry.main(["gate", "--help"])
    assert exited.value.code == 0
    usage = capsys.readouterr().out
    assert "--challenger" in usage and "--pointer-parameter" in usage
