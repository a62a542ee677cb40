"""The transformer artifact without torch: graph vs numpy reference, the wrapper's context inputs, the
shipped artifact's parity, the loaders and the time context. Torch-only checks skip without torch."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from shared.model import (
    MASK_SCORE,
    ModelLoadError,
    OnnxRecommender,
    Recommender,
    read_manifest,
    recommend_in_context,
    session_options,
)
from testkit.fakes import FakeRecommender
from testkit.tiny_model import DEFAULT_VOCAB, build_tiny_sasrec, tiny_sasrec_weights
from training.context import day_of_week, event_context, gap_bucket, hour_of_day, request_context
from training.sasrec_graph import build_sasrec_graph, reference_masked, weights_from_graph
from training.sequences import make_windows, timed_leave_last_out, user_sequences, vocab_for
from training.sources import load_archive, load_csv

pytestmark = pytest.mark.slow(seconds=8)

SHIPPED = Path(__file__).resolve().parents[2] / "layers" / "model"
T0 = 880_000_000  # 1997-11-20, inside MovieLens' period


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])


def _inputs(vocab: int, length: int, batch: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    items = np.stack([rng.choice(np.arange(1, vocab), size=length, replace=False) for _ in range(batch)])
    fill = rng.integers(0, length, size=batch)
    for row, pads in enumerate(fill):
        items[row, :pads] = 0  # left padding of varying length, including a fully padded row
    items[0, :] = 0
    times = np.where(items > 0, T0 + np.cumsum(rng.integers(0, 200_000, size=items.shape), axis=1), 0)
    now = times.max(axis=1) + rng.integers(1, 10**6, size=batch)
    return items.astype(np.int64), times.astype(np.int64), now.astype(np.int64)


@pytest.mark.parametrize("context", [True, False])
def test_graph_matches_numpy_reference(context: bool) -> None:
    weights = tiny_sasrec_weights(vocab_size=40, max_len=6, context=context)
    session = _session(build_sasrec_graph(weights, "v"))
    items, times, now = _inputs(40, 6, batch=5)
    feeds = {"item_ids": items, "k": np.asarray([10])}
    if context:
        feeds |= {"timestamps": times, "now": now}
    top_ids, top_scores, scores = session.run(["top_ids", "top_scores", "scores"], feeds)
    expected = reference_masked(weights, items, times, now)
    assert np.abs(scores - expected).max() <= 1e-4
    assert_array_equal(top_ids, np.argsort(-expected, axis=1, kind="stable")[:, :10])
    assert (top_scores > MASK_SCORE / 2).all()


def test_graph_round_trips_its_weights() -> None:
    weights = tiny_sasrec_weights(vocab_size=20, max_len=5)
    again = weights_from_graph(build_sasrec_graph(weights, "v"))
    assert again.digest() == weights.digest() or all(
        np.allclose(a, b, atol=1e-6) for (_, a), (_, b) in zip(again.arrays(), weights.arrays(), strict=True)
    )


def test_time_context_by_hand() -> None:
    at = datetime.fromtimestamp(T0, UTC)  # 1997-11-20 04:26:40 UTC, a Thursday
    ts = np.asarray([T0])
    assert hour_of_day(ts)[0] == at.hour == 4
    assert day_of_week(ts)[0] == at.weekday() == 3
    assert_array_equal(gap_bucket(np.asarray([-5, 0, 1, 2, 3, 1023, 10**12])), [0, 0, 1, 1, 2, 10, 31])
    _, _, gap = event_context(np.asarray([[0, 0, T0, T0 + 4]]))
    assert gap[0, 2] == 29 and gap[0, 3] == 2  # first real item: no previous event
    assert request_context(np.asarray([T0]), np.asarray([T0 + 3600]))[0][0] == 5


def test_wrapper_feeds_context_and_masks_history(tmp_path: Path) -> None:
    rec = OnnxRecommender.from_dir(build_tiny_sasrec(tmp_path))
    assert rec.uses_context
    names = [spec.name for spec in rec.manifest.inputs]
    assert names == ["item_ids", "timestamps", "now", "k"]
    (out,) = rec.recommend([["i1", "i2"]], k=10, timestamps=[[T0, T0 + 60]], now=T0 + 120)
    assert {r.item_id for r in out} == set(DEFAULT_VOCAB) - {"i1", "i2"}
    # The times matter, and unknown ids are dropped together with their timestamps.
    (later,) = rec.recommend([["i1", "i2"]], k=10, timestamps=[[T0, T0 + 60]], now=T0 + 10**7)
    (noisy,) = rec.recommend([["i1", "zz", "i2"]], k=10, timestamps=[[T0, 1, T0 + 60]], now=T0 + 120)
    assert [r.score for r in out] != [r.score for r in later]
    assert noisy == out
    with pytest.raises(ValueError, match="timestamps"):
        rec.recommend([["i1", "i2"]], k=3, timestamps=[[T0]], now=T0)
    # Without times the wrapper still answers (every item "now").
    assert len(rec.recommend([["i1"]], k=3)[0]) == 3


def test_recommend_in_context_keeps_plain_recommenders_working(tmp_path: Path) -> None:
    fake = FakeRecommender([("a", 3.0), ("b", 2.0), ("c", 1.0)])
    assert isinstance(fake, Recommender)
    assert [r.item_id for r in recommend_in_context(fake, [["a"]], 2, [[T0]], T0)[0]] == ["b", "c"]
    rec = OnnxRecommender.from_dir(build_tiny_sasrec(tmp_path))
    direct = rec.recommend([["i1"]], 3, timestamps=[[T0]], now=T0 + 5)
    assert recommend_in_context(rec, [["i1"]], 3, [[T0]], T0 + 5) == direct


def test_int8_artifact_loads_and_agrees(tmp_path: Path) -> None:
    fp32 = OnnxRecommender.from_dir(build_tiny_sasrec(tmp_path / "fp32"))
    int8 = OnnxRecommender.from_dir(build_tiny_sasrec(tmp_path / "int8", int8=True))
    assert int8.manifest.version.startswith("sasrec-int8-")
    a = fp32.score_matrix([["i1", "i3"]], [[T0, T0 + 9]], T0 + 99)
    b = int8.score_matrix([["i1", "i3"]], [[T0, T0 + 9]], T0 + 99)
    assert np.abs(a - b).max() < 0.5  # int8 is approximate; exact parity is the fp32 graph's job


def test_context_inputs_must_come_together(tmp_path: Path) -> None:
    model_dir = build_tiny_sasrec(tmp_path)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["inputs"] = [spec for spec in manifest["inputs"] if spec["name"] != "now"]
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="together"):
        OnnxRecommender.from_dir(model_dir)


def _committed_transformers() -> list[Path]:
    """Every committed fp32 transformer under layers/model (the default artifact there is co-occurrence;
    an ``int8`` twin is checked beside its fp32 graph, not on its own)."""
    found = (manifest.parent for manifest in sorted(SHIPPED.rglob("manifest.json")))
    return [where for where in found if where.name != "int8" and read_manifest(where).kind == "sasrec"]


TRANSFORMERS = _committed_transformers()


def test_the_served_transformer_is_committed() -> None:
    assert SHIPPED / "sasrec" in TRANSFORMERS
    assert read_manifest(SHIPPED / "sasrec" / "int8").kind == "sasrec"


@pytest.mark.parametrize("where", TRANSFORMERS, ids=[str(where.relative_to(SHIPPED)) for where in TRANSFORMERS])
def test_shipped_artifact_matches_its_reference(where: Path) -> None:
    """CI parity for the committed graph: ORT vs the numpy forward of the graph's own weights."""
    manifest = read_manifest(where)
    model = onnx.load_model(where / "model.onnx")
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    weights = weights_from_graph(model)
    items, times, now = _inputs(weights.vocab_size, weights.max_len, batch=32)
    feeds = {"item_ids": items, "timestamps": times, "now": now, "k": np.asarray([10])}
    feeds = {k: v for k, v in feeds.items() if manifest.input(k) is not None}
    top_ids, scores = _session(model).run(["top_ids", "scores"], feeds)
    expected = reference_masked(weights, items, times, now)
    assert np.abs(scores - expected).max() <= 1e-4
    assert_array_equal(top_ids, np.argsort(-expected, axis=1, kind="stable")[:, :10])
    int8_dir = where / "int8"
    if int8_dir.is_dir():
        assert OnnxRecommender.from_dir(int8_dir).manifest.item_vocab == manifest.item_vocab


