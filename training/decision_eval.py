"""Evaluation as decide serves the model: the wrapper's own feeds, decide's clock, batched.

Every artifact is measured through ``shared.model.OnnxRecommender``: each case's inputs are built by
``OnnxRecommender.feeds`` (the method ``recommend_in_context`` -> ``recommend`` uses when decide
calls it) with the case's history, its items' timestamps and the request time; only the graph runs
are batched (many users' feed rows stacked). ``tests/unit/test_model.py`` proves the rows equal the
feeds decide builds from a ``UserState`` at the same clock.

The request time is ``training.sequences.request_time``: at decision time (the default, the
stream-triggered decide) it is the newest history event's time; ``plus_1h`` is a deferred push an
hour later; ``target_time`` (the held-out item's own time) is an upper bound decide cannot reach.

Ranking: full catalogue, every item of the case's history masked (decide drops consumed items the
same way), ties broken towards the lower vocabulary index as ONNX ``TopK`` does; a target the
artifact does not know, or one inside the history, ranks last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from shared.model import INPUT_K, MASK_SCORE, OUTPUT_SCORES, OnnxRecommender
from training.sequences import DECISION, PLUS_1H, TARGET_TIME, TimedSplit, UserSeq, request_time

BATCH_SIZE = 256
# What decide's user state keeps for the model (shared.domain.user_state.MAX_RECENT_ITEMS; a test pins them
# together): a graph with a longer window still only ever gets these.
DECIDE_RECENT_ITEMS = 50
CUTOFFS = (5, 10, 20)


@dataclass(frozen=True)
class Case:
    """One ranking question: item ids oldest first, their epoch seconds, the held-out item and its time."""

    history: list[str]
    stamps: list[int]
    target: str
    target_ts: int

    def now(self, mode: str = DECISION) -> int:
        return request_time(np.asarray(self.stamps, dtype=np.int64), self.target_ts, mode)


def split_cases(split: TimedSplit, vocab: Sequence[str], target: str) -> list[Case]:
    """Leave-last-out cases by id: valid ranks from the training part; test from it + the valid item."""
    cases = []
    for user in split.users:
        seq = split.train[user]
        v_item, v_ts = split.valid[user]
        item, ts = split.valid[user] if target == "valid" else split.test[user]
        if target != "valid":
            seq = UserSeq(np.r_[seq.items, v_item], np.r_[seq.times, v_ts])
        cases.append(Case([vocab[i] for i in seq.items], seq.times.tolist(), vocab[item], int(ts)))
    return cases


def case_feeds(rec: OnnxRecommender, cases: Sequence[Case], mode: str = DECISION) -> dict[str, NDArray[np.int64]]:
    """The graph inputs (without ``k``) for these cases, one row each: exactly ``rec.feeds`` per case."""
    keep = DECIDE_RECENT_ITEMS
    rows = [rec.feeds([case.history[-keep:]], [case.stamps[-keep:]], case.now(mode)) for case in cases]
    return {name: np.concatenate([row[name] for row in rows]) for name in rows[0]}


def _full_scores(rec: OnnxRecommender, feeds: dict[str, NDArray[np.int64]]) -> NDArray[np.float32]:
    session = rec._session
    vocab = rec.manifest.vocab_size
    if rec.manifest.output(OUTPUT_SCORES) is not None:
        (scores,) = session.run([OUTPUT_SCORES], {**feeds, INPUT_K: np.asarray([1], dtype=np.int64)})
        return np.asarray(scores, dtype=np.float32)
    top_ids, top_scores = rec.run_feeds(feeds, vocab)
    out = np.full((top_ids.shape[0], vocab), MASK_SCORE, dtype=np.float32)
    np.put_along_axis(out, top_ids, top_scores, axis=1)
    return out


def artifact_ranks(
    rec: OnnxRecommender, cases: Sequence[Case], mode: str = DECISION, batch_size: int = BATCH_SIZE
) -> NDArray[np.int64]:
    """1-based rank of each case's target in the artifact's full catalogue, the whole history masked."""
    index = rec.manifest.index_map()
    vocab = rec.manifest.vocab_size
    ranks = np.full(len(cases), vocab + 1, dtype=np.int64)
    for start in range(0, len(cases), batch_size):
        chunk = cases[start : start + batch_size]
        scores = _full_scores(rec, case_feeds(rec, chunk, mode)).astype(np.float64)
        scores[:, 0] = -np.inf
        for row, case in enumerate(chunk):
            seen = [i for i in (index.get(item) for item in case.history) if i is not None]
            scores[row, seen] = -np.inf
        for row, case in enumerate(chunk):
            own_index = index.get(case.target)
            if own_index is None or not np.isfinite(scores[row, own_index]):
                continue
            own = scores[row, own_index]
            ahead = int((scores[row] > own).sum()) + int((scores[row, :own_index] == own).sum())
            ranks[start + row] = ahead + 1
    return ranks


def rank_metrics(ranks: NDArray[np.int64]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in CUTOFFS:
        hit = ranks <= k
        out[f"HR@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float((hit / np.log2(ranks + 1)).mean())
    out["MRR"] = float((1.0 / ranks).mean())
    return out


# metrics.json keys: ``test`` and ``valid`` at decision time, then the other request times on test.
REPORT_ROWS: tuple[tuple[str, str, str], ...] = (
    ("test", "test", DECISION),
    ("valid", "valid", DECISION),
    ("test_plus_1h", "test", PLUS_1H),
    ("test_target_time", "test", TARGET_TIME),
)


def evaluate_recommender(
    rec: OnnxRecommender,
    split: TimedSplit,
    vocab: Sequence[str],
    rows: Sequence[tuple[str, str, str]] = REPORT_ROWS,
    batch_size: int = BATCH_SIZE,
) -> dict[str, dict[str, float]]:
    """``{"test": {...}, "valid": {...}, "test_plus_1h": {...}, "test_target_time": {...}}`` for one artifact."""
    cases = {target: split_cases(split, vocab, target) for target in {t for _, t, _ in rows}}
    out: dict[str, dict[str, float]] = {}
    for key, target, mode in rows:
        ranks = artifact_ranks(rec, cases[target], mode, batch_size)
        out[key] = {**rank_metrics(ranks), "users": float(len(ranks))}
    return out
