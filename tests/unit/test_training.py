"""training/: loader, time split, metrics, neighbour tables, ONNX twin, build CLI, verified download.

Everything runs on a tiny synthetic folder in the ml-100k format written to tmp_path; the real
MovieLens data is never read here.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import training.movielens as ml
from shared.model import MASK_SCORE, OnnxRecommender
from training import build_model, evaluate
from training.cooccurrence import (
    CoocConfig,
    build_cooccurrence,
    build_popularity,
    build_vocab,
    dense_scores,
    encode_sequences,
    pad_histories,
    pair_counts,
    position_weights,
    top_neighbours,
)
from training.evaluate import (
    DenseRanker,
    PushCase,
    evaluate_leave_last_out,
    evaluate_push,
    leave_last_out,
    most_pop_ranker,
    push_cases,
    rank_of,
    summarize,
)
from training.onnx_export import ModelArrays, export_model

# user, item, rating, timestamp in file order; two ratings of user 1 share t=200 (file order decides).
RATINGS = [
    (1, 1, 5, 100),
    (1, 2, 4, 200),
    (2, 1, 3, 150),
    (1, 3, 5, 200),
    (2, 2, 4, 300),
    (3, 4, 2, 400),
    (1, 4, 3, 500),
    (2, 3, 5, 600),
    (3, 5, 4, 700),
    (2, 5, 1, 800),
    (3, 1, 4, 900),
    (1, 5, 2, 1000),
]
GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip


def flags(*names: str) -> str:
    return "|".join("1" if g in names else "0" for g in GENRES)


ITEM_LINES = [
    f"1|Toy Story (1995)|01-Jan-1995||http://x/1|{flags('Animation', 'Comedy')}",
    f"2|GoldenEye (1995)|01-Jan-1995||http://x/2|{flags('Action', 'Thriller')}",
    f"3|Café au lait (1996)|||http://x/3|{flags('Comedy')}",
    f"4|unknown||||{flags('unknown')}",
    f"5|Heat (1995)|15-Dec-1995||http://x/5|{flags('Crime', 'Drama')}",
]
USER_LINES = ["1|24|M|technician|85711", "2|53|F|other|94043", "3|23|M|writer|T8H1N"]
FILES = ("u.data", "u.item", "u.user", "u.genre")


def write_ml100k(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS))
    (folder / "u.item").write_bytes(("\n".join(ITEM_LINES) + "\n").encode("latin-1"))
    (folder / "u.user").write_text("\n".join(USER_LINES) + "\n")
    (folder / "u.genre").write_text("".join(f"{g}|{n}\n" for n, g in enumerate(GENRES)) + "\n")
    return folder


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return write_ml100k(tmp_path / "ml-100k")


# ---------------------------------------------------------------- loader


def test_loader_reads_every_file(data_dir: Path) -> None:
    data = ml.load_movielens(data_dir)
    inter = data.interactions
    assert len(inter) == 12
    assert inter.user.dtype == inter.timestamp.dtype == np.int64
    assert_array_equal(inter.item[:4], [1, 2, 1, 3])
    assert data.items[0] == ml.Item("1", "Toy Story (1995)", 1995, ("Animation", "Comedy"))
    assert data.items[2] == ml.Item("3", "Café au lait (1996)", 1996, ("Comedy",))  # latin-1, year from title
    assert data.items[3].year is None
    assert data.users[2] == ml.User("3", 23, "M", "writer", "T8H1N")


def test_training_data_sha256_is_sha256sum_of_the_files(data_dir: Path) -> None:
    data = ml.load_movielens(data_dir)
    digest = {n: hashlib.sha256((data_dir / n).read_bytes()).hexdigest() for n in ("u.data", "u.item")}
    assert data.file_sha256["u.data"] == digest["u.data"]
    listing = f"{digest['u.data']}  u.data\n{digest['u.item']}  u.item\n"
    assert data.training_data_sha256 == hashlib.sha256(listing.encode()).hexdigest()


def test_sequences_are_time_ordered_and_stable(data_dir: Path) -> None:
    seqs = ml.load_interactions(data_dir).sequences()
    assert {u: s.tolist() for u, s in seqs.items()} == {1: [1, 2, 3, 4, 5], 2: [1, 2, 3, 5], 3: [4, 5, 1]}


def test_missing_dataset_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ml.DatasetNotFoundError, match=r"training\.movielens download"):
        ml.load_movielens(tmp_path / "nowhere")


def test_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ml.ENV_VAR, raising=False)
    assert ml.resolve_data_dir(None) == ml.DEFAULT_DATA_DIR.resolve()
    assert ml.DEFAULT_DATA_DIR.resolve() == (ml.REPO_ROOT / ".." / "shared" / "datasets" / "ml-100k").resolve()
    monkeypatch.setenv(ml.ENV_VAR, str(tmp_path / "env"))
    assert ml.resolve_data_dir(None) == tmp_path / "env"
    assert ml.resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"


# ---------------------------------------------------------------- time split


def test_time_split_never_peeks(data_dir: Path) -> None:
    inter = ml.load_interactions(data_dir)
    train, replay = ml.time_split(inter, 0.5)
    assert len(train) + len(replay) == len(inter)
    assert train.timestamp.max() < replay.timestamp.min()
    assert ml.split_cutoff(inter, 0.5) == 500
    assert sorted(train.timestamp.tolist()) == [100, 150, 200, 200, 300, 400]


def test_time_split_ties_at_the_cutoff_go_to_replay(data_dir: Path) -> None:
    train, replay = ml.time_split(ml.load_interactions(data_dir), 0.25)  # cutoff lands on the two t=200
    assert train.timestamp.tolist() == [100, 150]
    assert (replay.timestamp == 200).sum() == 2


@pytest.mark.parametrize("quantile", [0.0, 1.0, -0.1, 1.5])
def test_time_split_rejects_bad_quantiles(data_dir: Path, quantile: float) -> None:
    with pytest.raises(ValueError, match="quantile"):
        ml.time_split(ml.load_interactions(data_dir), quantile)


# ---------------------------------------------------------------- evaluation protocol


def test_metrics_on_a_hand_computed_example() -> None:
    got = summarize([1, 3, None, 12])
    assert got["hr@5"] == got["hr@10"] == 0.5
    assert got["hr@20"] == 0.75
    assert got["ndcg@5"] == pytest.approx((1 + 1 / math.log2(4)) / 4)  # = 0.375
    assert got["ndcg@20"] == pytest.approx((1 + 0.5 + 1 / math.log2(13)) / 4)
    assert got["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 12) / 4)
    assert rank_of(["a", "b"], "b") == 2
    assert rank_of(["a"], "z") is None


def test_leave_last_out_split(data_dir: Path) -> None:
    split = leave_last_out(ml.load_interactions(data_dir))
    assert split.test == {1: "5", 2: "5", 3: "1"}
    assert split.valid == {1: "4", 2: "3", 3: "5"}
    assert split.histories == {1: ["1", "2", "3"], 2: ["1", "2"], 3: ["4"]}
    assert len(split.train) == 6


def test_leave_last_out_most_pop_by_hand(data_dir: Path) -> None:
    split = leave_last_out(ml.load_interactions(data_dir))
    vocab = build_vocab(split.train)
    assert vocab == ["<pad>", "1", "2", "3", "4"]  # item 5 never appears in train
    ranker = most_pop_ranker(encode_sequences(split.train, vocab), vocab)
    # test: users 1 and 2 want item 5 (unknown: miss); user 3 ranks 1 and 2 (tied, lower index first).
    test = evaluate_leave_last_out(ranker, split, "test")
    assert test["hr@5"] == pytest.approx(1 / 3) and test["mrr"] == pytest.approx(1 / 3)
    # valid: user 1 has only item 4 left, user 2 ranks 3 before 4 (tie), user 3 wants unknown 5.
    valid = evaluate_leave_last_out(ranker, split, "valid")
    assert valid["hr@5"] == pytest.approx(2 / 3) and valid["ndcg@10"] == pytest.approx(2 / 3)
    assert valid["users"] == 3


def test_dense_ranker_masks_history_and_breaks_ties_by_index() -> None:
    vocab = ["<pad>", "a", "b", "c", "d"]
    ranker = DenseRanker("t", vocab, lambda batch: np.tile([9.0, 1.0, 2.0, 2.0, 0.5], (len(batch), 1)))
    assert ranker.rank([[], ["b", "x"]], k=10) == [["b", "c", "a", "d"], ["c", "a", "d"]]
    assert ranker.rank([["a"]], k=1) == [["b"]]


class FixedRanker:
    name = "fixed"

    def __init__(self, order: Sequence[str]) -> None:
        self.order = list(order)

    def rank(self, histories: Sequence[Sequence[str]], k: int) -> list[list[str]]:
        return [[i for i in self.order if i not in set(h)][:k] for h in histories]


def test_push_cases_and_hits_by_hand(data_dir: Path) -> None:
    train, replay = ml.time_split(ml.load_interactions(data_dir), 0.5)
    cases = push_cases(train, replay, horizon_s=250)
    assert [(c.history[-1], sorted(c.future), c.next_item) for c in cases] == [
        ("4", [], "5"),  # user 1 @500: next rating is at 1000, outside 250 s
        ("5", [], None),
        ("3", ["5"], "5"),  # user 2 @600: item 5 at 800
        ("5", [], None),
        ("5", ["1"], "1"),  # user 3 @700: item 1 at 900
        ("1", [], None),
    ]
    assert cases[0].history == ["1", "2", "3", "4"]  # train history included
    got = evaluate_push(FixedRanker(["5", "1", "2", "3", "4"]), cases)
    assert got["push_hit@1"] == got["push_hit@10"] == got["push_reachable"] == pytest.approx(2 / 6)
    assert got["next_hr@10"] == got["next_ndcg@10"] == 1.0
    assert got["push_events"] == 6
    miss = evaluate_push(FixedRanker(["2", "4", "3"]), [PushCase(["1"], frozenset({"3"}), "3")])
    assert (miss["push_hit@1"], miss["push_hit@10"]) == (0.0, 1.0)


# ---------------------------------------------------------------- neighbour tables


def test_pair_counts_by_hand() -> None:
    counts = pair_counts({1: np.array([1, 2, 3])}, 4, window=2, distance_decay=0.5, backward_weight=0.25)
    expected = np.zeros((4, 4))
    expected[1, 2] = expected[2, 3] = 1.0
    expected[1, 3] = 0.5
    expected[2, 1] = expected[3, 2] = 0.25
    expected[3, 1] = 0.125
    assert_allclose(counts, expected)


def test_pairs_never_cross_users() -> None:
    counts = pair_counts({1: np.array([1]), 2: np.array([2])}, 3, window=5)
    assert not counts.any()


def test_top_neighbours_order_ties_and_padding() -> None:
    scores = np.array([[0, 0, 0, 0], [0, 0, 2.0, 2.0], [0, 3.0, 0, 0], [0, 0, 0, 0]])
    ids, values = top_neighbours(scores, 2)
    assert ids.tolist() == [[0, 0], [2, 3], [1, 0], [0, 0]]
    assert_allclose(values, [[0, 0], [2, 2], [3, 0], [0, 0]])


def test_position_weights_newest_weighs_one() -> None:
    assert_allclose(position_weights(3, 0.5), [0.25, 0.5, 1.0])


def test_build_cooccurrence_shapes(data_dir: Path) -> None:
    inter = ml.load_interactions(data_dir)
    vocab = build_vocab(inter)
    arrays = build_cooccurrence(encode_sequences(inter, vocab), len(vocab), CoocConfig(neighbours=3, max_history=4))
    arrays.validate()
    assert arrays.neighbour_ids.shape == arrays.neighbour_scores.shape == (6, 3)
    assert arrays.max_history == 4
    assert not arrays.neighbour_scores[0].any() and arrays.popularity_prior[0] == 0
    assert arrays.neighbour_scores.max() == pytest.approx(1.0)


def random_arrays(rng: np.random.Generator, vocab: int = 30, width: int = 5, length: int = 6) -> ModelArrays:
    ids = rng.integers(1, vocab, size=(vocab, width))
    scores = rng.random((vocab, width)).astype(np.float32)
    ids[0], scores[0] = 0, 0.0
    return ModelArrays(ids, scores, (rng.random(vocab) * 0.01).astype(np.float32), position_weights(length, 0.8))


def test_onnx_graph_matches_the_numpy_twin(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    arrays = random_arrays(rng)
    vocab = ["<pad>", *(f"m{i}" for i in range(1, 30))]
    export_model(
        tmp_path,
        arrays,
        item_vocab=vocab,
        kind="cooccurrence",
        training_data_sha256="x",
        training_window={},
        metrics={},
        code_version="t",
    )
    rec = OnnxRecommender.from_dir(tmp_path)
    histories = [list(rng.choice(vocab[1:], size=int(rng.integers(0, 9)))) for _ in range(40)]
    got = rec.score_matrix(histories)
    padded = rec.preprocess(histories)
    want = dense_scores(arrays, padded)
    masked = np.zeros_like(got, dtype=bool)
    masked[:, 0] = True
    np.put_along_axis(masked, padded, True, axis=1)
    assert_allclose(got[~masked], want[~masked], rtol=1e-5, atol=1e-6)
    assert (got[masked] == np.float32(MASK_SCORE)).all()
    top = rec.recommend(histories, k=5)
    for row, recs in enumerate(top):
        order = np.argsort(-np.where(masked[row], -np.inf, want[row]), kind="stable")[:5]
        assert [r.item_id for r in recs] == [vocab[i] for i in order]


def test_popularity_kind_ignores_history(tmp_path: Path) -> None:
    seqs = {1: np.array([1, 2, 3]), 2: np.array([3, 2]), 3: np.array([3])}
    arrays = build_popularity(seqs, 5, max_history=3)
    export_model(
        tmp_path,
        arrays,
        item_vocab=["<pad>", "a", "b", "c", "d"],
        kind="popularity",
        training_data_sha256="x",
        training_window={},
        metrics={},
        code_version="t",
    )
    rec = OnnxRecommender.from_dir(tmp_path)
    assert rec.manifest.version.startswith("pop-")
    assert [[r.item_id for r in recs] for recs in rec.recommend([[], ["c"], ["a"]], k=2)] == [
        ["c", "b"],
        ["b", "a"],
        ["c", "b"],
    ]


def test_pad_histories_keeps_the_newest() -> None:
    assert pad_histories([np.array([1, 2, 3]), np.array([], dtype=np.int64)], 2).tolist() == [[2, 3], [0, 0]]


# ---------------------------------------------------------------- build CLI


def test_build_model_end_to_end(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model"
    code = build_model.main(
        ["--data", str(data_dir), "--kind", "cooccurrence", "--split-quantile", "0.5", "--out", str(out)]
    )
    assert code == 0
    assert "model.onnx" in capsys.readouterr().out
    rec = OnnxRecommender.from_dir(out)
    manifest = rec.manifest
    assert manifest.kind == "cooccurrence"
    assert manifest.training_data_sha256 == ml.load_movielens(data_dir).training_data_sha256
    assert manifest.training_window["end"].timestamp() < 500  # nothing from the replay period
    assert manifest.item_vocab == ["<pad>", "1", "2", "3", "4"]
    assert {"push_hit@1", "push_hit@10", "popularity_push_hit@10", "next_ndcg@10"} <= set(manifest.metrics)
    assert manifest.metrics["push_events"] == 6
    assert manifest.code_version


def test_build_popularity_and_missing_data(data_dir: Path, tmp_path: Path) -> None:
    manifest = build_model.build(data_dir, "popularity", 0.5, tmp_path / "pop")
    assert manifest.kind == "popularity"
    assert build_model.main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "x")]) == 2


# ---------------------------------------------------------------- download + checksums


def make_zip(source: Path, members: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ml-100k/", "")
        for name in FILES:
            archive.write(source / name, f"ml-100k/{name}")
        for name, text in (members or {}).items():
            archive.writestr(name, text)
    return buffer.getvalue()


class FakeOpener:
    """Stands in for urllib's urlopen: returns the zip bytes and records what was asked."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.calls: list[tuple[str, float]] = []

    def __call__(self, url: str, *, timeout: float) -> Any:
        self.calls.append((url, timeout))
        return io.BytesIO(self.payload)