@pytest.mark.parametrize("where", [w for w in TRANSFORMERS if (w / "int8").is_dir()])
def test_shipped_int8_stays_close_to_its_fp32_reference(where: Path) -> None:
    """Numeric parity for what decide serves: the int8 graph against the numpy forward of the fp32
    weights. Tolerances from the shipped model (max 0.12, mean 0.018 on score spreads of about 20;
    top-10 overlap 9.8 of 10 on average): loose enough for quantisation, tight enough that a broken
    export or mismatched twin fails."""
    weights = weights_from_graph(onnx.load_model(where / "model.onnx"))
    int8 = onnx.load_model(where / "int8" / "model.onnx")
    names = {i.name for i in int8.graph.input}
    for seed in (1, 2):
        items, times, now = _inputs(weights.vocab_size, weights.max_len, batch=32, seed=seed)
        feeds = {"item_ids": items, "timestamps": times, "now": now, "k": np.asarray([10])}
        top_ids, scores = _session(int8).run(["top_ids", "scores"], {k: v for k, v in feeds.items() if k in names})
        expected = reference_masked(weights, items, times, now)
        known = expected > -1e8
        assert_array_equal(scores > -1e8, known)  # the same items masked (history, padding)
        error = np.abs(scores - expected)[known]
        assert error.max() <= 0.25 and error.mean() <= 0.05
        reference_top = np.argsort(-expected, axis=1, kind="stable")[:, :10]
        overlap = [len(set(a) & set(b)) for a, b in zip(top_ids.tolist(), reference_top.tolist(), strict=True)]
        assert min(overlap) >= 8 and np.mean(overlap) >= 9.5


