"""Fit the engagement calibration decide uses: model score -> P(user rates the item within 7 days).

The model is trained on the earliest ``inner`` share of the training window and asked, after
every event in the rest of that window, for its best unseen item; the outcome is whether the
user rated that item within the next 7 days. Scores are binned by quantile and the hit rates
made monotone (pool adjacent violators). Nothing after the training cutoff is used, so the
replay stays unseen. The table is written beside the model as calibration.json.

    python -m training.calibration --data DIR --split-quantile 0.8 --model-dir out/demo/models/cooccurrence

Once pushes have been sent, the live outcomes are the better evidence: the replay table is fitted on
every event, but pushes happen only at the moments the policy picks, and there the hit rate can be
far from the table. ``--ledger rows.jsonl`` (ledger items, e.g. a DynamoDB export) refits the table
from logged feedback instead: each push's recorded score against whether it converted; decisions at
or after ``--before`` are left out so the refit can be judged on later traffic.

    python -m training.calibration --ledger ledger.jsonl --before 891000000 --model-dir layers/model
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.domain.engagement import CALIBRATION_FILE, Calibration
from shared.domain.model_registry import graph_version_of
from shared.model import OnnxRecommender
from training.decision_eval import Case, case_feeds
from training.evaluate import PUSH_HORIZON_S, push_cases
from training.movielens import load_movielens, resolve_data_dir, time_split
from training.ope import HIT_OUTCOMES, is_hit

BINS = 10
# Top items asked for per case: the best one the user has not had is almost always among them.
CALIBRATION_DEPTH = 20
MIN_LOGGED_SAMPLES = 200
ROOT = Path(__file__).resolve().parents[1]


def pool_adjacent_violators(values: Sequence[float], weights: Sequence[float]) -> list[float]:
    """The closest non-decreasing sequence (weighted least squares)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v, w in zip(values, weights, strict=True):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            total = w1 + w2
            blocks.append([(m1 * w1 + m2 * w2) / total if total else 0.0, total, c1 + c2])
    out: list[float] = []
    for mean, _, count in blocks:
        out.extend([mean] * int(count))
    return out


def fit(scores: Sequence[float], hits: Sequence[bool], model_version: str, bins: int = BINS) -> Calibration:
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    sorted_hits = np.asarray(hits, dtype=np.float64)[order]
    chunks = [c for c in np.array_split(np.arange(len(order)), bins) if c.size]
    upper = [float(sorted_scores[c[-1]]) for c in chunks]
    rates = [float(sorted_hits[c].mean()) for c in chunks]
    weights = [float(c.size) for c in chunks]
    return Calibration(
        model_version=model_version,
        upper=upper,
        probability=[round(p, 6) for p in pool_adjacent_violators(rates, weights)],
        samples=len(order),
    )


