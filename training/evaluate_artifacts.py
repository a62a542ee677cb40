"""``make evaluate``: the shipped artifact(s) and the baselines, measured here and now -> metrics.json.

    python -m training.evaluate_artifacts --data DIR --artifact layers/model --artifact layers/model/sasrec \
        --artifact layers/model/sasrec/int8 \
        --out out/eval/metrics.json

Leave-last-out protocol of ``training.evaluate`` (full ranking, whole input history masked), each
artifact through ``OnnxRecommender.recommend`` with the items' timestamps and the request time
(the target's timestamp), the call decide makes; graphs without context inputs simply ignore them.
Baselines (MostPop, last-item transition, tuned co-occurrence) are rebuilt from the training part.
Output: ``{"shipped": NAME, "artifacts": {NAME: {"test": {...}, "valid": {...}}}, "baselines": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.model import OnnxRecommender
from training.cooccurrence import CoocConfig, build_cooccurrence, build_vocab, encode_sequences
from training.evaluate import (
    arrays_ranker,
    evaluate_leave_last_out,
    leave_last_out,
    most_pop_ranker,
    transition_ranker,
)
from training.movielens import resolve_data_dir
from training.sequences import UserSeq, timed_leave_last_out, user_sequences, vocab_for
from training.sources import load_movielens_dataset

_UPPER = {"hr": "HR", "ndcg": "NDCG", "mrr": "MRR"}


def _upper(metrics: dict[str, float]) -> dict[str, float]:
    """``hr@10`` -> ``HR@10`` (the issue's spelling), dropping bookkeeping keys."""
    out = {}
    for key, value in metrics.items():
        head, _, tail = key.partition("@")
        if head in _UPPER:
            out[_UPPER[head] + (f"@{tail}" if tail else "")] = value
    return out


def _ranks_metrics(ranks: np.ndarray) -> dict[str, float]:  # type: ignore[type-arg]
    out: dict[str, float] = {}
    for k in (5, 10, 20):
        hit = ranks <= k
        out[f"HR@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float((hit / np.log2(ranks + 1)).mean())
    out["MRR"] = float((1.0 / ranks).mean())
    return out


def evaluate_artifact(model_dir: Path, data_dir: Path) -> dict[str, dict[str, float]]:
    dataset = load_movielens_dataset(data_dir)
    vocab, lookup = vocab_for(dataset.item_ids, np.arange(1, len(dataset.item_ids)))
    split = timed_leave_last_out(user_sequences(dataset.interactions, lookup))
    rec = OnnxRecommender.from_dir(model_dir)
    out: dict[str, dict[str, float]] = {}
    # A time-split build (manifest metric split_quantile) trained on events up to its cutoff, which
    # include many users' held-out targets: its numbers here are not comparable, so say how many.
    if "split_quantile" in rec.manifest.metrics:
        end = rec.manifest.training_window["end"].timestamp()
        seen = np.mean([split.test[u][1] <= end for u in split.users])
        out["leakage"] = {"test_targets_inside_training_window": float(seen)}
    for target in ("test", "valid"):
        ranks = []
        for user in split.users:
            seq = split.train[user]
            item, now = split.valid[user] if target == "valid" else split.test[user]
            if target == "test":
                v_item, v_ts = split.valid[user]
                seq = UserSeq(np.r_[seq.items, v_item], np.r_[seq.times, v_ts])
            history = [vocab[i] for i in seq.items]
            (recs,) = rec.recommend([history], rec.manifest.vocab_size, timestamps=[seq.times.tolist()], now=int(now))
            seen = set(history)
            ranked = [r.item_id for r in recs if r.item_id not in seen]
            ranks.append(ranked.index(vocab[item]) + 1 if vocab[item] in ranked else len(vocab) + 1)
        out[target] = {**_ranks_metrics(np.asarray(ranks)), "users": float(len(ranks))}
    return out


def evaluate_baselines(data_dir: Path) -> dict[str, dict[str, dict[str, float]]]:
    from training.movielens import load_interactions

    split = leave_last_out(load_interactions(data_dir))
    vocab = build_vocab(split.train)
    sequences = encode_sequences(split.train, vocab)
    rankers = [
        ("MostPop", most_pop_ranker(sequences, vocab)),
        ("Transition(last item)", transition_ranker(sequences, vocab)),
        ("Co-occurrence(tuned)", arrays_ranker("cooc", build_cooccurrence(sequences, len(vocab), CoocConfig()), vocab)),
    ]
    return {
        name: {target: _upper(evaluate_leave_last_out(ranker, split, target)) for target in ("test", "valid")}
        for name, ranker in rankers
    }


def run(data_dir: Path, artifacts: Sequence[Path]) -> dict[str, Any]:
    report: dict[str, Any] = {"shipped": None, "artifacts": {}, "baselines": {}, "data_dir": str(data_dir)}
    for index, model_dir in enumerate(artifacts):
        began = time.perf_counter()
        name = OnnxRecommender.from_dir(model_dir).manifest.version
        report["artifacts"][name] = {**evaluate_artifact(model_dir, data_dir), "path": str(model_dir)}
        report["artifacts"][name]["seconds"] = time.perf_counter() - began
        if index == 0:
            report["shipped"] = name
        test = report["artifacts"][name]["test"]
        leak = report["artifacts"][name].get("leakage", {}).get("test_targets_inside_training_window")
        note = f"  NOT COMPARABLE: trained on {leak:.0%} of the test targets' period" if leak else ""
        print(f"{name:<34} test HR@10 {test['HR@10']:.4f}  NDCG@10 {test['NDCG@10']:.4f}  ({model_dir}){note}")
    report["baselines"] = evaluate_baselines(data_dir)
    for name, metrics in report["baselines"].items():
        print(f"{name:<34} test HR@10 {metrics['test']['HR@10']:.4f}  NDCG@10 {metrics['test']['NDCG@10']:.4f}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate_artifacts", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--artifact", type=Path, action="append", required=True, help="model dir; the first ships")
    parser.add_argument("--out", type=Path, default=Path("out/eval/metrics.json"))
    args = parser.parse_args(argv)
    artifacts = [a for i, a in enumerate(args.artifact) if i == 0 or (a / "model.onnx").is_file()]
    report = run(resolve_data_dir(args.data), artifacts)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
