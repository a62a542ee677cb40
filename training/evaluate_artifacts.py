"""``make evaluate``: the shipped artifact(s) and the baselines, measured here and now -> metrics.json.

    python -m training.evaluate_artifacts --data DIR --artifact layers/model/sasrec/int8 \
        --artifact layers/model/sasrec --artifact layers/model --out out/eval/metrics.json
    python -m training.evaluate_artifacts --source sequences --data ../shared/datasets/yelp/yelp.txt \
        --artifact out/yelp/model --tune

Any source the trainer reads (``--source``, ``training.sources``). Leave-last-out protocol (full
ranking, the case's whole history masked), each artifact through ``OnnxRecommender`` exactly as
decide calls it (``training.decision_eval``): ``test`` and ``valid`` at decision time (request time =
the newest history event), ``test_plus_1h`` (a deferred push) and ``test_target_time`` (the held-out
item's own time: an upper bound, decide never knows it). Graphs without context inputs ignore the
time, so their four rows differ only in what they rank. Quantised graphs run one case per call, as
decide does, because their activation scales depend on the batch.

Baselines (MostPop, last-item transition, co-occurrence) are rebuilt from the training part;
co-occurrence uses ``CoocConfig`` defaults, or with ``--tune`` the configuration coordinate ascent
picks on the validation targets of this source.
Output: ``{"shipped": NAME, "artifacts": {NAME: {"test", "valid", "test_plus_1h", "test_target_time",
...}}, "baselines": {NAME: {"test", "valid"}}}``.
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
import onnx

from shared.model import MODEL_FILE, OnnxRecommender
from training.cooccurrence import CoocConfig, build_cooccurrence, build_vocab, encode_sequences
from training.decision_eval import BATCH_SIZE, evaluate_recommender
from training.evaluate import (
    arrays_ranker,
    evaluate_leave_last_out,
    leave_last_out,
    most_pop_ranker,
    transition_ranker,
    tune_cooccurrence,
)
from training.sequences import TimedSplit, timed_leave_last_out, user_sequences, vocab_for
from training.sources import SOURCES, Dataset, load_source

_UPPER = {"hr": "HR", "ndcg": "NDCG", "mrr": "MRR"}


def _upper(metrics: dict[str, float]) -> dict[str, float]:
    """``hr@10`` -> ``HR@10`` (the issue's spelling), dropping bookkeeping keys."""
    out = {}
    for key, value in metrics.items():
        head, _, tail = key.partition("@")
        if head in _UPPER:
            out[_UPPER[head] + (f"@{tail}" if tail else "")] = value
    return out


def split_of(dataset: Dataset) -> tuple[list[str], TimedSplit]:
    """The whole catalogue as vocabulary, and the timed leave-last-out split the trainer uses."""
    vocab, lookup = vocab_for(dataset.item_ids, np.arange(1, len(dataset.item_ids)))
    return vocab, timed_leave_last_out(user_sequences(dataset.interactions, lookup))


def is_quantised(model_dir: Path) -> bool:
    """Dynamically quantised graphs scale activations per batch, so only batch 1 reproduces decide."""
    graph = onnx.load_model(str(model_dir / MODEL_FILE), load_external_data=False).graph
    return any(node.op_type == "DynamicQuantizeLinear" for node in graph.node)


def evaluate_artifact(
    model_dir: Path, dataset: Dataset, prepared: tuple[list[str], TimedSplit] | None = None
) -> dict[str, Any]:
    vocab, timed = prepared or split_of(dataset)
    rec = OnnxRecommender.from_dir(model_dir)
    out: dict[str, Any] = {}
    # A time-split build (manifest metric split_quantile) trained on events up to its cutoff, which
    # include many users' held-out targets: its numbers here are not comparable, so say how many.
    if "split_quantile" in rec.manifest.metrics:
        end = rec.manifest.training_window["end"].timestamp()
        seen = np.mean([timed.test[u][1] <= end for u in timed.users])
        out["leakage"] = {"test_targets_inside_training_window": float(seen)}
    batch = 1 if is_quantised(model_dir) else BATCH_SIZE
    out.update(evaluate_recommender(rec, timed, vocab, batch_size=batch))
    out["batch_size"] = batch
    return out


def evaluate_baselines(dataset: Dataset, tune: bool = False) -> dict[str, dict[str, dict[str, float]]]:
    split = leave_last_out(dataset.interactions)
    vocab = build_vocab(split.train)
    sequences = encode_sequences(split.train, vocab)
    config = CoocConfig()
    if tune:
        config, _ = tune_cooccurrence(split, start=config, log=lambda line: print(line, flush=True))
    rankers = [
        ("MostPop", most_pop_ranker(sequences, vocab)),
        ("Transition(last item)", transition_ranker(sequences, vocab)),
        ("Co-occurrence(tuned)", arrays_ranker("cooc", build_cooccurrence(sequences, len(vocab), config), vocab)),
    ]
    return {
        name: {target: _upper(evaluate_leave_last_out(ranker, split, target)) for target in ("test", "valid")}
        for name, ranker in rankers
    }


def _line(name: str, metrics: dict[str, float]) -> str:
    return f"HR@10 {metrics['HR@10']:.4f}  NDCG@10 {metrics['NDCG@10']:.4f}"


def run(dataset: Dataset, artifacts: Sequence[Path], tune: bool = False, baselines: bool = True) -> dict[str, Any]:
    report: dict[str, Any] = {"shipped": None, "artifacts": {}, "baselines": {}, "source": dataset.source}
    vocab, split = split_of(dataset)
    for index, model_dir in enumerate(artifacts):
        began = time.perf_counter()
        name = OnnxRecommender.from_dir(model_dir).manifest.version
        entry = {**evaluate_artifact(model_dir, dataset, (vocab, split)), "path": str(model_dir)}
        entry["seconds"] = time.perf_counter() - began
        report["artifacts"][name] = entry
        if index == 0:
            report["shipped"] = name
        leak = entry.get("leakage", {}).get("test_targets_inside_training_window")
        note = f"  NOT COMPARABLE: trained on {leak:.0%} of the test targets' period" if leak else ""
        print(f"{name}  ({model_dir}, {entry['seconds']:.1f}s){note}")
        for key, label in (
            ("test", "test, decision time"),
            ("valid", "valid, decision time"),
            ("test_plus_1h", "test, decision + 1 h"),
            ("test_target_time", "test, target's own time (upper bound)"),
        ):
            print(f"    {label:<40} {_line(key, entry[key])}")
    if baselines:
        report["baselines"] = evaluate_baselines(dataset, tune)
        for name, metrics in report["baselines"].items():
            print(f"{name:<34} test {_line(name, metrics['test'])}")
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.evaluate_artifacts", description=__doc__.splitlines()[0])
    p.add_argument("--source", choices=SOURCES, default="movielens")
    p.add_argument("--data", default=None, help="what the source reads (as training.train_sasrec --data)")
    p.add_argument("--artifact", type=Path, action="append", required=True, help="model dir; the first ships")
    p.add_argument("--tune", action="store_true", help="tune the co-occurrence baseline on validation first")
    p.add_argument("--no-baselines", dest="baselines", action="store_false")
    p.add_argument("--out", type=Path, default=Path("out/eval/metrics.json"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.data is None:
        if args.source != "movielens":
            raise SystemExit(f"--data is required for --source {args.source}")
        from training.movielens import resolve_data_dir

        args.data = resolve_data_dir(None)
    artifacts = [a for i, a in enumerate(args.artifact) if i == 0 or (a / MODEL_FILE).is_file()]
    report = run(load_source(args.source, args.data), artifacts, args.tune, args.baselines)
    report["data"] = str(args.data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