def expected_for(folder: Path) -> dict[str, str]:
    return {name: ml.file_sha256(folder / name) for name in FILES}


def test_download_verifies_and_extracts(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opener = FakeOpener(make_zip(data_dir))
    monkeypatch.setattr(ml, "urlopen", opener)  # the default opener, as the CLI uses it
    dest = ml.download_ml100k(tmp_path / "dl" / "ml-100k", expected=expected_for(data_dir))
    assert opener.calls == [(ml.OFFICIAL_URL, ml.DOWNLOAD_TIMEOUT_S)]
    assert sorted(p.name for p in dest.iterdir()) == sorted(FILES)
    assert len(ml.load_movielens(dest).interactions) == len(RATINGS)
    assert [p.name for p in dest.parent.iterdir()] == ["ml-100k"], "scratch folder cleaned up"
    # A second call finds the files, re-verifies them, and does not download again.
    ml.download_ml100k(dest, expected=expected_for(data_dir), opener=FakeOpener(b"unused"))


def test_download_checksum_mismatch_leaves_nothing(data_dir: Path, tmp_path: Path) -> None:
    wrong = {**expected_for(data_dir), "u.data": "0" * 64}
    dest = tmp_path / "dl" / "ml-100k"
    with pytest.raises(ml.ChecksumError, match=r"u\.data"):
        ml.download_ml100k(dest, opener=FakeOpener(make_zip(data_dir)), expected=wrong)
    assert not dest.exists()
    assert not list(dest.parent.iterdir())


def test_download_refuses_paths_outside_dest(data_dir: Path, tmp_path: Path) -> None:
    payload = make_zip(data_dir, {"ml-100k/../../evil.txt": "x"})
    with pytest.raises(ValueError, match="unsafe path"):
        ml.download_ml100k(tmp_path / "dl" / "ml-100k", opener=FakeOpener(payload), expected=expected_for(data_dir))
    assert not (tmp_path / "evil.txt").exists()


def test_pinned_checksums_cover_the_files_we_read() -> None:
    assert set(ml.TRAINING_FILES) | {"u.user", "u.genre"} <= set(ml.EXPECTED_SHA256)
    assert all(len(v) == 64 for v in ml.EXPECTED_SHA256.values())


def test_evaluate_cli_report(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    artifact = tmp_path / "artifact"
    build_model.build(data_dir, "cooccurrence", 0.8, artifact)
    out = tmp_path / "eval" / "metrics.json"
    assert evaluate.main(["--data", str(data_dir), "--artifact", str(artifact), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "WARNING" not in printed  # the artifact was trained before the replay period
    report = json.loads(out.read_text())
    assert set(report["leave_last_out"]) == {"valid", "test"}
    assert "MostPop" in report["leave_last_out"]["test"]
    loo = report["leave_last_out"]["test"]
    # The ONNX artifact and its numpy twin rank identically.
    assert loo["Co-occurrence(ONNX via OnnxRecommender)"]["mrr"] == loo["Co-occurrence(tuned, numpy)"]["mrr"]
    assert len(report["push"]) == 3
