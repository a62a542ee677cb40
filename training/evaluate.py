"""Offline evaluation: one harness for the baselines, the tuned numpy model and the shipped ONNX artifact.

Leave-last-out protocol (``leave_last_out``): per user, interactions sorted by timestamp (stable, so
file order breaks ties); the last item is the test target, the second last the validation target,
the rest is the input history and the only training data. Validation ranks from the input history;
test ranks from input + validation item. Full ranking over all items, every item in the user's
history masked, HR@5/10/20, NDCG@5/10/20 and MRR averaged over all users.

Push protocol (``evaluate_push``), on the global time split: for every replay event of every user
active in the replay period, rank from everything that user did up to and including that event;
a hit@k is any of the top-k items being rated by that user within the following 7 days. This is
what the demo measures, so this is where the model has to beat popularity.

Every model is seen through ``Ranker.rank``; the ONNX artifact goes through ``RecommenderRanker``
around ``shared.model.OnnxRecommender``, the same wrapper decide uses.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from shared.model import PAD_INDEX, OnnxRecommender
from training.cooccurrence import (
    CoocConfig,
    build_cooccurrence,
    build_popularity,
    build_vocab,
    dense_scores,
    encode_sequences,
    item_counts,
    pad_histories,
    sparse_pair_counts,
)
from training.movielens import Interactions, load_interactions, resolve_data_dir, time_split
from training.onnx_export import ModelArrays, export_model

CUTOFFS = (5, 10, 20)
PUSH_KS = (1, 10)
PUSH_HORIZON_S = 7 * 24 * 3600
# Breaks ties in sparse baselines by popularity without changing any non-tied order.
_TIE_BREAK = 1e-6

ScoreFn = Callable[[Sequence[NDArray[np.int64]]], NDArray[np.floating]]


class Ranker(Protocol):
    name: str

    def rank(self, histories: Sequence[Sequence[str]], k: int) -> list[list[str]]:
        """Top-k item ids per history, best first, never an item of that history."""
        ...


def _chunks(seq: Sequence[Sequence[str]], size: int) -> Iterator[Sequence[Sequence[str]]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


class DenseRanker:
    """Ranks from a numpy score function over the vocabulary; masking and ordering done here."""

    def __init__(self, name: str, vocab: Sequence[str], score_fn: ScoreFn, batch_size: int = 512) -> None:
        self.name = name
        self._vocab = np.asarray(vocab, dtype=object)
        self._index = {item: i for i, item in enumerate(vocab) if i != PAD_INDEX}
        self._score_fn = score_fn
        self._batch_size = batch_size

    def encode(self, history: Sequence[str]) -> NDArray[np.int64]:
        return np.asarray([i for i in (self._index.get(x) for x in history) if i is not None], dtype=np.int64)

    def rank(self, histories: Sequence[Sequence[str]], k: int) -> list[list[str]]:
        out: list[list[str]] = []
        for chunk in _chunks(histories, self._batch_size):
            encoded = [self.encode(history) for history in chunk]
            scores = np.asarray(self._score_fn(encoded), dtype=np.float64)
            scores[:, PAD_INDEX] = -np.inf
            for row, indices in enumerate(encoded):
                scores[row, indices] = -np.inf
            # Stable sort: equal scores keep the lower index first, as ONNX TopK does.
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            for row in range(len(chunk)):
                kept = order[row][np.isfinite(scores[row, order[row]])]
                out.append(list(self._vocab[kept]))
        return out

    def target_ranks(self, histories: Sequence[Sequence[str]], targets: Sequence[str]) -> list[int | None]:
        """1-based rank of each target in ``rank``'s order (None when masked or unknown), without sorting."""
        out: list[int | None] = []
        for start in range(0, len(histories), self._batch_size):
            chunk = histories[start : start + self._batch_size]
            encoded = [self.encode(history) for history in chunk]
            scores = np.asarray(self._score_fn(encoded), dtype=np.float64)
            scores[:, PAD_INDEX] = -np.inf
            for row, indices in enumerate(encoded):
                scores[row, indices] = -np.inf
            for row, target in enumerate(targets[start : start + self._batch_size]):
                index = self._index.get(target)
                if index is None or not np.isfinite(scores[row, index]):
                    out.append(None)
                    continue
                own = scores[row, index]
                # rank's stable sort puts equal scores in index order.
                out.append(int((scores[row] > own).sum()) + int((scores[row, :index] == own).sum()) + 1)
        return out