def test_windows_cover_every_target_once() -> None:
    from training.movielens import Interactions

    n = 12
    log = Interactions(
        user=np.ones(n, dtype=np.int64),
        item=np.arange(1, n + 1, dtype=np.int64),
        rating=np.ones(n, dtype=np.int64),
        timestamp=np.arange(n, dtype=np.int64) * 100 + T0,
    )
    vocab, lookup = vocab_for(["", *(f"m{i}" for i in range(1, n + 1))], np.arange(1, n + 1))
    split = timed_leave_last_out(user_sequences(log, lookup))
    assert split.valid[1][0] == n - 1 and split.test[1][0] == n
    windows = make_windows(list(split.train.values()), length=4)
    targets = windows.targets[windows.targets > 0]
    assert sorted(targets.tolist()) == list(range(2, n - 1))
    # Each window also knows the user's items before it (for the training softmax's history mask).
    for inputs, before in zip(windows.items, windows.before, strict=True):
        first = int(inputs[inputs > 0][0])
        assert before[before > 0].tolist() == list(range(1, first))
    assert vocab[0] == "<pad>" and len(vocab) == n + 1


def test_csv_and_archive_sources(tmp_path: Path) -> None:
    csv_path = tmp_path / "log.csv"
    csv_path.write_text(
        "user_id,item_id,timestamp,title,genres\n"
        "u1,b,1000,Beta (1999),Drama|Comedy\nu1,a,2000,Alpha,\nu2,b,1997-11-20T00:00:00Z,,\n"
    )
    data = load_csv(csv_path)
    assert data.item_ids == ["", "a", "b"]
    assert data.catalog["b"].genres == ("Drama", "Comedy") and data.catalog["a"].title == "Alpha"
    assert data.interactions.timestamp.tolist() == [1000, 2000, int(datetime(1997, 11, 20, tzinfo=UTC).timestamp())]

    folder = tmp_path / "archive" / "dt=2026-01-01"
    folder.mkdir(parents=True)
    lines = [
        {"event": {"type": "view", "user_id": "u1", "item_id": "x", "timestamp": "2026-01-01T00:00:05+00:00"}},
        {"event": {"type": "opened", "user_id": "u1", "decision_id": "d", "timestamp": "2026-01-01T00:00:06Z"}},
        {"event": {"type": "purchase", "user_id": "u2", "item_id": "y", "timestamp": "2026-01-01T00:00:07Z"}},
    ]
    (folder / "0-1-3.jsonl.gz").write_bytes(gzip.compress("\n".join(json.dumps(x) for x in lines).encode()))
    archive = load_archive(str(tmp_path / "archive"))
    assert archive.item_ids == ["", "x", "y"] and len(archive.interactions) == 2


def test_torch_model_matches_reference() -> None:
    torch = pytest.importorskip("torch")
    from training.sasrec import context_inputs, from_weights

    weights = tiny_sasrec_weights(vocab_size=30, max_len=5)
    items, times, now = _inputs(30, 5, batch=4)
    scores = from_weights(weights).scores(torch.as_tensor(items), context_inputs(items, times, now)).numpy()
    from training.sasrec_graph import reference_scores

    assert_allclose(scores[:, 1:], reference_scores(weights, items, times, now)[:, 1:], atol=1e-4)


def test_tiny_training_run_learns() -> None:
    torch = pytest.importorskip("torch")
    from training.sasrec import SasrecConfig, rank_metrics, train
    from training.sequences import UserSeq

    torch.set_num_threads(1)
    # Item i is always followed by i + 1: a transformer must learn that in a few epochs.
    seqs = [UserSeq(np.arange(s, s + 8) % 20 + 1, T0 + np.arange(8) * 60) for s in range(40)]
    windows = make_windows(seqs, length=6)
    cfg = SasrecConfig(max_len=6, dim=16, heads=1, dropout=0.0, epochs=150, lr=0.01, content=False, batch_size=64)
    model, info = train(cfg, windows, 21, None, np.ones(21, dtype=bool), validate=None, log=lambda _: None)
    from training.sasrec import rank_targets

    histories = [UserSeq(s.items[:-1], s.times[:-1]) for s in seqs]
    ranks = rank_targets(model, histories, [int(s.times[-1]) for s in seqs], [int(s.items[-1]) for s in seqs])
    assert rank_metrics(ranks)["HR@5"] > 0.8
    assert info["train_seconds"] < 30


def _tiny_batch() -> dict[str, Any]:
    import torch

    items = torch.tensor([[0, 1, 2, 3, 4], [5, 6, 2, 2, 8]])
    targets = torch.tensor([[1, 2, 3, 4, 2], [6, 2, 2, 8, 9]])  # repeats: a seen item can be the target
    zero = torch.zeros_like(items)
    before = torch.tensor([[0, 0], [4, 3]])  # the second user had items 4 and 3 before this window
    context = {k: zero for k in ("hour", "dow", "gap", "q_hour", "q_dow", "q_gap")}
    return {"items": items, "targets": targets, "before": before, **context}


