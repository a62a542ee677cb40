"""shared.model against the tiny hand-set model (see testkit/tiny_model.py for the golden rule)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import boto3
import numpy as np
import onnx
import pytest
from moto import mock_aws
from numpy.testing import assert_allclose

from shared.model import (
    MANIFEST_FILE,
    MODEL_FILE,
    VERSION_METADATA_KEY,
    ModelLoadError,
    ModelManifest,
    OnnxRecommender,
    Recommendation,
    Recommender,
    download_model,
    session_options,
)
from testkit.tiny_model import build_tiny_model

VOCAB = ["i1", "i2", "i3", "i4", "i5", "i6"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def rec(model_dir: Path) -> OnnxRecommender:
    return OnnxRecommender.from_dir(model_dir)


def ids(recs: list[Recommendation]) -> list[str]:
    return [r.item_id for r in recs]


def scores(recs: list[Recommendation]) -> list[float]:
    return [r.score for r in recs]


def test_golden_single_item(rec: OnnxRecommender) -> None:
    (out,) = rec.recommend([["i1"]], k=5)
    assert ids(out) == ["i2", "i3", "i4", "i5", "i6"]
    assert_allclose(scores(out), [1.005, 0.504, 0.003, 0.002, 0.001], rtol=1e-6)


def test_golden_recency_weighting(rec: OnnxRecommender) -> None:
    # i1 is one step older than i2, so its neighbour scores count half.
    (out,) = rec.recommend([["i1", "i2"]], k=3)
    assert ids(out) == ["i3", "i4", "i5"]
    assert_allclose(scores(out), [1.254, 0.503, 0.002], rtol=1e-6)


def test_is_a_recommender(rec: OnnxRecommender) -> None:
    assert isinstance(rec, Recommender)
    assert rec.manifest.version.startswith("cooc-20260101-")
    assert rec.manifest.item_vocab == ["<pad>", *VOCAB]
    assert rec.manifest.index_of("i3") == 3
    assert rec.manifest.index_of("<pad>") is None
    assert rec.manifest.index_of("nope") is None


def test_never_recommends_the_history_window_or_padding(rec: OnnxRecommender) -> None:
    histories = [["i2", "i4"], ["i6", "i5", "i4", "i3"], ["i1", "i1", "i1"]]
    for history, out in zip(histories, rec.recommend(histories, k=100), strict=True):
        assert not set(ids(out)) & set(history)
        assert "<pad>" not in ids(out)
        assert len(out) == len(VOCAB) - len(set(history))
        assert scores(out) == sorted(scores(out), reverse=True)


def test_masks_only_the_last_max_history_items(rec: OnnxRecommender) -> None:
    # max_history is 4: i1 has left the window, so it may come back (decide filters consumed items).
    (out,) = rec.recommend([["i1", "i3", "i4", "i5", "i6"]], k=10)
    assert ids(out) == ["i1", "i2"]


def test_unknown_ids_are_dropped_before_the_window(rec: OnnxRecommender) -> None:
    (plain,) = rec.recommend([["i1"]], k=5)
    (noisy,) = rec.recommend([["x1", "i1", "x2", "x3", "x4", "x5"]], k=5)
    assert noisy == plain


def test_empty_or_unknown_history_falls_back_to_popularity(rec: OnnxRecommender) -> None:
    empty, unknown = rec.recommend([[], ["nope"]], k=3)
    assert ids(empty) == ["i1", "i2", "i3"]
    assert_allclose(scores(empty), [0.006, 0.005, 0.004], rtol=1e-6)
    assert unknown == empty


def test_dynamic_batch_matches_one_by_one(rec: OnnxRecommender) -> None:
    rng = np.random.default_rng(7)
    histories = [list(rng.choice(VOCAB, size=int(rng.integers(0, 7)))) for _ in range(64)]
    batched = rec.recommend(histories, k=4)
    assert len(batched) == 64
    for history, out in zip(histories, batched, strict=True):
        (single,) = rec.recommend([history], k=4)
        assert ids(out) == ids(single)
        assert_allclose(scores(out), scores(single), rtol=1e-6)


def test_edge_sizes(rec: OnnxRecommender) -> None:
    assert rec.recommend([], k=3) == []
    assert rec.recommend([["i1"], []], k=0) == [[], []]
    (out,) = rec.recommend([["i1"]], k=1000)  # more than the vocabulary
    assert ids(out) == ["i2", "i3", "i4", "i5", "i6"]


def test_preprocess_left_pads_newest_last(rec: OnnxRecommender) -> None:
    batch = rec.preprocess([["i2", "zz", "i3"], [], ["i1", "i2", "i3", "i4", "i5"]])
    assert batch.dtype == np.int64
    assert batch.tolist() == [[0, 0, 2, 3], [0, 0, 0, 0], [2, 3, 4, 5]]


def test_score_items(rec: OnnxRecommender) -> None:
    got = rec.score_items(["i1"], ["i2", "i1", "unknown", "i6"])
    assert got[1] is None and got[2] is None
    assert got[0] == pytest.approx(1.005) and got[3] == pytest.approx(0.001)


def test_session_is_single_threaded_and_sequential() -> None:
    options = session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.execution_mode.name == "ORT_SEQUENTIAL"
    assert options.graph_optimization_level.name == "ORT_ENABLE_ALL"


def test_custom_vocab_and_tables(tmp_path: Path) -> None:
    model = build_tiny_model(
        tmp_path,
        vocab=["1", "2", "3"],
        neighbours={"1": {"3": 2.0}},
        popularity={"1": 0.0, "2": 0.1, "3": 0.0},
        max_history=2,
    )
    rec = OnnxRecommender.from_dir(model)
    (from_history,), (from_prior,) = rec.recommend([["1"], []], k=1)
    assert from_history == Recommendation("3", 2.0)
    assert from_prior.item_id == "2" and from_prior.score == pytest.approx(0.1)


# ---------------------------------------------------------------- load errors


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_manifest(model_dir: Path, **changes: object) -> None:
    path = model_dir / MANIFEST_FILE
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_manifest_shape_mismatch(model_dir: Path, tmp_path: Path) -> None:
    broken = copy_model(model_dir, tmp_path / "m")
    manifest = json.loads((broken / MANIFEST_FILE).read_text())
    edit_manifest(
        broken,
        max_history=5,
        inputs=[{**manifest["inputs"][0], "shape": ["batch", 5]}, manifest["inputs"][1]],
    )
    with pytest.raises(ModelLoadError, match="item_ids: shape"):
        OnnxRecommender.from_dir(broken)


def test_manifest_dtype_and_name_mismatch(model_dir: Path, tmp_path: Path) -> None:
    broken = copy_model(model_dir, tmp_path / "m")
    manifest = json.loads((broken / MANIFEST_FILE).read_text())
    outputs = manifest["outputs"]
    outputs[1] = {**outputs[1], "dtype": "int64"}
    outputs[2] = {**outputs[2], "name": "logits"}
    edit_manifest(broken, outputs=outputs)
    with pytest.raises(ModelLoadError) as excinfo:
        OnnxRecommender.from_dir(broken)
    assert "top_scores: dtype" in str(excinfo.value)
    assert "output names" in str(excinfo.value)


def test_vocab_size_must_match_the_graph(model_dir: Path, tmp_path: Path) -> None:
    broken = copy_model(model_dir, tmp_path / "m")
    edit_manifest(broken, item_vocab=["<pad>", "i1", "i2"])
    with pytest.raises(ModelLoadError, match="vocabulary"):
        OnnxRecommender.from_dir(broken)


def test_graph_with_a_fixed_batch_is_rejected(model_dir: Path, tmp_path: Path) -> None:
    broken = copy_model(model_dir, tmp_path / "m")
    graph = onnx.load(str(broken / MODEL_FILE))
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # "batch" -> 1
    onnx.save(graph, str(broken / MODEL_FILE))
    with pytest.raises(ModelLoadError, match="item_ids: shape"):
        OnnxRecommender.from_dir(broken)


def test_ties_break_by_vocabulary_order(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path, vocab=["z", "y", "x"], neighbours={}, popularity={"z": 0, "y": 0, "x": 0})
    (out,) = OnnxRecommender.from_dir(model).recommend([[]], k=3)
    assert out == [Recommendation("z", 0.0), Recommendation("y", 0.0), Recommendation("x", 0.0)]


def test_manifest_from_another_build(model_dir: Path, tmp_path: Path) -> None:
    broken = copy_model(model_dir, tmp_path / "m")
    edit_manifest(broken, version="cooc-20991231-deadbeef")
    with pytest.raises(ModelLoadError, match="graph version"):
        OnnxRecommender.from_dir(broken)


def test_graph_without_version_metadata(model_dir: Path, tmp_path: Path) -> None:
    broken = copy_model(model_dir, tmp_path / "m")
    graph = onnx.load(str(broken / MODEL_FILE))
    del graph.metadata_props[:]
    onnx.save(graph, str(broken / MODEL_FILE))
    graph = onnx.load(str(broken / MODEL_FILE))
    assert not any(p.key == VERSION_METADATA_KEY for p in graph.metadata_props)
    with pytest.raises(ModelLoadError, match="graph version None"):
        OnnxRecommender.from_dir(broken)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / MANIFEST_FILE).unlink(), "no manifest"),
        (lambda d: (d / MODEL_FILE).unlink(), "no model file"),
        (lambda d: (d / MANIFEST_FILE).write_text("{not json"), "invalid manifest"),
        (lambda d: (d / MODEL_FILE).write_bytes(b"not an onnx graph"), "cannot load"),
    ],
)
def test_missing_or_corrupt_files(
    model_dir: Path, tmp_path: Path, damage: Callable[[Path], object], message: str
) -> None:
    broken = copy_model(model_dir, tmp_path / "m")
    damage(broken)
    with pytest.raises(ModelLoadError, match=message):
        OnnxRecommender.from_dir(broken)


def test_manifest_round_trips(model_dir: Path) -> None:
    manifest = ModelManifest.model_validate_json((model_dir / MANIFEST_FILE).read_text())
    assert manifest.kind == "cooccurrence"
    assert manifest.max_history == 4
    assert [s.name for s in manifest.inputs] == ["item_ids", "k"]
    assert [s.name for s in manifest.outputs] == ["top_ids", "top_scores", "scores"]
    assert manifest.training_window["start"].tzinfo is not None


# ---------------------------------------------------------------- S3 rollout


@mock_aws
def test_download_model_from_s3(model_dir: Path, tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="models")
    for name in (MODEL_FILE, MANIFEST_FILE):
        s3.upload_file(str(model_dir / name), "models", f"cooc/v2/{name}")
    dest = download_model("s3://models/cooc/v2", tmp_path / "cache", s3)
    assert sorted(p.name for p in dest.iterdir()) == [MANIFEST_FILE, MODEL_FILE]
    rec = OnnxRecommender.from_dir(dest)
    assert ids(rec.recommend([["i1"]], k=2)[0]) == ["i2", "i3"]


@mock_aws
def test_download_model_missing_object(tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="models")
    with pytest.raises(ModelLoadError, match="cannot download"):
        download_model("s3://models/nothing-here/", tmp_path / "cache", s3)
    assert not [p for p in (tmp_path / "cache").iterdir()], "no partial files left behind"


@pytest.mark.parametrize("uri", ["models/cooc/", "s3:///cooc/", "https://example.com/model"])
def test_download_model_rejects_bad_uris(uri: str, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError):
        download_model(uri, tmp_path, s3_client=None)


# ---------------------------------------------------------------- evaluation builds decide's feeds


class _Stop(Exception):
    """Raised by the recording session once decide has asked the model (nothing after it matters here)."""


class _RecordingSession:
    """Wraps an onnxruntime session: keeps every feed dict; optionally stops the caller after one run."""

    def __init__(self, inner: object, stop: bool) -> None:
        self._inner = inner
        self._stop = stop
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> object:
        self.feeds.append({name: np.array(value) for name, value in feeds.items()})
        if self._stop:
            raise _Stop
        return self._inner.run(outputs, feeds)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def _decide_feeds(model_dir: Path, history: list[tuple[str, int]], now: int) -> dict[str, np.ndarray]:
    """The feeds decide's ``decide_for`` hands the graph for a user whose state holds ``history``."""
    from typing import Any, cast

    from shared.domain.policy import PolicyConfig, RulesPolicy
    from shared.domain.user_state import MAX_RECENT_ITEMS, RecentItem, UserState
    from shared.services.decide import DecideConfig, DecideService

    served = OnnxRecommender.from_dir(model_dir)
    session = _RecordingSession(served._session, stop=True)
    recorder = OnnxRecommender(served.manifest, cast(Any, session))
    state = UserState(
        user_id="u1",
        # What features keeps: the newest MAX_RECENT_ITEMS events, oldest first.
        recent_items=[RecentItem(item_id=i, ts=t, type="rate") for i, t in history[-MAX_RECENT_ITEMS:]],
    )
    service = DecideService(
        cast(Any, None),
        cast(Any, None),
        cast(Any, None),
        recorder,
        cast(Any, None),
        RulesPolicy(PolicyConfig()),
        DecideConfig(),
    )
    with pytest.raises(_Stop):
        service.decide_for(state, now, "state:1")
    (feeds,) = session.feeds
    return {name: value for name, value in feeds.items() if name != "k"}