def fit_from_ledger(
    rows: Iterable[Mapping[str, Any]],
    model_version: str,
    before: int | None = None,
    hit_outcomes: frozenset[str] = HIT_OUTCOMES,
    bins: int = BINS,
    min_samples: int = MIN_LOGGED_SAMPLES,
) -> Calibration:
    """The calibration table refitted on logged pushes: recorded score -> did the push convert.

    Only pushes scored by the graph ``model_version`` (a manifest version) count, whichever registry
    version served it (``<graph>.<digest>``: a recalibrated copy scores the same); another model's
    scores mean something else. Raises ``ValueError`` below ``min_samples`` pushes: a table from a
    handful of outcomes is noise.
    """
    scores: list[float] = []
    hits: list[bool] = []
    for row in rows:
        served = row.get("model_version")
        if row.get("action") != "push" or row.get("score") is None or not isinstance(served, str):
            continue
        if graph_version_of(served) != model_version:
            continue
        if before is not None and int(row["decided_at"]) >= before:
            continue
        scores.append(float(row["score"]))
        hits.append(is_hit(row, hit_outcomes))
    if len(scores) < min_samples:
        raise ValueError(f"{len(scores)} logged pushes of {model_version}; at least {min_samples} needed to refit")
    return fit(scores, hits, model_version, bins=min(bins, max(1, len(scores) // 20)))


def fit_forward(
    rec: OnnxRecommender,
    rows: Iterable[tuple[str, str, int]],
    cutoff: int,
    *,
    per_user: int = 20,
    horizon_s: int = PUSH_HORIZON_S,
    min_samples: int = MIN_LOGGED_SAMPLES,
) -> Calibration:
    """The table for any model trained before ``cutoff``, from what users did after it (any source).

    A case is a user's event at or after the cutoff (their first ``per_user``), as decide meets it: the
    history up to and including that event, the request at its time. The model's best item the user has
    not had is a hit if the user takes it within ``horizon_s``. The model never saw these days, so no
    probe model is needed (the MovieLens path trains one because its target model saw the whole window).
    """
    cases, futures = _forward_push_cases(rows, cutoff, per_user, horizon_s)
    if len(cases) < min_samples:
        raise ValueError(f"{len(cases)} events at or after the cutoff; at least {min_samples} needed to calibrate")
    scores: list[float] = []
    hits: list[bool] = []
    for start in range(0, len(cases), 256):
        chunk = cases[start : start + 256]
        top_ids, top_scores = rec.run_feeds(case_feeds(rec, chunk), min(CALIBRATION_DEPTH, rec.manifest.vocab_size))
        for row, recs in enumerate(rec.postprocess(top_ids, top_scores)):
            case = chunk[row]
            had = set(case.history)
            best = next((r for r in recs if r.item_id not in had), None)
            if best is not None:
                scores.append(best.score)
                hits.append(best.item_id in futures[start + row])
    return fit(scores, hits, rec.manifest.version)


def _forward_push_cases(
    rows: Iterable[tuple[str, str, int]], cutoff: int, per_user: int, horizon_s: int
) -> tuple[list[Case], list[frozenset[str]]]:
    by_user: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for user, item, ts in rows:
        by_user[user].append((int(ts), str(item)))
    cases: list[Case] = []
    futures: list[frozenset[str]] = []
    for user in sorted(by_user):
        events = sorted(by_user[user], key=lambda pair: pair[0])
        later = [i for i, (ts, _) in enumerate(events) if ts >= cutoff][:per_user]
        for i in later:
            now = events[i][0]
            future = frozenset(item for ts, item in events[i + 1 :] if ts <= now + horizon_s)
            history = events[: i + 1]
            cases.append(Case([item for _, item in history], [ts for ts, _ in history], "", now))
            futures.append(future)
    return cases, futures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None)
    parser.add_argument("--split-quantile", type=float, default=0.8)
    parser.add_argument("--inner", type=float, default=0.85, help="share of the training window the probe model sees")
    parser.add_argument("--kind", default="cooccurrence")
    parser.add_argument("--model-dir", required=True, help="the model to calibrate (calibration.json is written here)")
    parser.add_argument("--max-cases", type=int, default=20_000)
    parser.add_argument("--ledger", default=None, help="JSON Lines of ledger items: refit from logged feedback")
    parser.add_argument("--before", type=int, default=None, help="with --ledger: only decisions before this epoch")
    args = parser.parse_args(argv)
    if args.ledger:
        return refit_from_ledger(Path(args.ledger), Path(args.model_dir), args.before)
    data_dir = resolve_data_dir(args.data)
    data = load_movielens(data_dir)
    train, _ = time_split(data.interactions, args.split_quantile)
    inner_train, inner_probe = time_split(train, args.inner)
    target = OnnxRecommender.from_dir(args.model_dir)
    with tempfile.TemporaryDirectory() as scratch:
        # The probe model: same recipe, trained on the inner part only.
        subprocess.run(
            [
                sys.executable, "-m", "training.build_model", "--data", str(data_dir), "--kind", args.kind,
                "--split-quantile", str(args.split_quantile * args.inner), "--out", scratch,
            ],
            check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        probe = OnnxRecommender.from_dir(scratch)
        cases = push_cases(inner_train, inner_probe)[: args.max_cases]
        scores: list[float] = []
        hits: list[bool] = []
        for start in range(0, len(cases), 256):
            chunk = cases[start : start + 256]
            for case, recs in zip(chunk, probe.recommend([c.history for c in chunk], 1), strict=True):
                if recs:
                    scores.append(recs[0].score)
                    hits.append(recs[0].item_id in case.future)
    calibration = fit(scores, hits, target.manifest.version)
    (Path(args.model_dir) / CALIBRATION_FILE).write_text(calibration.model_dump_json(indent=2) + "\n")
    print(
        f"calibrated on {len(scores)} events: "
        + json.dumps(dict(zip(calibration.upper, calibration.probability, strict=True)))
    )
    return 0


def refit_from_ledger(ledger: Path, model_dir: Path, before: int | None) -> int:
    version = OnnxRecommender.from_dir(model_dir).manifest.version
    with ledger.open() as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    try:
        calibration = fit_from_ledger(rows, version, before)
    except ValueError as exc:
        print(f"not refitted: {exc}", file=sys.stderr)
        return 2
    (model_dir / CALIBRATION_FILE).write_text(calibration.model_dump_json(indent=2) + "\n")
    print(f"refitted on {calibration.samples} logged pushes of {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