@pytest.mark.parametrize("history", [False, True])
def test_training_softmax_leaves_out_seen_and_cold_items(history: bool) -> None:
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from training.sasrec import NEG, SASRec, SasrecConfig

    torch.manual_seed(0)
    has_id = np.ones(10, dtype=bool)
    has_id[7] = False  # no training data: never a competitor
    cfg = SasrecConfig(
        max_len=5, dim=8, content=False, context=False, mask_seen=True, mask_history=history, dropout=0.0
    )
    model = SASRec(cfg, 10, None, has_id)
    batch = _tiny_batch()
    loss = model.loss(batch)
    loss.backward()  # type: ignore[no-untyped-call]
    grad = model.id_emb.weight.grad.clone()  # type: ignore[union-attr]
    model.zero_grad()
    # The same loss with the mask spelled out position by position.
    items, targets = batch["items"], batch["targets"]
    table = model.item_table()
    h = model.query(model.hidden(table, items, batch), batch)
    keep = targets != 0
    logits = h[keep] @ table.T
    mask = torch.zeros_like(logits, dtype=torch.bool)
    for row, (b, t) in enumerate(keep.nonzero().tolist()):
        mask[row, items[b, : t + 1]] = True
        if history:
            mask[row, batch["before"][b]] = True
        mask[row, targets[b, t]] = False
    mask[:, [0, 7]] = True
    expected = F.cross_entropy(logits.masked_fill(mask, NEG), targets[keep])
    expected.backward()  # type: ignore[no-untyped-call]
    assert abs(loss.item() - expected.item()) < 1e-5
    assert_allclose(grad.numpy(), model.id_emb.weight.grad.numpy(), atol=1e-6)  # type: ignore[union-attr]


def test_cold_items_get_a_content_predicted_id_vector() -> None:
    torch = pytest.importorskip("torch")
    from training.sasrec import SASRec, SasrecConfig

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    content = rng.random((12, 5)).astype(np.float32)
    content[0] = 0.0
    has_id = np.ones(12, dtype=bool)
    has_id[[0, 3, 9]] = False  # padding and two cold items
    model = SASRec(SasrecConfig(max_len=4, dim=6, dropout=0.0), 12, content, has_id).eval()
    before = model.item_table().detach().clone()
    with torch.no_grad():  # make the id table an exact linear function of content on warm items
        true_map = torch.as_tensor(rng.normal(size=(5, 6)), dtype=torch.float32)
        model.id_emb.weight.copy_(torch.as_tensor(content) @ true_map)
    assert model.fill_cold_ids(ridge=1e-6) == 2
    after = model.item_table().detach()
    expected = torch.as_tensor(content[[3, 9]]) @ true_map
    assert_allclose(model.id_emb.weight[[3, 9]].detach().numpy(), expected.numpy(), atol=1e-3)
    assert_allclose(after[[3, 9]].numpy(), (before[[3, 9]] + expected).numpy(), atol=1e-3)
    assert float(after[0].abs().max()) == 0.0  # padding stays zero
    assert model.fill_cold_ids() == 0  # nothing cold any more


def test_cold_loss_scores_each_target_by_its_content_alone() -> None:
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from training.sasrec import NEG, SASRec, SasrecConfig

    rng = np.random.default_rng(0)
    content = rng.random((10, 4)).astype(np.float32)
    has_id = np.ones(10, dtype=bool)
    has_id[7] = False
    batch = _tiny_batch()
    cfg = SasrecConfig(max_len=5, dim=8, context=False, dropout=0.0, id_dropout=0.0, cold_loss=0.5)
    torch.manual_seed(0)
    model = SASRec(cfg, 10, content, has_id)
    loss = model.loss(batch)
    # By hand: the main term, plus 0.5 x a softmax where the target's logit comes from its content vector
    # only and every warm item competes twice, with its full vector and with its content vector alone.
    table = model.item_table()
    h = model.query(model.hidden(table, batch["items"], batch), batch)
    keep = batch["targets"] != 0
    h, tgt = h[keep], batch["targets"][keep]
    out = torch.as_tensor(~has_id)[None, :] | (torch.arange(10) == 0)[None, :]  # padding, the cold item
    logits = (h @ table.T).masked_fill(out, NEG)
    assert model.content_mlp is not None
    alone = (h @ model.content_mlp().T).masked_fill(out, NEG)
    rows = torch.arange(len(tgt))
    cold_logits = logits.clone()
    cold_logits[rows, tgt] = alone[rows, tgt]
    alone[rows, tgt] = NEG
    expected = F.cross_entropy(logits, tgt) + 0.5 * F.cross_entropy(torch.cat([cold_logits, alone], dim=1), tgt)
    assert abs(loss.item() - expected.item()) < 1e-5
    # Without the content-only competitors: the target's column alone changes.
    torch.manual_seed(0)
    cfg_target_only = SasrecConfig(
        max_len=5, dim=8, context=False, dropout=0.0, id_dropout=0.0, cold_loss=0.5, cold_negatives=False
    )
    target_only = SASRec(cfg_target_only, 10, content, has_id).loss(batch)
    expected = F.cross_entropy(logits, tgt) + 0.5 * F.cross_entropy(cold_logits, tgt)
    assert abs(target_only.item() - expected.item()) < 1e-5
    # The extra term is what the option adds: without it the loss is the main term alone.
    torch.manual_seed(0)
    plain = SASRec(SasrecConfig(max_len=5, dim=8, context=False, dropout=0.0, id_dropout=0.0), 10, content, has_id)
    assert abs(plain.loss(batch).item() - F.cross_entropy(logits, tgt).item()) < 1e-5
    assert loss.item() > plain.loss(batch).item()


