"""Fit the engagement calibration decide uses: model score -> P(user rates the item within 7 days).

The model is trained on the earliest ``inner`` share of the training window and asked, after
every event in the rest of that window, for its best unseen item; the outcome is whether the
user rated that item within the next 7 days. Scores are binned by quantile and the hit rates
made monotone (pool adjacent violators). Nothing after the training cutoff is used, so the
replay stays unseen. The table is written beside the model as calibration.json.

    python -m training.calibration --data DIR --split-quantile 0.8 --model-dir out/demo/models/cooccurrence
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shared.engagement import CALIBRATION_FILE, Calibration
from shared.model import OnnxRecommender
from training.evaluate import push_cases
from training.movielens import load_movielens, resolve_data_dir, time_split

BINS = 10
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None)
    parser.add_argument("--split-quantile", type=float, default=0.8)
    parser.add_argument("--inner", type=float, default=0.85, help="share of the training window the probe model sees")
    parser.add_argument("--kind", default="cooccurrence")
    parser.add_argument("--model-dir", required=True, help="the model to calibrate (calibration.json is written here)")
    parser.add_argument("--max-cases", type=int, default=20_000)
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