class RecommenderRanker:
    """A ``Recommender`` (e.g. the ONNX artifact) under the full-history mask of the protocol.

    The graph masks only its last ``max_history`` items, so it is asked for extra items and the
    rest of the history is filtered here (decide does the same with the user's consumed list).
    """

    def __init__(self, recommender: OnnxRecommender, name: str | None = None, batch_size: int = 64) -> None:
        self.name = name or recommender.manifest.version
        self._recommender = recommender
        self._batch_size = batch_size

    def rank(self, histories: Sequence[Sequence[str]], k: int) -> list[list[str]]:
        vocab_size = self._recommender.manifest.vocab_size
        out: list[list[str]] = []
        for chunk in _chunks(histories, self._batch_size):
            seen = [set(history) for history in chunk]
            want = min(vocab_size, k + max((len(s) for s in seen), default=0))
            for recs, history in zip(self._recommender.recommend(chunk, want), seen, strict=True):
                out.append([rec.item_id for rec in recs if rec.item_id not in history][:k])
        return out


# ---------------------------------------------------------------- metrics


def rank_of(ranked: Sequence[str], target: str) -> int | None:
    """1-based position of ``target`` in ``ranked``; None when it is not there."""
    try:
        return ranked.index(target) + 1
    except ValueError:
        return None


def summarize(ranks: Sequence[int | None], cutoffs: Iterable[int] = CUTOFFS) -> dict[str, float]:
    """HR@k, NDCG@k (one relevant item: 1/log2(rank+1)) and MRR, averaged over all cases."""
    n = len(ranks)
    if n == 0:
        return {}
    found = [r for r in ranks if r is not None]
    metrics: dict[str, float] = {}
    for cutoff in cutoffs:
        metrics[f"hr@{cutoff}"] = sum(1 for r in found if r <= cutoff) / n
        metrics[f"ndcg@{cutoff}"] = sum(1 / math.log2(r + 1) for r in found if r <= cutoff) / n
    metrics["mrr"] = sum(1 / r for r in found) / n
    return metrics


# ---------------------------------------------------------------- leave-last-out


@dataclass(frozen=True)
class LeaveLastOut:
    train: Interactions  # everything but each user's last two interactions
    histories: dict[int, list[str]]  # input history per user (the train part), oldest first
    valid: dict[int, str]
    test: dict[int, str]


def leave_last_out(interactions: Interactions) -> LeaveLastOut:
    """Users with fewer than three interactions stay in train and are not evaluated."""
    ordered = interactions.sorted_by_time()
    by_user = np.argsort(ordered.user, kind="stable")
    users = ordered.user[by_user]
    # Position counted from the end of each user's sequence: 0 = last.
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    sizes = np.diff(np.r_[starts, users.size])
    from_end = np.repeat(starts + sizes, sizes) - np.arange(users.size) - 1
    eligible = np.repeat(sizes >= 3, sizes)
    held_out = eligible & (from_end < 2)
    train = ordered.take(np.sort(by_user[~held_out]))
    histories = {user: [str(i) for i in seq] for user, seq in train.sequences().items()}
    items = ordered.item[by_user]
    valid = {
        int(u): str(i)
        for u, i in zip(users[held_out & (from_end == 1)], items[held_out & (from_end == 1)], strict=True)
    }
    test = {
        int(u): str(i)
        for u, i in zip(users[held_out & (from_end == 0)], items[held_out & (from_end == 0)], strict=True)
    }
    return LeaveLastOut(train=train, histories={u: histories.get(u, []) for u in test}, valid=valid, test=test)


def evaluate_leave_last_out(ranker: Ranker, split: LeaveLastOut, target: str = "test") -> dict[str, float]:
    users = sorted(split.test)
    if target == "test":
        histories = [split.histories[u] + [split.valid[u]] for u in users]
        targets = [split.test[u] for u in users]
    elif target == "valid":
        histories = [split.histories[u] for u in users]
        targets = [split.valid[u] for u in users]
    else:
        raise ValueError(f"target must be 'test' or 'valid', not {target!r}")
    if isinstance(ranker, DenseRanker):
        metrics = summarize(ranker.target_ranks(histories, targets))
    else:
        # Full ranking (k large enough for every item) so MRR is exact, not truncated.
        ranked = ranker.rank(histories, k=1 << 30)
        metrics = summarize([rank_of(r, t) for r, t in zip(ranked, targets, strict=True)])
    metrics["users"] = float(len(users))
    return metrics