def test_year_matrix_marks_the_newest_years_only() -> None:
    from training.content import CatalogItem, year_matrix

    catalog = {
        "1": CatalogItem("1", "Old (1950)", year=1950),
        "2": CatalogItem("2", "New (1998)", year=1998),
        "3": CatalogItem("3", "Recent (1995)", year=1995),
        "4": CatalogItem("4", "Unknown"),
    }
    out = year_matrix(["<pad>", "1", "2", "3", "4", "5"], catalog, recent=4)  # 1995 .. 1998
    assert out.shape == (6, 4)
    assert_array_equal(out[2], [0, 0, 0, 1])
    assert_array_equal(out[3], [1, 0, 0, 0])
    assert float(out[[0, 1, 4, 5]].sum()) == 0.0  # padding, older, no year, not in the catalogue


def test_cold_loss_teaches_the_content_path_to_rank_an_unseen_item() -> None:
    torch = pytest.importorskip("torch")
    from training.sasrec import SasrecConfig, rank_targets, train
    from training.sequences import UserSeq

    torch.set_num_threads(1)
    # Two kinds of items (odd, even); a user stays on one kind. Items 1 and 2 never appear in training:
    # only their content (the kind) says which users want them.
    rng = np.random.default_rng(0)
    content = np.zeros((23, 2), dtype=np.float32)
    content[1:, 0] = np.arange(1, 23) % 2
    content[1:, 1] = 1 - content[1:, 0]
    seqs = []
    for user in range(120):
        kind = user % 2
        pool = [i for i in range(3, 23) if i % 2 == kind]
        seqs.append(UserSeq(rng.choice(pool, size=8), T0 + np.arange(8) * 60))
    has_id = np.ones(23, dtype=bool)
    has_id[[1, 2]] = False
    windows = make_windows(seqs, length=6)
    histories = [UserSeq(s.items[:4], s.times[:4]) for s in seqs]
    now = [int(s.times[3]) for s in seqs]
    targets = [1 if user % 2 == 1 else 2 for user in range(120)]  # the user's kind's cold item

    def cold_rank(cold_loss: float) -> float:
        cfg = SasrecConfig(
            max_len=6, dim=8, dropout=0.0, epochs=30, lr=0.01, context=False, batch_size=64, cold_loss=cold_loss
        )
        model, _ = train(cfg, windows, 23, content, has_id, validate=None, log=lambda _: None)
        return float(np.mean(rank_targets(model, histories, now, targets)))

    # Measured: 1.0 with the term (every cold item ranked first for its users), 4.3 without.
    assert cold_rank(1.0) < 1.5 < 3.0 < cold_rank(0.0)


def test_learning_rate_warmup_and_cosine() -> None:
    torch = pytest.importorskip("torch")
    from training.sasrec import SasrecConfig, train
    from training.sequences import UserSeq

    torch.set_num_threads(1)
    seqs = [UserSeq(np.arange(s, s + 5) % 8 + 1, T0 + np.arange(5) * 60) for s in range(8)]
    cfg = SasrecConfig(max_len=4, dim=8, epochs=3, warmup_epochs=1, cosine=True, content=False, batch_size=4)
    model, info = train(cfg, make_windows(seqs, 4), 9, None, np.ones(9, dtype=bool), log=lambda _: None)
    assert info["best_epoch"] == 3.0 and not model.training