def test_evaluation_builds_the_feeds_decide_builds(tmp_path: Path) -> None:
    """Same user state, same clock: the evaluator's rows are exactly decide's inputs, at every request time."""
    from testkit.tiny_model import build_tiny_sasrec
    from training.decision_eval import Case, case_feeds
    from training.sequences import DECISION, PLUS_1H, TARGET_TIME

    model_dir = build_tiny_sasrec(tmp_path / "sasrec", vocab=VOCAB)
    rec = OnnxRecommender.from_dir(model_dir)
    t0 = 880_000_000
    # Longer than decide's 50 recent items (it keeps the newest), with an unknown id and a repeat.
    long = [(VOCAB[n % 6] if n != 57 else "unknown", t0 + 97 * n) for n in range(60)]
    users = [long, [("i2", t0), ("i5", t0 + 40)], [("i3", t0 + 5)]]
    cases = [Case([i for i, _ in h], [t for _, t in h], "i4", h[-1][1] + 600) for h in users]
    for mode in (DECISION, PLUS_1H, TARGET_TIME):
        batch = case_feeds(rec, cases, mode)
        for row, (history, case) in enumerate(zip(users, cases, strict=True)):
            now = case.now(mode)
            assert now == {DECISION: history[-1][1], PLUS_1H: history[-1][1] + 3600, TARGET_TIME: case.target_ts}[mode]
            decided = _decide_feeds(model_dir, history, now)
            assert set(decided) == set(batch) == {"item_ids", "timestamps", "now"}
            for name, value in decided.items():
                np.testing.assert_array_equal(batch[name][row : row + 1], value, err_msg=f"{mode} {name}")