# ---------------------------------------------------------------- push (time split)


@dataclass(frozen=True)
class PushCase:
    history: list[str]  # everything up to and including the replay event, oldest first
    future: frozenset[str]  # items the user rates within the horizon after it
    next_item: str | None  # the very next item the user rates, whenever that is


def push_cases(train: Interactions, replay: Interactions, horizon_s: int = PUSH_HORIZON_S) -> list[PushCase]:
    replay_users = set(np.unique(replay.user).tolist())
    everything = Interactions.concat([train, replay])
    mine = everything.take(np.isin(everything.user, list(replay_users)))
    ordered = mine.sorted_by_time()
    start = int(replay.timestamp.min(initial=np.iinfo(np.int64).max))
    cases: list[PushCase] = []
    for user in sorted(replay_users):
        rows = ordered.user == user
        items = [str(i) for i in ordered.item[rows]]
        stamps = ordered.timestamp[rows]
        # Sorted by time and train < cutoff <= replay, so replay events are a suffix.
        first = int(np.searchsorted(stamps, start, side="left"))
        for i in range(first, len(items)):
            end = int(np.searchsorted(stamps, stamps[i] + horizon_s, side="right"))
            cases.append(
                PushCase(
                    history=items[: i + 1],
                    future=frozenset(items[i + 1 : end]),
                    next_item=items[i + 1] if i + 1 < len(items) else None,
                )
            )
    return cases


def evaluate_push(ranker: Ranker, cases: Sequence[PushCase], ks: Iterable[int] = PUSH_KS) -> dict[str, float]:
    """push_hit@k: share of replay events whose top-k holds an item rated within the horizon.

    Also next-item HR/NDCG@10 on the same events, and how many events could be hit at all.
    """
    ks = tuple(ks)
    depth = max(*ks, 10)
    ranked = ranker.rank([case.history for case in cases], k=depth)
    n = len(cases)
    if n == 0:
        return {"push_events": 0.0}
    metrics = {
        f"push_hit@{k}": sum(1 for r, c in zip(ranked, cases, strict=True) if c.future.intersection(r[:k])) / n
        for k in ks
    }
    metrics["push_reachable"] = sum(1 for c in cases if c.future) / n
    with_next = [(r, c.next_item) for r, c in zip(ranked, cases, strict=True) if c.next_item is not None]
    next_metrics = summarize([rank_of(r, t) for r, t in with_next], cutoffs=(10,))
    metrics["next_hr@10"] = next_metrics.get("hr@10", 0.0)
    metrics["next_ndcg@10"] = next_metrics.get("ndcg@10", 0.0)
    metrics["push_events"] = float(n)
    return metrics


# ---------------------------------------------------------------- baselines


def most_pop_ranker(sequences: Mapping[int, NDArray[np.int64]], vocab: Sequence[str]) -> DenseRanker:
    counts = item_counts(sequences, len(vocab))
    return DenseRanker("MostPop", vocab, lambda batch: np.tile(counts, (len(batch), 1)))


def transition_ranker(sequences: Mapping[int, NDArray[np.int64]], vocab: Sequence[str]) -> DenseRanker:
    """Counts of (last item -> next item) over consecutive pairs; popularity breaks ties."""
    vocab_size = len(vocab)
    rows, cols, values = sparse_pair_counts(sequences, vocab_size, window=1, backward_weight=0.0)
    starts = np.searchsorted(rows, np.arange(vocab_size + 1))  # rows come back sorted: a CSR index
    prior = item_counts(sequences, vocab_size)
    prior = prior / max(prior.max(), 1.0) * _TIE_BREAK

    def score(batch: Sequence[NDArray[np.int64]]) -> NDArray[np.float64]:
        last = np.asarray([h[-1] if h.size else PAD_INDEX for h in batch], dtype=np.int64)
        scores: NDArray[np.float64] = np.tile(prior, (len(batch), 1))
        for row, item in enumerate(last):
            span = slice(starts[item], starts[item + 1])
            scores[row, cols[span]] += values[span]
        return scores

    return DenseRanker("Transition(last item)", vocab, score)