def test_evaluate_artifacts_writes_the_issue_shape(tmp_path: Path) -> None:
    from tests.unit.test_training import write_ml100k
    from training import evaluate_artifacts

    data = write_ml100k(tmp_path / "ml-100k")
    model = build_tiny_sasrec(tmp_path / "model", vocab=["1", "2", "3", "4", "5"])
    out = tmp_path / "eval" / "metrics.json"
    assert evaluate_artifacts.main(["--data", str(data), "--artifact", str(model), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    shipped = report["shipped"]
    assert shipped.startswith("sasrec-") and set(report["artifacts"]) == {shipped}
    for split in ("test", "valid"):
        assert {"HR@10", "NDCG@10", "HR@5", "NDCG@20", "MRR"} <= set(report["artifacts"][shipped][split])
    assert set(report["baselines"]) == {"MostPop", "Transition(last item)", "Co-occurrence(tuned)"}
    assert 0.0 <= report["baselines"]["MostPop"]["test"]["HR@10"] <= 1.0


def test_train_cli_end_to_end_tiny(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from tests.unit.test_training import write_ml100k
    from training import build_model, train_sasrec

    data = write_ml100k(tmp_path / "ml-100k")
    tiny = ["--data", str(data), "--epochs", "2", "--dim", "8", "--max-len", "4"]
    fp32, int8, report = tmp_path / "fp32", tmp_path / "int8", tmp_path / "report.json"
    args = [*tiny, "--seeds", "0", "1", "--out", str(fp32), "--int8-out", str(int8), "--report", str(report)]
    assert train_sasrec.main(args) == 0
    manifest = read_manifest(fp32)
    assert manifest.kind == "sasrec" and manifest.item_vocab == ["<pad>", "1", "2", "3", "4", "5"]
    assert {"test_NDCG@10", "seeds_test_NDCG@10_mean", "train_seconds"} <= set(manifest.metrics)
    assert read_manifest(int8).version.startswith("sasrec-int8-")
    written = json.loads(report.read_text())
    assert written["seeds"]["+ content + context"]["test"]["HR@10"]["std"] >= 0.0
    # Validation checks are in the report as they happen, and decision time is what test means.
    runs = written["seeds"]["+ content + context"]["runs"]
    assert all(run["checks"] and run["checks"][-1]["epoch"] == 2.0 for run in runs)
    assert {"test", "valid", "test_plus_1h", "test_target_time"} <= set(runs[0])
    assert {"test_plus_1h_NDCG@10", "test_target_time_NDCG@10", "cooc_weight"} <= set(manifest.metrics)
    assert written["recipe"]["chosen"]["epochs"] == 2  # the flag wins over the sized recipe
    # What ships is what was measured: the graph carries the fused co-occurrence weight, and the ONNX
    # artifact scores exactly what the torch model scored.
    graph = weights_from_graph(onnx.load_model(fp32 / "model.onnx"))
    assert graph.cooc_weight == pytest.approx(manifest.metrics["cooc_weight"])
    assert graph.has_cooc, "the tiny data's validation picks a fused weight"
    best = max(runs, key=lambda run: run["valid"]["NDCG@10"])
    for key in ("test", "test_plus_1h", "test_target_time"):
        assert manifest.metrics[f"{key}_NDCG@10"] == pytest.approx(best[key]["NDCG@10"], abs=1e-6)
    # The demo's entry point trains the same model on the earliest share of time.
    split_dir = tmp_path / "split"
    assert (
        build_model.main(
            [
                "--data",
                str(data),
                "--kind",
                "sasrec",
                "--split-quantile",
                "0.8",
                "--out",
                str(split_dir),
                "--epochs",
                "2",
            ]
        )
        == 0
    )
    assert read_manifest(split_dir).metrics["split_quantile"] == 0.8


def test_cold_item_options_reach_the_model(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from tests.unit.test_training import write_ml100k
    from training import train_sasrec
    from training.sources import load_source

    data = write_ml100k(tmp_path / "ml-100k")
    dataset = load_source("movielens", str(data))
    plain = train_sasrec.prepare(dataset)
    with_years = train_sasrec.prepare(dataset, years=True)
    assert with_years.content.shape[1] > plain.content.shape[1]
    # Text vectors by item id, in vocabulary order; items the file does not list get zeros.
    vectors = tmp_path / "text.npz"
    np.savez(vectors, item_ids=np.asarray(["3", "1", "99"]), vectors=np.arange(9, dtype=np.float32).reshape(3, 3))
    assert_array_equal(
        train_sasrec.vectors_by_item(plain.vocab, vectors)[:4], [[0, 0, 0], [3, 4, 5], [0, 0, 0], [0, 1, 2]]
    )
    with_text = train_sasrec.prepare(dataset, text_vectors=vectors)
    assert with_text.content.shape[1] == plain.content.shape[1] + 3
    report = tmp_path / "report.json"
    args = ["--data", str(data), "--epochs", "1", "--dim", "8", "--max-len", "4", "--report", str(report)]
    cold = ["--cold-loss", "0.5", "--no-cold-negatives", "--content-years", "--content-text-vectors", str(vectors)]
    assert train_sasrec.main([*args, *cold]) == 0
    config = json.loads(report.read_text())["config"]
    assert config["cfg_cold_loss"] == 0.5 and config["cfg_cold_negatives"] == 0.0
    assert train_sasrec.main(args) == 0
    assert json.loads(report.read_text())["config"]["cfg_cold_loss"] == 0.0  # off by default


# ---------------------------------------------------------------- decision time, co-occurrence fusion, recipe


def test_request_times() -> None:
    from training.sequences import DECISION, PLUS_1H, TARGET_TIME, request_time

    times = np.asarray([T0, T0 + 50])
    assert request_time(times, T0 + 9_000, DECISION) == T0 + 50
    assert request_time(times, T0 + 9_000, PLUS_1H) == T0 + 50 + 3600
    assert request_time(times, T0 + 9_000, TARGET_TIME) == T0 + 9_000
    with pytest.raises(ValueError, match="request mode"):
        request_time(times, T0, "tomorrow")


def _cooc_arrays(vocab_size: int, max_len: int) -> Any:
    from training.cooccurrence import CoocConfig, build_cooccurrence

    rng = np.random.default_rng(4)
    sequences = {u: rng.integers(1, vocab_size, size=15) for u in range(25)}
    return build_cooccurrence(sequences, vocab_size, CoocConfig(max_history=max_len, neighbours=6))


def test_fused_graph_matches_reference_and_round_trips() -> None:
    from training.sasrec_graph import COOC_EPS, cooc_scores, reference_scores

    weights = tiny_sasrec_weights(vocab_size=40, max_len=6)
    cooc = _cooc_arrays(40, 6)
    fused = weights.with_cooc(cooc, 0.7)
    items, times, now = _inputs(40, 6, batch=5)
    scores = _session(build_sasrec_graph(fused, "v")).run(
        ["scores"], {"item_ids": items, "timestamps": times, "now": now, "k": np.asarray([5])}
    )[0]
    expected = reference_masked(fused, items, times, now)
    assert np.abs(scores - expected).max() <= 1e-4
    # The fused score is the transformer's plus weight * log(eps + co-occurrence), term by term.
    plain = reference_scores(weights, items, times, now)
    assert_allclose(
        reference_scores(fused, items, times, now) - plain, 0.7 * np.log(COOC_EPS + cooc_scores(cooc, items))
    )
    again = weights_from_graph(build_sasrec_graph(fused, "v"))
    assert again.cooc_weight == pytest.approx(0.7) and again.cooc is not None
    assert_array_equal(again.cooc.neighbour_ids, cooc.neighbour_ids)
    assert weights.with_cooc(cooc, 0.0).cooc is None  # weight 0: the plain graph
    with pytest.raises(ValueError, match="vocabulary"):
        weights.with_cooc(_cooc_arrays(41, 6), 1.0)


def test_fused_torch_model_matches_reference() -> None:
    torch = pytest.importorskip("torch")
    from training.sasrec import context_inputs, from_weights
    from training.sasrec_graph import reference_scores

    fused = tiny_sasrec_weights(vocab_size=30, max_len=5).with_cooc(_cooc_arrays(30, 5), 1.3)
    items, times, now = _inputs(30, 5, batch=4)
    scores = from_weights(fused).scores(torch.as_tensor(items), context_inputs(items, times, now)).numpy()
    assert_allclose(scores[:, 1:], reference_scores(fused, items, times, now)[:, 1:], atol=1e-4)


def test_overlapping_windows_teach_each_target_once_with_more_context() -> None:
    from training.sequences import UserSeq

    seq = UserSeq(np.arange(1, 13), T0 + np.arange(12) * 10)
    windows = make_windows([seq], length=4, stride=2)
    assert sorted(windows.targets[windows.targets > 0].tolist()) == list(range(2, 13))
    for inputs, targets in zip(windows.items, windows.targets, strict=True):
        kept = np.flatnonzero(targets)
        if inputs[0] != 0:  # not the sequence's oldest window: only its newest `stride` targets count
            assert kept.tolist() == [2, 3]
    with pytest.raises(ValueError, match="stride"):
        make_windows([seq], length=4, stride=5)


def test_future_items_and_tie_shuffling() -> None:
    from training.sequences import UserSeq, future_items, shuffle_ties

    seq = UserSeq(np.arange(1, 7), np.asarray([0, 10, 20, 5_000, 5_000, 5_000]) + T0)
    ahead = future_items(seq, 2, horizon_s=100)
    assert ahead.tolist() == [[2, 3], [3, 0], [0, 0], [5, 6], [6, 0], [0, 0]]
    windows = make_windows([seq], length=6, future=2, horizon_s=100)
    assert windows.future.shape == (1, 6, 2) and windows.future[0, -2].tolist() == [6, 0]  # target 5, then 6
    shuffled = {tuple(shuffle_ties([seq], np.random.default_rng(s))[0].items[3:].tolist()) for s in range(20)}
    assert len(shuffled) > 1 and all(sorted(order) == [4, 5, 6] for order in shuffled)
    assert all(
        shuffle_ties([seq], np.random.default_rng(s))[0].items[:3].tolist() == [1, 2, 3] for s in range(5)
    )  # distinct times keep their order


def test_multi_positive_and_sampled_losses() -> None:
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from training.sasrec import NEG, SASRec, SasrecConfig

    torch.manual_seed(0)
    cfg = SasrecConfig(max_len=5, dim=8, content=False, context=False, dropout=0.0, future=2, future_weight=0.5)
    model = SASRec(cfg, 10, None, np.ones(10, dtype=bool))
    batch = _tiny_batch()
    batch["future"] = torch.zeros((2, 5, 2), dtype=torch.int64)
    # No later items: exactly the plain next-item cross-entropy.
    plain = SASRec(replace_cfg(cfg, future=0), 10, None, np.ones(10, dtype=bool))
    plain.load_state_dict(model.state_dict())
    assert abs(model.loss(batch).item() - plain.loss(batch).item()) < 1e-6
    # With later items: they leave the negatives, and each is a target of its own at half weight.
    batch["future"][0, 1, 0] = 7
    table = model.item_table()
    h = model.query(model.hidden(table, batch["items"], batch), batch)
    keep = batch["targets"] != 0
    logits = (h[keep] @ table.T).masked_fill(
        torch.zeros(10, dtype=torch.bool).index_fill(0, torch.tensor([0]), True), NEG
    )
    row = int(keep[0, :1].sum())  # the step (0, 1) is the second kept row of user 0
    negatives = logits.clone()
    negatives[torch.arange(len(logits)), batch["targets"][keep]] = NEG
    negatives[row, 7] = NEG
    rest = torch.logsumexp(negatives, dim=1)
    own = logits.gather(1, batch["targets"][keep][:, None])[:, 0]
    expected = F.softplus(rest - own).mean() + 0.5 * F.softplus(rest[row] - logits[row, 7])
    assert abs(model.loss(batch).item() - expected.item()) < 1e-5
    # Sampled softmax: the target against uniform draws from the warm catalogue.
    sampled = SASRec(replace_cfg(cfg, future=0, negatives=4), 10, None, np.ones(10, dtype=bool))
    value = sampled.loss(batch)
    value.backward()  # type: ignore[no-untyped-call]
    assert torch.isfinite(value) and value.item() > 0


def replace_cfg(cfg: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(cfg, **changes)


def test_recipe_sizes_itself_from_the_data() -> None:
    from training.recipe import FULL_SOFTMAX_MAX_ITEMS, DataShape, auto_config

    movielens = auto_config(DataShape(943, 1682, 1678, 3564, 97171, timed=True, content=True))  # stride 25
    assert (movielens.batch_size, movielens.epochs, movielens.eval_every, movielens.patience) == (128, 80, 2, 6)
    assert movielens.negatives == 0 and movielens.context and movielens.content
    yelp = auto_config(DataShape(30431, 20033, 20019, 30790, 225061, timed=False, content=True))
    assert yelp.batch_size == 256 and yelp.negatives > 0 and not yelp.context and 12 <= yelp.epochs < movielens.epochs
    small = auto_config(DataShape(10, 50, 50, 10, 40, timed=True, content=False))
    assert small.negatives == 0 and not small.content and FULL_SOFTMAX_MAX_ITEMS >= 50


def test_sequences_source_reads_the_yelp_format(tmp_path: Path) -> None:
    from training.sources import UNTIMED_EPOCH, UNTIMED_STEP_S, load_source

    (tmp_path / "shop.txt").write_text("1 10 11 10\n2 11 12\n")
    (tmp_path / "shop_item2attributes.json").write_text('{"10": [1, 2], "11": [2], "12": []}')
    data = load_source("sequences", tmp_path)
    assert not data.timed and data.item_ids == ["", "10", "11", "12"]
    assert data.catalog["10"].genres == ("attr1", "attr2") and data.catalog["12"].genres == ()
    assert data.interactions.item.tolist() == [1, 2, 1, 2, 3]
    assert data.interactions.timestamp.tolist() == [UNTIMED_EPOCH + k * UNTIMED_STEP_S for k in (0, 1, 2, 0, 1)]
    (tmp_path / "other.txt").write_text("3 10\n")
    with pytest.raises(ValueError, match="one"):
        load_source("sequences", tmp_path)


YELP = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "yelp"


def test_sequences_source_agrees_with_the_yelp_csv() -> None:
    if not (YELP / "yelp.txt").is_file() or not (YELP / "yelp.csv").is_file():
        pytest.skip(f"Yelp sequences not found in {YELP} (see the data set's README; never committed)")
    from training.sources import load_source

    text, table = load_source("sequences", YELP / "yelp.txt"), load_source("csv", YELP / "yelp.csv")
    assert len(text.interactions) == len(table.interactions) == 316_354
    assert_array_equal(text.interactions.timestamp, table.interactions.timestamp)
    assert_array_equal(
        np.asarray(text.item_ids, dtype=object)[text.interactions.item],
        np.asarray(table.item_ids, dtype=object)[table.interactions.item],
    )
    assert len(text.item_ids) - 1 == 20_033 and sum(1 for item in text.catalog.values() if item.genres) >= 20_000


def test_trimmed_batches_compute_the_same() -> None:
    """Cutting the all-padding columns changes nothing: positions are right-aligned."""
    torch = pytest.importorskip("torch")
    from training.sasrec import SASRec, SasrecConfig, context_inputs, window_batch
    from training.sequences import UserSeq, length_batches

    torch.manual_seed(0)
    seqs = [UserSeq(np.arange(1, n + 1) % 11 + 1, T0 + np.arange(n) * 7_000) for n in (3, 5, 4)]
    windows = make_windows(seqs, length=8)
    trimmed = windows.trimmed()
    assert trimmed.items.shape[1] == 4 and windows.items.shape[1] == 8
    cfg = SasrecConfig(max_len=8, dim=8, dropout=0.0, content=False, mask_seen=True, mask_history=True)
    model = SASRec(cfg, 13, None, np.ones(13, dtype=bool)).eval()
    assert abs(model.loss(window_batch(windows)).item() - model.loss(window_batch(trimmed)).item()) < 1e-5
    items, times = windows.items, windows.times
    now = times[:, -1] + 60
    full = model.scores(torch.as_tensor(items), context_inputs(items, times, now))
    cut = model.scores(torch.as_tensor(items[:, -4:]), context_inputs(items[:, -4:], times[:, -4:], now))
    assert_allclose(full.numpy(), cut.numpy(), atol=1e-5)
    batches = length_batches(np.asarray([1, 9, 2, 8, 1, 9]), 2, np.random.default_rng(0))
    assert sorted(tuple(sorted(b.tolist())) for b in batches) == [(0, 4), (1, 5), (2, 3)]
