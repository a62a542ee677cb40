"""Retraining's own steps (training/retrain.py): the window extraction and the forward calibration."""

from __future__ import annotations

import gzip
import itertools
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from shared.model import OnnxRecommender
from testkit.tiny_model import build_tiny_model
from training.calibration import fit_forward
from training.retrain import DAY_S, Window, extract, model_folder
from training.sources import archive_objects, archive_rows, load_source

VOCAB = [f"i{k}" for k in range(10)]
HOUR = 3_600


def chain_rows(users: int = 60, length: int = 8, start: int = 1_000_000) -> list[tuple[str, str, int]]:
    """Each user walks the catalogue in order (i3, i4, i5, ...) an hour a step, users a day apart."""
    rows = []
    for u in range(users):
        first = u % 3
        for step in range(length):
            rows.append((f"u{u}", VOCAB[first + step], start + u * DAY_S + step * HOUR))
    return rows


def write_archive(folder: Path, rows: list[tuple[str, str, int]]) -> None:
    """As ingest writes it: gzipped lines of ``{"event": {...}}``, with a profile event that is not an item."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [{"event": {"type": "rate", "user_id": u, "item_id": i, "timestamp": t, "value": 5}} for u, i, t in rows]
    lines.append({"event": {"type": "profile", "user_id": "u0", "timestamp": rows[0][2]}})
    (folder / "0-1.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode()))


def test_extract_keeps_the_window_s_behaviour_events_as_flat_lines(tmp_path: Path) -> None:
    rows = chain_rows(users=4, length=3)
    write_archive(tmp_path / "archive" / "dt=1970-01-12", rows)
    window = Window(since=rows[3][2], cutoff=rows[6][2], until=rows[9][2])  # users 1 and 2
    extracted = extract([str(tmp_path / "archive")], tmp_path / "train", window)
    assert extracted.events == 6
    assert extracted.newest == rows[8][2]
    dataset = load_source("archive", str(extracted.channel))
    assert sorted((i, t) for _, i, t in dataset.rows()) == sorted((i, t) for _, i, t in rows[3:9])
    assert len({u for u, _, _ in dataset.rows()}) == 2  # user codes are opaque, item ids stay the archive's
    assert len(dataset.before(window.cutoff).rows()) == 3


def test_window_ending_now_puts_the_cutoff_holdout_days_back() -> None:
    window = Window.ending(100 * DAY_S, holdout_days=14, window_days=60)
    assert (window.since, window.cutoff, window.until) == (40 * DAY_S, 86 * DAY_S, 100 * DAY_S)
    assert window.holds(40 * DAY_S) and not window.holds(100 * DAY_S) and not window.holds(40 * DAY_S - 1)
    assert Window.ending(10, 0).since is None


def test_athena_unload_files_and_json_text_events_are_read_and_markers_are_not(tmp_path: Path) -> None:
    event = {"type": "view", "user_id": "u", "item_id": "i1", "timestamp": "2026-12-01T10:00:00Z"}
    (tmp_path / "20261203_101500_00001_abcde_0f1e").write_bytes(gzip.compress(json.dumps(event).encode() + b"\n"))
    (tmp_path / "part.gz").write_bytes(gzip.compress(json.dumps({"event": json.dumps(event)}).encode() + b"\n"))
    for marker in ("_SUCCESS", ".done", "query-manifest.csv"):
        (tmp_path / marker).write_text("not events")
    names = [key for key, _ in archive_objects(str(tmp_path))]
    assert names == ["20261203_101500_00001_abcde_0f1e", "part.gz"]
    rows = [row for _, body in archive_objects(str(tmp_path)) for row in archive_rows(json.loads(line) for line in
            gzip.decompress(body).decode().splitlines())]  # fmt: skip
    assert rows == [("u", "i1", int(datetime(2026, 12, 1, 10, tzinfo=UTC).timestamp()))] * 2


def test_the_forward_calibration_is_fitted_for_the_graph_on_what_users_did_after_the_cutoff(tmp_path: Path) -> None:
    rows = chain_rows()
    cutoff = rows[0][2] + 30 * DAY_S  # users 30..59 are judged
    knows_the_chain = {a: {b: 5.0} for a, b in itertools.pairwise(VOCAB)}
    model = OnnxRecommender.from_dir(build_tiny_model(tmp_path / "m", VOCAB, neighbours=knows_the_chain))
    calibration = fit_forward(model, rows, cutoff, min_samples=50)
    assert calibration.model_version == model.manifest.version
    # 30 users x 8 events after the cutoff; the last event of each has nothing left to take.
    assert calibration.samples == 30 * 8
    assert list(calibration.probability) == sorted(calibration.probability)
    assert max(calibration.probability) == pytest.approx(1.0)  # the next item of the chain is always taken
    mean = float(np.mean(calibration.probability))
    assert 0.6 < mean < 1.0  # ...except after each user's last event (1 case in 8 has no future)
    with pytest.raises(ValueError, match="at least 500"):
        fit_forward(model, rows, cutoff, min_samples=500)


def test_a_sagemaker_model_tarball_unpacks_to_its_served_int8_twin(tmp_path: Path) -> None:
    import tarfile

    build_tiny_model(tmp_path / "model", VOCAB)
    build_tiny_model(tmp_path / "model" / "int8", VOCAB)
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        for path in (tmp_path / "model").rglob("*"):
            tar.add(path, arcname=str(path.relative_to(tmp_path / "model")), recursive=False)
    folder = model_folder(str(tmp_path / "model.tar.gz"), tmp_path / "download")
    assert folder == tmp_path / "download" / "model" / "int8"
    assert OnnxRecommender.from_dir(folder).manifest.vocab_size == len(VOCAB) + 1
    assert model_folder(str(tmp_path / "model"), tmp_path) == tmp_path / "model" / "int8"