def cooccurrence_baseline_ranker(sequences: Mapping[int, NDArray[np.int64]], vocab: Sequence[str]) -> DenseRanker:
    """Untuned item co-occurrence: users who have both items, summed over the whole history."""
    vocab_size = len(vocab)
    users = np.zeros((len(sequences), vocab_size), dtype=np.float32)
    for row, seq in enumerate(sequences.values()):
        users[row, seq] = 1.0
    together = users.T @ users
    np.fill_diagonal(together, 0.0)
    prior = item_counts(sequences, vocab_size)
    prior = prior / max(prior.max(), 1.0) * _TIE_BREAK

    def score(batch: Sequence[NDArray[np.int64]]) -> NDArray[np.float64]:
        scores: NDArray[np.float64] = np.stack([together[h].sum(axis=0) for h in batch]) + prior[None, :]
        return scores

    return DenseRanker("Co-occurrence(user-level)", vocab, score)


def arrays_ranker(name: str, arrays: ModelArrays, vocab: Sequence[str]) -> DenseRanker:
    """The numpy twin of an exported graph (same tables, same window, same prior)."""
    return DenseRanker(name, vocab, lambda batch: dense_scores(arrays, pad_histories(batch, arrays.max_history)))


def onnx_ranker(model_dir: Path, name: str | None = None) -> RecommenderRanker:
    return RecommenderRanker(OnnxRecommender.from_dir(model_dir), name=name)


# ---------------------------------------------------------------- tuning


TUNING_GRID: dict[str, tuple[float | int, ...]] = {
    "window": (1, 3, 5, 10, 20, 50),
    "distance_decay": (0.5, 0.7, 0.8, 0.9, 1.0),
    "backward_weight": (0.0, 0.25, 0.5, 1.0),
    "source_alpha": (0.0, 0.25, 0.5, 0.75),
    "target_alpha": (0.0, 0.25, 0.5, 0.75, 1.0),
    "recency_decay": (0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0),
    "max_history": (5, 10, 20, 50),
    "popularity_weight": (0.0, 0.01, 0.05, 0.1, 0.3),
    "neighbours": (20, 50, 100, 200),
}


def tune_cooccurrence(
    split: LeaveLastOut,
    start: CoocConfig | None = None,
    grid: Mapping[str, Sequence[float | int]] = TUNING_GRID,
    rounds: int = 2,
    metric: str = "ndcg@10",
    log: Callable[[str], None] = print,
) -> tuple[CoocConfig, float]:
    """Coordinate ascent on the *validation* targets; the test targets are never looked at."""
    vocab = build_vocab(split.train)
    sequences = encode_sequences(split.train, vocab)
    cache: dict[CoocConfig, float] = {}

    def value(config: CoocConfig) -> float:
        if config not in cache:
            ranker = arrays_ranker("tune", build_cooccurrence(sequences, len(vocab), config), vocab)
            cache[config] = evaluate_leave_last_out(ranker, split, target="valid")[metric]
        return cache[config]

    best = start or CoocConfig()
    for round_no in range(rounds):
        changed = False
        for field in (f.name for f in fields(CoocConfig)):
            for candidate in grid.get(field, ()):
                trial = replace(best, **{field: candidate})  # type: ignore[arg-type]
                if value(trial) > value(best) + 1e-9:
                    best, changed = trial, True
            chosen = getattr(best, field)
            log(f"round {round_no + 1} {field:>18}: {chosen!s:>6}  valid {metric} {value(best):.4f}")
        if not changed:
            break
    return best, value(best)


# ---------------------------------------------------------------- reports


def heldout_metrics(ranker: Ranker, baseline: Ranker, cases: Sequence[PushCase]) -> dict[str, float]:
    """What goes into a time-split model's manifest: its push metrics and popularity's on the same events."""
    metrics = evaluate_push(ranker, cases)
    for key, number in evaluate_push(baseline, cases).items():
        if key not in {"push_events", "push_reachable"}:
            metrics[f"popularity_{key}"] = number
    return metrics


def format_table(rows: Sequence[tuple[str, Mapping[str, float]]], columns: Sequence[str]) -> str:
    width = max([len(name) for name, _ in rows] + [5])
    lines = [f"{'model':<{width}}  " + "  ".join(f"{c:>10}" for c in columns)]
    for name, metrics in rows:
        lines.append(f"{name:<{width}}  " + "  ".join(f"{metrics.get(c, float('nan')):>10.4f}" for c in columns))
    return "\n".join(lines)


LOO_COLUMNS = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr")
PUSH_COLUMNS = ("push_hit@1", "push_hit@10", "next_hr@10", "next_ndcg@10")


def _window(interactions: Interactions) -> dict[str, datetime]:
    return {
        "start": datetime.fromtimestamp(int(interactions.timestamp.min()), UTC),
        "end": datetime.fromtimestamp(int(interactions.timestamp.max()), UTC),
    }


