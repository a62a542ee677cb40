"""``python -m training.train_sasrec``: train the transformer, export fp32 + int8, report seeds and ablation.

    python -m training.train_sasrec --data DIR --seeds 0 1 2 \
        --out layers/model/sasrec --int8-out layers/model/sasrec/int8
    python -m training.train_sasrec --source sequences --data ../shared/datasets/yelp/yelp.txt --out DIR
    python -m training.train_sasrec --data DIR --ablation --seeds 0 --report out/sasrec/ablation.json
    python -m training.train_sasrec --data DIR --split-quantile 0.8 --out out/demo-model   # demo's time split

Leave-last-out (default): trained on each user's history minus the last two items, early-stopped
on the validation targets, measured on the test targets; the seed with the best validation
NDCG@10 ships. Every evaluation asks at decision time, as decide does: the request time is the
newest history event's (``training.sequences.request_time``); + 1 h and the target's own time
(an upper bound) are reported beside it. ``--split-quantile q`` instead trains on the earliest q of
time for a fixed number of epochs (no validation data inside the training period), which is what
the demo replays against.

The recipe sizes itself from the data (``training.recipe``: batch, epochs, checks, patience, full or
sampled softmax, time context only with real times, a wall-clock budget); any flag given wins.
After training, the transformer is fused with item co-occurrence counted on the same training part
(``SasrecWeights.with_cooc``), its weight picked on the validation targets. The report (``--report``)
is rewritten at every validation check, so a run cut short still leaves its progress.
The vocabulary is the whole catalogue: items without training interactions get content-only vectors.
Needs ``requirements/train.txt`` (torch); single-threaded by default (``--threads``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shared.model import OnnxRecommender
from training.content import content_matrix, genre_list, year_matrix
from training.cooccurrence import CoocConfig, build_cooccurrence
from training.onnx_export import ModelArrays
from training.recipe import TIME_BUDGET_S, DataShape, auto_config, describe
from training.sequences import (
    PLUS_1H,
    TARGET_TIME,
    TimedSplit,
    UserSeq,
    Windows,
    make_windows,
    shuffle_ties,
    timed_leave_last_out,
    user_sequences,
    vocab_for,
)
from training.sources import SOURCES, Dataset, load_source

# What the evaluation reports, in the issue's spelling.
METRIC_KEYS = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR")
ABLATION = (("ids only", False, False), ("+ content", True, False), ("+ content + context", True, True))
# Co-occurrence weights tried on the validation targets (0 = the transformer alone).
COOC_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
# The cold-item diagnostics (two extra evaluations) run when at least this many targets are cold.
MIN_COLD_TARGETS = 20
# Without validation targets (a time-split build) the fused weight is this one.
DEFAULT_COOC_WEIGHT = 1.0


@dataclass(frozen=True)
class Prepared:
    dataset: Dataset
    vocab: list[str]
    content: NDArray[np.float32]
    has_id: NDArray[np.bool_]  # items with at least one training interaction
    split: TimedSplit | None  # leave-last-out; None for a time-split build
    train: list[UserSeq]
    window: dict[str, datetime]


def prepare(
    dataset: Dataset,
    quantile: float | None = None,
    cold_holdout: float = 0.0,
    years: bool = False,
    text_vectors: Path | None = None,
) -> Prepared:
    """Vocabulary (whole catalogue), content, training sequences and the split.

    ``cold_holdout`` > 0 removes that share of items (random, fixed seed) from the training part
    only, so their test targets measure what content alone recommends for a brand-new item.
    ``years`` adds the one-hot release year of recent years to the content (``content.year_matrix``);
    ``text_vectors`` (an ``.npz`` of ``item_ids`` and ``vectors``, e.g. MiniLM sentence vectors of each
    item's text, ``bench.cold_items``) adds each item's vector (zero for items it does not list).
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
    if years:
        content = np.concatenate([content, year_matrix(vocab, dataset.catalog)], axis=1)
    if text_vectors is not None:
        content = np.concatenate([content, vectors_by_item(vocab, text_vectors)], axis=1)
    # Columns no item uses (title buckets of an untitled catalogue) or all items share carry nothing.
    varies = content[1:].max(axis=0) > content[1:].min(axis=0)
    return Prepared(dataset, vocab, np.ascontiguousarray(content[:, varies]), has_id, split, train, window)


def vectors_by_item(vocab: Sequence[str], path: Path) -> NDArray[np.float32]:
    """[V, D] rows of an ``.npz`` (``item_ids``, ``vectors``) in vocabulary order; unlisted items are zero."""
    with np.load(path) as stored:
        ids = [str(i) for i in stored["item_ids"]]
        vectors = np.asarray(stored["vectors"], dtype=np.float32)
    row = {item: n for n, item in enumerate(ids)}
    out = np.zeros((len(vocab), vectors.shape[1]), dtype=np.float32)
    for index, item in enumerate(vocab):
        if index and item in row:
            out[index] = vectors[row[item]]
    return out


def cold_users(prep: Prepared, target: str = "test") -> list[int]:
    assert prep.split is not None
    cases = prep.split.test if target == "test" else prep.split.valid
    return [u for u in prep.split.users if not prep.has_id[cases[u][0]]]


def artifact_metrics(model_dir: Path, prep: Prepared) -> dict[str, dict[str, float]]:
    """Decision-time test and valid, test + 1 h, test at the target's time, and cold-item test metrics
    of an exported artifact, through ``OnnxRecommender`` exactly as decide calls it."""
    from training.decision_eval import artifact_ranks, rank_metrics, split_cases
    from training.evaluate_artifacts import is_quantised
    from training.sequences import DECISION, REQUEST_OFFSETS

    assert prep.split is not None
    rec = OnnxRecommender.from_dir(model_dir)
    batch = 1 if is_quantised(model_dir) else 256
    out: dict[str, dict[str, float]] = {}
    for target in ("test", "valid"):
        cases = split_cases(prep.split, prep.vocab, target)
        for mode in REQUEST_OFFSETS if target == "test" else (DECISION,):
            ranks = artifact_ranks(rec, cases, mode, batch)
            key = target if mode == DECISION else f"{target}_{mode}"
            out[key] = rank_metrics(ranks)
            if key == "test":
                index = {item: i for i, item in enumerate(prep.vocab)}
                cold = np.asarray([not prep.has_id[index[c.target]] for c in cases])
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


def cold_targets(prep: Prepared) -> int:
    """Validation and test targets without any training interaction."""
    assert prep.split is not None
    split = prep.split
    return sum(int(not prep.has_id[split.valid[u][0]]) + int(not prep.has_id[split.test[u][0]]) for u in split.users)


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


class ReportFile:
    """The report JSON, rewritten atomically whenever it changes (every check), not only at the end."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self, report: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, self.path)


def data_shape(prep: Prepared, windows: Windows) -> DataShape:
    return DataShape(
        users=len(prep.train),
        items=len(prep.vocab) - 1,
        warm_items=int(prep.has_id[1:].sum()),
        windows=len(windows),
        targets=int((windows.targets != 0).sum()),
        timed=prep.dataset.timed,
        content=prep.content.shape[1] > 0,
        mean_length=float((windows.items != 0).sum(axis=1).mean()) if len(windows) else 0.0,
    )


# Fields ``training.recipe.auto_config`` chooses; a flag given on the command line wins over it.
AUTO_FIELDS = {
    "batch_size": "batch_size",
    "epochs": "epochs",
    "eval_every": "eval_every",
    "patience": "patience",
    "negatives": "negatives",
    "bucket": "bucket",
}


def windows_for(prep: Prepared, cfg: Any, sequences: Sequence[UserSeq] | None = None) -> Windows:
    return make_windows(
        prep.train if sequences is None else sequences,
        cfg.max_len,
        "target" if cfg.request == "target" else "decision",
        cfg.stride or None,
        cfg.future,
        cfg.future_horizon_s,
    )


def configure(args: argparse.Namespace, prep: Prepared) -> tuple[Any, Windows, DataShape]:
    """The recipe for this data: the fixed defaults, the data-sized fields, then the explicit flags."""
    from training.sasrec import SasrecConfig

    base = SasrecConfig(
        max_len=args.max_len,
        dim=args.dim,
        blocks=args.blocks,
        heads=args.heads,
        dropout=args.dropout,
        id_dropout=args.id_dropout,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup,
        cosine=args.cosine,
        mask_seen=args.mask_seen,
        mask_history=args.mask_history,
        cold_fill=args.cold_fill,
        cold_loss=args.cold_loss,
        cold_negatives=args.cold_negatives,
        request=args.request,
        stride=min(args.max_len, args.stride) if args.stride else max(1, args.max_len // 2),
        future=args.future,
        future_horizon_s=args.future_horizon,
        future_weight=args.future_weight,
        shuffle_ties=args.shuffle_ties,
        content=args.content,
        context=args.context,
        query_context=args.query_context,
    )
    windows = windows_for(prep, base)
    shape = data_shape(prep, windows)
    cfg = auto_config(shape, base)
    explicit = {field: getattr(args, name) for name, field in AUTO_FIELDS.items() if getattr(args, name) is not None}
    return replace(cfg, **explicit), windows, shape


def with_valid_items(prep: Prepared) -> Prepared:
    """The training part plus every evaluated user's validation item: what a refit learns from."""
    assert prep.split is not None
    split = prep.split
    index = {id(seq): user for user, seq in split.train.items()}
    train = []
    for seq in prep.train:
        user = index.get(id(seq))
        if user is not None and user in split.valid:
            item, ts = split.valid[user]
            seq = UserSeq(np.r_[seq.items, item], np.r_[seq.times, ts])
        train.append(seq)
    has_id = prep.has_id.copy()
    for seq in train:
        has_id[seq.items] = True
    return replace(prep, train=train, has_id=has_id, split=None)


def cooc_for(prep: Prepared, max_len: int) -> ModelArrays:
    """Item co-occurrence counted on exactly the transformer's training part, over its vocabulary."""
    sequences = {n: seq.items for n, seq in enumerate(prep.train)}
    return build_cooccurrence(sequences, len(prep.vocab), CoocConfig(max_history=max_len))


def pick_cooc_weight(model: Any, cooc: ModelArrays, split: TimedSplit, weights: Sequence[float]) -> dict[str, float]:
    """Validation NDCG@10 (decision time) of the fused model for each weight; the model keeps the best."""
    from training.sasrec import evaluate_model

    tried: dict[str, float] = {}
    for weight in weights:
        model.attach_cooc(cooc, weight)
        tried[f"{weight:g}"] = evaluate_model(model, split, "valid")["NDCG@10"]
    best = max(weights, key=lambda w: (tried[f"{w:g}"], -w))
    model.attach_cooc(cooc, best)
    return {"weight": best, **{f"valid_NDCG@10_at_{k}": v for k, v in tried.items()}}


@dataclass
class _Training:
    """What every seed of one ``run`` shares: the options, the data, the windows, the report."""

    args: argparse.Namespace
    prep: Prepared
    windows: Windows
    cooc: ModelArrays | None
    budget: float
    file: ReportFile
    report: dict[str, Any]


# The kept model: validation score, its weights, its training info (with its seed).
Best = tuple[float, Any, dict[str, float]]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from training.sasrec import config_dict

    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    dataset = load_source(args.source, args.data)
    if args.before is not None:
        dataset = dataset.before(args.before)
    prep = prepare(dataset, args.split_quantile, args.cold_holdout, args.content_years, args.content_text_vectors)
    base, windows, shape = configure(args, prep)
    _log_recipe(dataset, shape, base)
    budget = args.time_budget if args.time_budget is not None else TIME_BUDGET_S
    cooc = cooc_for(prep, base.max_len) if args.cooc_weight != 0 else None
    report: dict[str, Any] = {
        "config": config_dict(base),
        "recipe": describe(shape, base),
        "time_budget_s": budget,
        "seeds": {},
        "ablation": {},
    }
    training = _Training(args, prep, windows, cooc, budget, ReportFile(args.report), report)
    training.file.write(report)
    best = _train_variants(training, base)
    report["train_wall_seconds"] = time.perf_counter() - began
    training.file.write(report)
    if args.out is None or best is None:
        return report
    _export_best(training, best)
    report["total_wall_seconds"] = time.perf_counter() - began
    training.file.write(report)
    return report


def _log_recipe(dataset: Dataset, shape: DataShape, base: Any) -> None:
    _log(
        f"{dataset.source}: {shape.items} items ({shape.warm_items} with training data), {shape.users} users, "
        f"{shape.windows} windows of {base.max_len}, {shape.targets} targets"
    )
    _log(
        f"recipe: batch {base.batch_size}, up to {base.epochs} epochs, check every {base.eval_every}, patience "
        f"{base.patience}, {'full softmax' if not base.negatives else f'{base.negatives} sampled negatives'}, "
        f"content {'on' if base.content else 'off'}, time context {'on' if base.context else 'off'}"
    )


def _train_variants(training: _Training, base: Any) -> Best | None:
    """Every (variant, seed); returns the full variant's seed with the best validation score."""
    from training.sasrec import to_weights

    args, split = training.args, training.prep.split
    variants = tuple(ABLATION[i] for i in args.variants) if args.ablation else (ABLATION[-1],)
    best: Best | None = None
    for label, content, context in variants:
        rows: list[dict[str, Any]] = []
        summary: dict[str, Any] = {"runs": rows}
        training.report["ablation" if args.ablation else "seeds"][label] = summary
        for seed in args.seeds:
            cfg = replace(base, content=content and base.content, context=context and base.context, seed=seed)
            _log(f"--- {label}, seed {seed}")
            row: dict[str, Any] = {"seed": seed, "checks": []}
            rows.append(row)
            model = _train_seed(training, cfg, row)
            training.file.write(training.report)
            weights = to_weights(model)
            if args.save_weights is not None:
                args.save_weights.mkdir(parents=True, exist_ok=True)
                weights.save(str(args.save_weights / f"{label.replace(' ', '')}-seed{seed}.npz"))
            if (label, content, context) == ABLATION[-1]:
                score = row["valid"]["NDCG@10"] if split is not None else -seed
                if best is None or score > best[0]:
                    best = (score, weights, {**row["train"], "seed": float(seed)})
        if split is not None:
            for key in ("test", "valid", "test_plus_1h", "test_target_time"):
                summary[key] = mean_std([r[key] for r in rows])
            _log(f"=== {label}: test (decision time) " + _mean_std_line(summary["test"]))
        training.file.write(training.report)
    return best


def _train_seed(training: _Training, cfg: Any, row: dict[str, Any]) -> Any:
    """One seed: train, the cold diagnostics, the fused co-occurrence, evaluation and the optional refit."""
    from training.sasrec import evaluate_model, train

    prep, split = training.prep, training.prep.split
    validate = None if split is None else (lambda m, s=split: evaluate_model(m, s, "valid")["NDCG@10"])

    def on_check(check: dict[str, float], row: dict[str, Any] = row) -> None:
        row["checks"].append(check)
        training.file.write(training.report)

    remake = None
    if cfg.shuffle_ties:
        training.windows = windows_for(prep, cfg, shuffle_ties(prep.train, np.random.default_rng(cfg.seed)))

        def remake(rng: np.random.Generator, cfg: Any = cfg) -> Windows:
            return windows_for(prep, cfg, shuffle_ties(prep.train, rng))

    model, info = train(
        cfg,
        training.windows,
        len(prep.vocab),
        prep.content,
        prep.has_id,
        validate,
        _log,
        on_check,
        training.budget,
        remake,
    )
    row["train"] = info
    _log(
        f"    {info['epochs']:.0f} epochs ({info['seconds_per_epoch']:.1f} s each), "
        f"best {info['best_epoch']:.0f}" + (", stopped by the time budget" if info["stopped_by_time_budget"] else "")
    )
    if split is not None and training.args.cold_report and cold_targets(prep) >= MIN_COLD_TARGETS:
        _cold_diagnostics(model, split, prep, row)
    if cfg.cold_fill:
        info["cold_filled"] = float(model.fill_cold_ids())
    if training.cooc is not None:
        _fuse(training, model, training.cooc, row)
    if split is not None:
        cases = _evaluate(model, split, prep, row)
        if training.args.refit:
            model = _refit(training, cfg, row, cases)
    return model


def _cold_diagnostics(model: Any, split: TimedSplit, prep: Prepared, row: dict[str, Any]) -> None:
    """Both ways of scoring items without training data, on the users whose target is one."""
    filled = copy.deepcopy(model)
    filled.fill_cold_ids()
    for name, candidate in (("content_only", model), ("id_fill", filled)):
        row[f"cold_{name}"] = cold_target_metrics(candidate, split, prep.has_id)
        _log(f"    cold, {name}: " + "  ".join(f"{t} {_short(m)}" for t, m in row[f"cold_{name}"].items()))


def _fuse(training: _Training, model: Any, cooc: ModelArrays, row: dict[str, Any]) -> None:
    """Attach the co-occurrence term: its weight picked on validation unless one was given."""
    from training.sasrec import evaluate_model

    split, chosen = training.prep.split, training.args.cooc_weight
    if split is not None:
        # The transformer on its own, for the ablation (the fused model's numbers follow).
        row["transformer_only"] = {target: evaluate_model(model, split, target) for target in ("valid", "test")}
    if split is not None and chosen is None:
        row["cooc"] = pick_cooc_weight(model, cooc, split, COOC_WEIGHTS)
    else:
        weight = DEFAULT_COOC_WEIGHT if chosen is None else chosen
        model.attach_cooc(cooc, weight)
        row["cooc"] = {"weight": weight}
    _log(f"    fused with co-occurrence, weight {row['cooc']['weight']:g}")


Cases = tuple[Any, Any, Any]  # histories, request times, targets of the test split


def _evaluate(model: Any, split: TimedSplit, prep: Prepared, row: dict[str, Any]) -> Cases:
    """Decision-time valid and test, test + 1 h and at the target's time (upper bound), cold test."""
    from training.sasrec import evaluate_model, rank_metrics, rank_targets, split_cases

    histories, now, targets = split_cases(split, "test")
    cold = ~prep.has_id[np.asarray(targets)]
    row["valid"] = evaluate_model(model, split, "valid")
    ranks = rank_targets(model, histories, now, targets)
    row["test"] = rank_metrics(ranks)
    for mode in (PLUS_1H, TARGET_TIME):
        row[f"test_{mode}"] = evaluate_model(model, split, "test", mode)
    row["test_cold"] = {**rank_metrics(ranks[cold]), "users": float(cold.sum())} if cold.any() else {}
    _log(f"    valid NDCG@10 {row['valid']['NDCG@10']:.4f}  test (decision time) {_short(row['test'])}")
    _log(
        f"    test + 1 h {_short(row['test_plus_1h'])}  at the target's time (upper bound) "
        f"{_short(row['test_target_time'])}"
    )
    return histories, now, targets


def _refit(training: _Training, cfg: Any, row: dict[str, Any], cases: Cases) -> Any:
    """Same seed, same schedule, stopped at the validated best epoch; + every valid item."""
    from training.sasrec import evaluate_model, rank_metrics, rank_targets, train

    prep, info = training.prep, row["train"]
    assert prep.split is not None
    refit_prep = with_valid_items(prep)
    _log(f"    refit on the training part + validation items, {info['best_epoch']:.0f} epochs")
    refit_model, refit_info = train(
        cfg,
        windows_for(refit_prep, cfg),
        len(prep.vocab),
        prep.content,
        refit_prep.has_id,
        None,
        _log,
        None,
        training.budget,
        None,
        int(info["best_epoch"]),
    )
    if training.cooc is not None:
        refit_model.attach_cooc(cooc_for(refit_prep, cfg.max_len), row["cooc"]["weight"])
    row["validated"] = {key: row[key] for key in ("valid", "test", "test_plus_1h", "test_target_time")}
    row["refit"] = refit_info
    ranks = rank_targets(refit_model, *cases)
    row["test"] = rank_metrics(ranks)
    for mode in (PLUS_1H, TARGET_TIME):
        row[f"test_{mode}"] = evaluate_model(refit_model, prep.split, "test", mode)
    _log(f"    refit: test (decision time) {_short(row['test'])}, + 1 h {_short(row['test_plus_1h'])}")
    return refit_model


def _manifest_metrics(training: _Training, weights: Any, info: dict[str, float]) -> dict[str, float]:
    args, prep = training.args, training.prep
    metrics: dict[str, float] = {
        "train_seconds": float(info["train_seconds"]),
        "best_epoch": float(info["best_epoch"]),
        "seed": float(info["seed"]),
        "cooc_weight": float(weights.cooc_weight),
        "refit": float(bool(args.refit and prep.split is not None)),
        "train_users": float(len(prep.train)),
        "train_interactions": float(sum(s.items.size for s in prep.train)),
        "catalog_items": float(len(prep.vocab) - 1),
        "cold_items": float((~prep.has_id[1:]).sum()),
    }
    if args.split_quantile is not None:
        metrics["split_quantile"] = args.split_quantile
    full = training.report["seeds"].get(ABLATION[-1][0], {})
    for key in ("HR@10", "NDCG@10"):
        if "test" in full:
            metrics[f"seeds_test_{key}_mean"] = full["test"][key]["mean"]
            metrics[f"seeds_test_{key}_std"] = full["test"][key]["std"]
    return metrics


def _export_best(training: _Training, best: Best) -> None:
    """The kept model as fp32 (and int8) artifacts, each evaluated through ``OnnxRecommender``."""
    from training.build_model import build_time, code_version
    from training.sasrec_export import export_sasrec

    args, prep, report = training.args, training.prep, training.report
    _, weights, info = best
    created = build_time()
    metrics = _manifest_metrics(training, weights, info)
    common = {
        "item_vocab": prep.vocab,
        "training_data_sha256": prep.dataset.sha256,
        "training_window": prep.window,
        "code_version": code_version(),
        "created_at": created,
    }
    destinations: list[tuple[Path, bool]] = [(args.out, False)] + ([(args.int8_out, True)] if args.int8_out else [])
    for out_dir, int8 in destinations:
        export_sasrec(out_dir, weights, metrics=metrics, int8=int8, **common)  # type: ignore[arg-type]
        if prep.split is not None:
            evaluated = time.perf_counter()
            measured = artifact_metrics(out_dir, prep)
            final = dict(metrics)
            for target, values in measured.items():
                final.update({f"{target}_{k}": v for k, v in values.items()})
            manifest = export_sasrec(out_dir, weights, metrics=final, int8=int8, **common)  # type: ignore[arg-type]
            seconds = time.perf_counter() - evaluated
            report["int8" if int8 else "fp32"] = {"version": manifest.version, "eval_seconds": seconds, **measured}
            _log(
                f"{manifest.version}: test (decision time) {_short(measured['test'])}, + 1 h "
                f"{_short(measured['test_plus_1h'])}, at the target's time {_short(measured['test_target_time'])} "
                f"({seconds:.0f}s to evaluate)"
            )
        size = (out_dir / "model.onnx").stat().st_size
        report.setdefault("sizes_bytes", {})[str(out_dir)] = size
        _log(f"wrote {out_dir}/model.onnx ({size / 1e6:.2f} MB)")
        training.file.write(report)


def _short(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in ("HR@10", "NDCG@10") if k in metrics)


def _mean_std_line(summary: dict[str, dict[str, float]]) -> str:
    return "  ".join(f"{k} {summary[k]['mean']:.4f} ± {summary[k]['std']:.4f}" for k in ("HR@10", "NDCG@10"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train_sasrec", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="ml-100k folder, CSV file, or archive s3://bucket/prefix/ or folder")
    p.add_argument("--source", choices=SOURCES, default="movielens")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed (make train: 0 1 2)")
    p.add_argument("--ablation", action="store_true", help="ids only / + content / + content + context")
    p.add_argument("--variants", type=int, nargs="+", default=[0, 1, 2], help="which ablation rows to train")
    p.add_argument("--split-quantile", type=float, default=None, help="train on this earliest share of time instead")
    p.add_argument("--before", type=int, default=None, help="only events before this epoch second (retraining's T)")
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
    p.add_argument("--batch-size", type=int, default=None, help="default: sized from the data (training.recipe)")
    p.add_argument("--epochs", type=int, default=None, help="default: sized from the data")
    p.add_argument("--warmup", type=int, default=1, help="epochs of linear learning-rate warm-up")
    on_off = argparse.BooleanOptionalAction
    p.add_argument("--cosine", action=on_off, default=True, help="cosine learning-rate decay over --epochs")
    p.add_argument("--mask-seen", action=on_off, default=True, help="earlier window items leave the training softmax")
    p.add_argument("--mask-history", action=on_off, default=True, help="and the user's items before the window")
    p.add_argument("--eval-every", type=int, default=None, help="epochs between validation checks (default: sized)")
    p.add_argument("--patience", type=int, default=None, help="checks without a validation gain before stopping")
    p.add_argument("--time-budget", type=float, default=None, help=f"seconds of training (default {TIME_BUDGET_S:.0f})")
    p.add_argument(
        "--cooc-weight", type=float, default=None, help="fused co-occurrence weight (default: picked on valid)"
    )
    p.add_argument("--content", action=on_off, default=True, help="content features (when the catalogue has any)")
    p.add_argument("--context", action=on_off, default=True, help="time context (when the source has real times)")
    p.add_argument("--refit", action=on_off, default=False, help="retrain on train + valid items for the best epochs")
    p.add_argument("--query-context", action=on_off, default=True, help="the request time's hour/weekday/gap")
    p.add_argument("--bucket", action=on_off, default=None, help="batches of similar length (default: sized)")
    p.add_argument(
        "--cold-report", action=on_off, default=True, help="metrics on cold-item targets (when there are enough)"
    )
    p.add_argument("--save-weights", type=Path, default=None, help="keep each run's weights (npz) here")
    p.add_argument("--negatives", type=int, default=None, help="sampled negatives (0 = full softmax; default: sized)")
    p.add_argument("--future", type=int, default=0, help="the next N items (within the horizon) are positives too")
    p.add_argument("--future-horizon", type=int, default=3600, help="seconds after the target")
    p.add_argument("--future-weight", type=float, default=0.0, help="weight of their own loss terms")
    p.add_argument("--shuffle-ties", action=on_off, default=False, help="same-second events in random order")
    p.add_argument(
        "--stride",
        type=int,
        default=None,
        help="training windows overlap by max_len - stride (default max_len // 2; max_len: no overlap)",
    )
    p.add_argument(
        "--request",
        choices=("target", "decision", "sampled"),
        default="decision",
        help="training request time: the target's, the newest input's (decide on the stream), or drawn between",
    )
    p.add_argument("--cold-fill", action=on_off, default=False, help="ridge-predict id vectors of items without data")
    p.add_argument(
        "--content-years", action=on_off, default=False, help="one-hot release year of recent years in the content"
    )
    p.add_argument(
        "--content-text-vectors",
        type=Path,
        default=None,
        help="npz (item_ids, vectors) of item text vectors added to the content (python -m bench.cold_items)",
    )
    p.add_argument(
        "--cold-negatives",
        action=on_off,
        default=True,
        help="with --cold-loss: warm items' content-only vectors compete too",
    )
    p.add_argument(
        "--cold-loss",
        type=float,
        default=0.0,
        help="weight of a second loss term scoring each target by its content vector alone (cold items)",
    )
    return p


def sagemaker_defaults(args: argparse.Namespace, environ: Mapping[str, str]) -> argparse.Namespace:
    """SageMaker's script-mode conventions, where its training container sets them: the ``train`` channel
    is the data (a folder: the archive's files, or the one CSV/sequences file in it), the model goes to
    SM_MODEL_DIR (its int8 twin in ``int8/`` beside), the report to SM_OUTPUT_DATA_DIR. Hyperparameters
    arrive as the command-line options. What the command line sets wins."""
    channel = environ.get("SM_CHANNEL_TRAIN")
    if args.data is None and channel:
        files = sorted(p for p in Path(channel).iterdir() if p.is_file())
        single_file = args.source in ("csv", "sequences") and len(files) == 1
        args.data = str(files[0] if single_file else channel)
    model_dir = environ.get("SM_MODEL_DIR")
    if args.out is None and model_dir:
        args.out = Path(model_dir)
        args.int8_out = args.int8_out or Path(model_dir) / "int8"
    output_dir = environ.get("SM_OUTPUT_DATA_DIR")
    if args.report is None and output_dir:
        args.report = Path(output_dir) / "report.json"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = sagemaker_defaults(parser().parse_args(argv), os.environ)
    if args.data is None and args.source == "movielens":
        from training.movielens import resolve_data_dir

        args.data = resolve_data_dir(None)
    report = run(args)
    if args.report:
        _log(f"wrote {args.report}")
    _log(f"total {report.get('total_wall_seconds', report['train_wall_seconds']):.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