def test_evaluation_ranks_as_the_wrapper_recommends(tmp_path: Path) -> None:
    """Batched full-catalogue ranks equal the order ``recommend_in_context`` returns, one call per case."""
    from shared.model import recommend_in_context
    from testkit.tiny_model import build_tiny_sasrec
    from training.decision_eval import Case, artifact_ranks

    vocab = [f"m{i}" for i in range(1, 30)]
    rec = OnnxRecommender.from_dir(build_tiny_sasrec(tmp_path / "sasrec", vocab=vocab))
    rng = np.random.default_rng(3)
    cases = []
    for _ in range(12):
        items = [str(x) for x in rng.choice(vocab, size=int(rng.integers(1, 9)))]
        stamps = sorted(int(x) for x in rng.integers(880_000_000, 880_100_000, size=len(items)))
        cases.append(Case(items, stamps, str(rng.choice(vocab)), stamps[-1] + 60))
    ranks = artifact_ranks(rec, cases, batch_size=5)
    for case, rank in zip(cases, ranks, strict=True):
        (recs,) = recommend_in_context(rec, [case.history], len(vocab) + 1, [case.stamps], case.now())
        order = [r.item_id for r in recs if r.item_id not in set(case.history)]
        expected = order.index(case.target) + 1 if case.target in order else len(vocab) + 2
        assert rank == expected


def test_evaluation_feeds_what_decide_keeps() -> None:
    from shared.domain.user_state import MAX_RECENT_ITEMS
    from training.decision_eval import DECIDE_RECENT_ITEMS

    assert DECIDE_RECENT_ITEMS == MAX_RECENT_ITEMS