def run_report(
    data_dir: Path, quantile: float, config: CoocConfig, tune: bool, model_dir: Path | None = None
) -> dict[str, Any]:
    """Print the tables and return them (for ``--out``)."""
    report: dict[str, Any] = {"data_dir": str(data_dir), "split_quantile": quantile, "leave_last_out": {}}
    interactions = load_interactions(data_dir)
    split = leave_last_out(interactions)
    if tune:
        config, _ = tune_cooccurrence(split, start=config)
        print(f"tuned: {config}")
    report["config"] = asdict(config)
    vocab = build_vocab(split.train)
    sequences = encode_sequences(split.train, vocab)
    arrays = build_cooccurrence(sequences, len(vocab), config)
    rankers: list[Ranker] = [
        most_pop_ranker(sequences, vocab),
        transition_ranker(sequences, vocab),
        cooccurrence_baseline_ranker(sequences, vocab),
        arrays_ranker("Co-occurrence(tuned, numpy)", arrays, vocab),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        export_model(
            Path(tmp),
            arrays,
            item_vocab=vocab,
            kind="cooccurrence",
            training_data_sha256="loo",
            training_window=_window(split.train),
            metrics={},
            code_version="eval",
        )
        rankers.append(onnx_ranker(Path(tmp), name="Co-occurrence(ONNX via OnnxRecommender)"))
        for target in ("valid", "test"):
            rows = []
            for ranker in rankers:
                began = time.perf_counter()
                rows.append((ranker.name, evaluate_leave_last_out(ranker, split, target=target)))
                rows[-1][1]["seconds"] = time.perf_counter() - began
            print(f"\nleave-last-out, {target} targets, {len(split.test)} users, {len(vocab) - 1} items")
            print(format_table(rows, (*LOO_COLUMNS, "seconds")))
            report["leave_last_out"][target] = dict(rows)

    train, replay = time_split(interactions, quantile)
    t_vocab = build_vocab(train)
    t_seqs = encode_sequences(train, t_vocab)
    cases = push_cases(train, replay)
    t_arrays = build_cooccurrence(t_seqs, len(t_vocab), config)
    pop_arrays = build_popularity(t_seqs, len(t_vocab), config.max_history)
    push_rows = []
    with tempfile.TemporaryDirectory() as tmp_pop, tempfile.TemporaryDirectory() as tmp_cooc:
        for kind, out, model_arrays in (
            ("popularity", tmp_pop, pop_arrays),
            ("cooccurrence", tmp_cooc, t_arrays),
        ):
            export_model(
                Path(out),
                model_arrays,
                item_vocab=t_vocab,
                kind=kind,
                training_data_sha256="split",
                training_window=_window(train),
                metrics={},
                code_version="eval",
            )
            ranker = onnx_ranker(Path(out), name=f"{kind} (ONNX)")
            push_rows.append((ranker.name, evaluate_push(ranker, cases)))
    if model_dir is not None:
        given = onnx_ranker(model_dir)
        trained_until = OnnxRecommender.from_dir(model_dir).manifest.training_window["end"]
        if trained_until.timestamp() >= replay.timestamp.min():
            print(f"WARNING: {model_dir} was trained up to {trained_until}, inside the replay period")
        push_rows.append((f"{given.name} ({model_dir})", evaluate_push(given, cases)))
    users = len(np.unique(replay.user))
    print(
        f"\npush protocol: train = first {quantile:.0%} of time ({len(train)} ratings), "
        f"{len(cases)} replay events from {users} users; "
        f"{push_rows[0][1]['push_reachable']:.1%} of events have any rating in the next 7 days"
    )
    print(format_table(push_rows, PUSH_COLUMNS))
    report["push"] = dict(push_rows)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description="Offline evaluation report")
    parser.add_argument("--data", default=None, help="ml-100k folder (default: $NUDGE_ML100K_DIR or ../shared/...)")
    parser.add_argument("--split-quantile", type=float, default=0.8)
    parser.add_argument("--tune", action="store_true", help="coordinate ascent on validation targets first")
    parser.add_argument(
        "--artifact",
        "--model-dir",
        type=Path,
        default=None,
        help="also score this model dir on the push protocol",
    )
    parser.add_argument("--out", type=Path, default=None, help="write every table as JSON here")
    args = parser.parse_args(argv)
    report = run_report(resolve_data_dir(args.data), args.split_quantile, CoocConfig(), args.tune, args.artifact)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
