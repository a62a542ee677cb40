"""``python -m training.train_sasrec``: train the transformer, export fp32 + int8, report seeds and ablation.

    python -m training.train_sasrec --data DIR --seeds 0 1 2 \
        --out layers/model/sasrec --int8-out layers/model/sasrec/int8
    python -m training.train_sasrec --data DIR --ablation --seeds 0 --report out/sasrec/ablation.json
    python -m training.train_sasrec --data DIR --split-quantile 0.8 --out out/demo-model   # demo's time split

Leave-last-out (default): trained on each user's history minus the last two items, early-stopped
on the validation targets, measured on the test targets; the seed with the best validation
NDCG@10 ships. ``--split-quantile q`` instead trains on the earliest q of time for a fixed number
of epochs (no validation data inside the training period), which is what the demo replays against.
The vocabulary is the whole catalogue: items without training interactions get content-only vectors.
Needs ``requirements/train.txt`` (torch); single-threaded by default (``--threads``).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shared.model import OnnxRecommender
from training.content import content_matrix, genre_list
from training.sequences import TimedSplit, UserSeq, make_windows, timed_leave_last_out, user_sequences, vocab_for
from training.sources import SOURCES, Dataset, load_source

# What the evaluation reports, in the spelling.
METRIC_KEYS = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR")
ABLATION = (("ids only", False, False), ("+ content", True, False), ("+ content + context", True, True))


@dataclass(frozen=True)
class Prepared:
    dataset: Dataset
    vocab: list[str]
    content: NDArray[np.float32]
    has_id: NDArray[np.bool_]  # items with at least one training interaction
    split: TimedSplit | None  # leave-last-out; None for a time-split build
    train: list[UserSeq]
    window: dict[str, datetime]


def prepare(dataset: Dataset, quantile: float | None = None, cold_holdout: float = 0.0) -> Prepared:
    """Vocabulary (whole catalogue), content, training sequences and the split.

    ``cold_holdout`` > 0 removes that share of items (random, fixed seed) from the training part
    only, so their test targets measure what content alone recommends for a brand-new item.
    """
    vocab, lookup = vocab_for(dataset.item_ids, np.arange(1, len(dataset.item_ids)))
    interactions = dataset.interactions
    if quantile is not None:
        from training.movielens import time_split

        interactions, _ = time_split(interactions, quantile)
    sequences = user_sequences(interactions, lookup)
    split = None if quantile is not None else timed_leave_last_out(sequences)
    train = list(split.train.values() if split else sequences.values())
    if cold_holdout > 0:
        rng = np.random.default_rng(12345)
        held = rng.choice(np.arange(1, len(vocab)), size=int(cold_holdout * (len(vocab) - 1)), replace=False)
        train = [UserSeq(s.items[~np.isin(s.items, held)], s.times[~np.isin(s.items, held)]) for s in train]
        if split is not None:
            split = TimedSplit(split.users, dict(zip(split.train, train, strict=True)), split.valid, split.test)
    has_id = np.zeros(len(vocab), dtype=bool)
    for seq in train:
        has_id[seq.items] = True
    stamps = np.concatenate([seq.times for seq in train])
    window = {
        "start": datetime.fromtimestamp(int(stamps.min()), UTC),
        "end": datetime.fromtimestamp(int(stamps.max()), UTC),
    }
    content = content_matrix(vocab, dataset.catalog, genre_list(list(dataset.catalog.values())))
    return Prepared(dataset, vocab, content, has_id, split, train, window)


def cold_users(prep: Prepared, target: str = "test") -> list[int]:
    assert prep.split is not None
    cases = prep.split.test if target == "test" else prep.split.valid
    return [u for u in prep.split.users if not prep.has_id[cases[u][0]]]


def artifact_metrics(model_dir: Path, prep: Prepared) -> dict[str, dict[str, float]]:
    """Test, valid and cold-item test metrics of an exported artifact, through ``OnnxRecommender``."""
    from training.sasrec import rank_metrics, split_cases
    from training.sasrec_export import rank_with_recommender

    assert prep.split is not None
    rec = OnnxRecommender.from_dir(model_dir)
    out: dict[str, dict[str, float]] = {}
    for target in ("test", "valid"):
        histories, now, targets = split_cases(prep.split, target)
        ranks = rank_with_recommender(rec, prep.vocab, histories, now, targets)
        out[target] = rank_metrics(ranks)
        if target == "test":
            cold = np.asarray([prep.has_id[t] == 0 for t in targets])
            out["test_cold"] = {**rank_metrics(ranks[cold]), "users": float(cold.sum())} if cold.any() else {}
    return out


def cold_target_metrics(model: Any, split: TimedSplit, has_id: NDArray[np.bool_]) -> dict[str, dict[str, float]]:
    """Metrics on the valid and test users whose target item has no training interaction."""
    from training.sasrec import rank_metrics, rank_targets, split_cases

    out: dict[str, dict[str, float]] = {}
    for target in ("valid", "test"):
        histories, now, targets = split_cases(split, target)
        cold = ~has_id[np.asarray(targets)]
        if cold.any():
            ranks = rank_targets(model, histories, now, targets)[cold]
            out[target] = {**rank_metrics(ranks), "users": float(cold.sum())}
    return out


def mean_std(rows: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        key: {
            "mean": statistics.fmean(r[key] for r in rows),
            "std": statistics.stdev([r[key] for r in rows]) if len(rows) > 1 else 0.0,
        }
        for key in METRIC_KEYS
    }


def _log(message: str) -> None:
    print(message, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from training.build_model import build_time, code_version
    from training.sasrec import SasrecConfig, config_dict, evaluate_model, rank_metrics, rank_targets, to_weights, train
    from training.sasrec_export import export_sasrec

    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    dataset = load_source(args.source, args.data)
    prep = prepare(dataset, args.split_quantile, args.cold_holdout)
    base = SasrecConfig(
        max_len=args.max_len,
        dim=args.dim,
        blocks=args.blocks,
        heads=args.heads,
        dropout=args.dropout,
        id_dropout=args.id_dropout,
        lr=args.lr,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        epochs=args.epochs,
        warmup_epochs=args.warmup,
        cosine=args.cosine,
        mask_seen=args.mask_seen,
        mask_history=args.mask_history,
        eval_every=args.eval_every,
        patience=args.patience,
        cold_fill=args.cold_fill,
    )
    windows = make_windows(prep.train, base.max_len)
    _log(
        f"{dataset.source}: {len(prep.vocab) - 1} items ({int(prep.has_id.sum())} with training data), "
        f"{len(prep.train)} users, {len(windows)} windows of {base.max_len}"
    )
    report: dict[str, Any] = {"config": config_dict(base), "seeds": {}, "ablation": {}}
    variants = tuple(ABLATION[i] for i in args.variants) if args.ablation else (ABLATION[-1],)
    best: tuple[float, Any, dict[str, float]] | None = None
    for label, content, context in variants:
        rows = []
        for seed in args.seeds:
            cfg = replace(base, content=content, context=context, seed=seed)
            split = prep.split
            validate = None if split is None else (lambda m, s=split: evaluate_model(m, s, "valid")["NDCG@10"])
            _log(f"--- {label}, seed {seed}")
            model, info = train(cfg, windows, len(prep.vocab), prep.content, prep.has_id, validate, log=_log)
            row: dict[str, Any] = {"train": info}
            if split is not None and (~prep.has_id[1:]).any():
                # Both ways of scoring items without training data, on the users whose target is one.
                filled = copy.deepcopy(model)
                filled.fill_cold_ids()
                for name, candidate in (("content_only", model), ("id_fill", filled)):
                    row[f"cold_{name}"] = cold_target_metrics(candidate, split, prep.has_id)
                    _log(f"    cold, {name}: " + "  ".join(f"{t} {_short(m)}" for t, m in row[f"cold_{name}"].items()))
            if cfg.cold_fill:
                info["cold_filled"] = float(model.fill_cold_ids())
            if split is not None:
                from training.sasrec import split_cases

                histories, now, targets = split_cases(split, "test")
                cold = ~prep.has_id[np.asarray(targets)]
                row["valid"] = evaluate_model(model, split, "valid")
                ranks = rank_targets(model, histories, now, targets)
                row["test"] = rank_metrics(ranks)
                row["test_cold"] = {**rank_metrics(ranks[cold]), "users": float(cold.sum())} if cold.any() else {}
                _log(f"    valid NDCG@10 {row['valid']['NDCG@10']:.4f}  test {_short(row['test'])}")
                if cold.any():
                    _log(f"    cold ({int(cold.sum())} users): {_short(row['test_cold'])}")
            rows.append(row)
            if (label, content, context) == ABLATION[-1]:
                score = row["valid"]["NDCG@10"] if split is not None else -seed
                if best is None or score > best[0]:
                    best = (score, to_weights(model), {**info, "seed": float(seed)})
        summary: dict[str, Any] = {"runs": rows}
        if prep.split is not None:
            summary["test"] = mean_std([r["test"] for r in rows])
            summary["valid"] = mean_std([r["valid"] for r in rows])
        report["ablation" if args.ablation else "seeds"][label] = summary
        if prep.split is not None:
            _log(f"=== {label}: test " + _mean_std_line(summary["test"]))
    report["train_wall_seconds"] = time.perf_counter() - began
    if args.out is None or best is None:
        return report
    _, weights, info = best
    created = build_time()
    metrics: dict[str, float] = {
        "train_seconds": float(info["train_seconds"]),
        "best_epoch": float(info["best_epoch"]),
        "seed": float(info["seed"]),
        "train_users": float(len(prep.train)),
        "train_interactions": float(sum(s.items.size for s in prep.train)),
        "catalog_items": float(len(prep.vocab) - 1),
        "cold_items": float((~prep.has_id[1:]).sum()),
    }
    if args.split_quantile is not None:
        metrics["split_quantile"] = args.split_quantile
    full = report["seeds"].get(ABLATION[-1][0], {})
    for key in ("HR@10", "NDCG@10"):
        if "test" in full:
            metrics[f"seeds_test_{key}_mean"] = full["test"][key]["mean"]
            metrics[f"seeds_test_{key}_std"] = full["test"][key]["std"]
    common = {
        "item_vocab": prep.vocab,
        "training_data_sha256": dataset.sha256,
        "training_window": prep.window,
        "code_version": code_version(),
        "created_at": created,
    }
    destinations: list[tuple[Path, bool]] = [(args.out, False)] + ([(args.int8_out, True)] if args.int8_out else [])
    for out_dir, int8 in destinations:
        export_sasrec(out_dir, weights, metrics=metrics, int8=int8, **common)  # type: ignore[arg-type]
        if prep.split is not None:
            measured = artifact_metrics(out_dir, prep)
            final = dict(metrics)
            for target, values in measured.items():
                final.update({f"{target}_{k}": v for k, v in values.items()})
            manifest = export_sasrec(out_dir, weights, metrics=final, int8=int8, **common)  # type: ignore[arg-type]
            report["int8" if int8 else "fp32"] = {"version": manifest.version, **measured}
            _log(f"{manifest.version}: test {_short(measured['test'])}  cold {_short(measured['test_cold'])}")
        size = (out_dir / "model.onnx").stat().st_size
        report.setdefault("sizes_bytes", {})[str(out_dir)] = size
        _log(f"wrote {out_dir}/model.onnx ({size / 1e6:.2f} MB)")
    report["total_wall_seconds"] = time.perf_counter() - began
    return report


def _short(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in ("HR@10", "NDCG@10") if k in metrics)


def _mean_std_line(summary: dict[str, dict[str, float]]) -> str:
    return "  ".join(f"{k} {summary[k]['mean']:.4f} ± {summary[k]['std']:.4f}" for k in ("HR@10", "NDCG@10"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train_sasrec", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="ml-100k folder, CSV file, or archive s3://bucket/prefix/ or folder")
    p.add_argument("--source", choices=SOURCES, default="movielens")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ablation", action="store_true", help="ids only / + content / + content + context")
    p.add_argument("--variants", type=int, nargs="+", default=[0, 1, 2], help="which ablation rows to train")
    p.add_argument("--split-quantile", type=float, default=None, help="train on this earliest share of time instead")
    p.add_argument("--out", type=Path, default=None, help="write model.onnx + manifest.json here")
    p.add_argument("--int8-out", type=Path, default=None, help="and the int8 variant here")
    p.add_argument("--report", type=Path, default=None, help="write the full report as JSON")
    p.add_argument("--cold-holdout", type=float, default=0.0, help="hide this share of items from training")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--id-dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--warmup", type=int, default=1, help="epochs of linear learning-rate warm-up")
    on_off = argparse.BooleanOptionalAction
    p.add_argument("--cosine", action=on_off, default=True, help="cosine learning-rate decay over --epochs")
    p.add_argument("--mask-seen", action=on_off, default=True, help="earlier window items leave the training softmax")
    p.add_argument("--mask-history", action=on_off, default=True, help="and the user's items before the window")
    p.add_argument("--eval-every", type=int, default=2, help="epochs between validation checks")
    p.add_argument("--patience", type=int, default=6, help="validation checks without a gain before stopping")
    p.add_argument("--cold-fill", action=on_off, default=False, help="ridge-predict id vectors of items without data")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.data is None and args.source == "movielens":
        from training.movielens import resolve_data_dir

        args.data = resolve_data_dir(None)
    report = run(args)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
        _log(f"wrote {args.report}")
    _log(f"total {report.get('total_wall_seconds', report['train_wall_seconds']):.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
