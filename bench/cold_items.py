"""``python -m bench.cold_items``: which item representation recommends cold items (issue 12, item 3).

    python -m bench.cold_items --data ../shared/datasets/ml-100k --budget 300 --out out/cold/report.json

``--cold-holdout 0.05`` of the trainer (84 of the 1,682 ML-100k items hidden from training, fixed
seed), one seed, the default recipe except a fixed, shorter cosine schedule (``--epochs``) and a
training time budget per run, so every variant gets the same schedule and the whole bench finishes.
Each variant is trained once and then measured at decision time (the request time is the newest
history event's, as decide asks) in three scorings of the same weights:

- ``transformer``: the transformer alone (cold items get their content-only vectors);
- ``fused``: + the co-occurrence term, its weight picked on validation, as ``make train`` ships it.
  A cold item has no neighbours and no count, so the term gives it ``weight x log(0.001)``;
- ``fused_prior``: the same, but each cold item's co-occurrence popularity prior (the only per-item
  number of the term) is predicted from content (ridge on the warm items' log prior);
- ``fused_twins``: a cold item's co-occurrence term is the mean of its ``TWINS`` content-nearest warm
  items' terms, per user.

For each: all users' test NDCG@10 / HR@10, the users whose target is warm, and the users whose
target is cold (HR@10, HR@20, MRR, and the ranks of their targets). For transformer, fused and
fused_twins also (``offset_scan``): a constant added to every cold item's score, scanned, the one
chosen on validation (warm-target NDCG@10 within ``WARM_TOLERANCE``), and ``slot``: each user's
best-scored cold item at position ``SLOT``, the warm items around it. The MiniLM text vectors
("Title (year). Genres: a, b.") are computed once with ``out/encoder/model.onnx`` (``make encoder``)
and cached in ``out/cold/item_text_minilm.npz`` (``item_ids``, ``vectors``: what
``train_sasrec --content-text-vectors`` reads). Weights are kept in ``out/cold/NAME.pt``;
``--rescore`` scores them again without training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.content import CatalogItem, year_matrix
from training.train_sasrec import Prepared, configure, cooc_for, parser, prepare

TEXT_BATCH = 64
TWINS = 10  # content-nearest warm items whose co-occurrence term a cold item borrows
OFFSETS = tuple(float(d) for d in np.arange(-12.0, 24.5, 0.5))  # added to cold items' scores (offset_scan)
SLOT = 10  # slot_metrics: the position reserved for the best cold item
WARM_TOLERANCE = 0.01  # the offset may cost warm-target users this share of valid NDCG@10


@dataclass(frozen=True)
class Variant:
    name: str
    content: bool = True
    years: bool = False  # one-hot release year for recent years (training.content.year_matrix)
    text: bool = False  # the MiniLM vector of the item's text
    cold_loss: float = 0.0
    cold_negatives: bool = True  # the cold loss's content-only competitors (SasrecConfig.cold_negatives)
    id_dropout: float = 0.1


VARIANTS = {
    v.name: v
    for v in (
        Variant("no_content", content=False),
        Variant("content"),
        Variant("content_years", years=True),
        Variant("content_text", text=True),
        Variant("content_years_text", years=True, text=True),
        Variant("content_years_text_coldloss", years=True, text=True, cold_loss=0.5, cold_negatives=False),
        Variant("content_years_coldloss", years=True, cold_loss=0.5, cold_negatives=False),
        Variant("content_years_text_coldneg", years=True, text=True, cold_loss=0.5),
        Variant("content_years_coldneg", years=True, cold_loss=0.5),
        Variant("content_text_coldneg", text=True, cold_loss=0.5),
        Variant("content_years_text_iddrop03", years=True, text=True, id_dropout=0.3),
    )
}


def item_text(item: CatalogItem) -> str:
    genres = ", ".join(item.genres)
    return f"{item.title}. Genres: {genres}." if genres else item.title


def text_vectors(prep: Prepared, encoder_dir: Path, cache: Path) -> NDArray[np.float32]:
    """[V, 384] MiniLM vectors in vocabulary order (row 0 and items without a catalogue entry: zero)."""
    texts = [""] + [item_text(prep.dataset.catalog.get(i, CatalogItem(i))) for i in prep.vocab[1:]]
    if cache.is_file():
        cached = np.load(cache)
        if list(cached["texts"]) == texts:
            return np.asarray(cached["vectors"], dtype=np.float32)
    from shared.adapters.text_encoder import OnnxTextEncoder

    encoder = OnnxTextEncoder.from_files(encoder_dir / "model.onnx", encoder_dir / "tokenizer.json")
    began = time.perf_counter()
    rows = [encoder.encode(texts[start : start + TEXT_BATCH]) for start in range(1, len(texts), TEXT_BATCH)]
    vectors = np.concatenate([np.zeros((1, rows[0].shape[1]), dtype=np.float32), *rows])
    print(f"encoded {len(texts) - 1} item texts in {time.perf_counter() - began:.1f}s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    # item_ids + vectors is what ``train_sasrec --content-text-vectors`` reads (row 0 is padding).
    np.savez(cache, item_ids=np.asarray(prep.vocab), texts=np.asarray(texts), vectors=vectors)
    return vectors


def content_for(variant: Variant, prep: Prepared, text: NDArray[np.float32] | None) -> NDArray[np.float32]:
    blocks = [prep.content]
    if variant.years:
        blocks.append(year_matrix(prep.vocab, prep.dataset.catalog))
    if variant.text:
        assert text is not None
        blocks.append(text)
    return np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)


def rank_summary(ranks: NDArray[np.int64]) -> dict[str, float]:
    from training.sasrec import rank_metrics

    if ranks.size == 0:
        return {}
    quantiles = np.percentile(ranks, [10, 25, 50, 75, 90])
    return {
        **rank_metrics(ranks),
        "users": float(ranks.size),
        **{f"rank_p{q}": float(v) for q, v in zip((10, 25, 50, 75, 90), quantiles, strict=True)},
        **{f"rank_le_{k}": float((ranks <= k).sum()) for k in (10, 20, 50, 100, 200)},
    }


def measure(model: Any, prep: Prepared) -> dict[str, Any]:
    """Decision-time test ranks: all users, warm-target users, cold-target users (+ the ranks)."""
    from training.sasrec import rank_targets, split_cases

    assert prep.split is not None
    histories, now, targets = split_cases(prep.split, "test")
    ranks = rank_targets(model, histories, now, targets)
    cold = ~prep.has_id[np.asarray(targets)]
    return {
        "all": rank_summary(ranks),
        "warm": rank_summary(ranks[~cold]),
        "cold": rank_summary(ranks[cold]),
        "cold_ranks": sorted(int(r) for r in ranks[cold]),
    }


def score_matrix(model: Any, prep: Prepared, target: str) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """[users, V] decision-time scores, each user's history masked, and the targets (as ``rank_targets``)."""
    import torch

    from training.sasrec import NEG, context_inputs, split_cases
    from training.sequences import query_batch

    assert prep.split is not None
    histories, now, targets = split_cases(prep.split, target)
    model.eval()
    out = np.zeros((len(targets), len(prep.vocab)), dtype=np.float32)
    for start in range(0, len(targets), 256):
        chosen = histories[start : start + 256]
        length = max(1, max(min(h.items.size, model.cfg.max_len) for h in chosen))
        items, times, stamps = query_batch(chosen, now[start : start + 256], length)
        scores = model.scores(torch.as_tensor(items), context_inputs(items, times, stamps)).numpy()
        for row, history in enumerate(chosen):
            scores[row, history.items] = NEG
        out[start : start + len(chosen)] = scores
    return out, np.asarray(targets, dtype=np.int64)


def offset_scan(model: Any, prep: Prepared, offsets: Sequence[float]) -> dict[str, Any]:
    """Every cold item's score + delta, for each delta; delta chosen on validation: the largest one that
    keeps the warm-target users' valid NDCG@10 within ``WARM_TOLERANCE`` of cold items never shown."""
    from training.sasrec import rank_metrics

    cold_cols = ~prep.has_id
    cold_cols[0] = False
    curves: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for target in ("valid", "test"):
        scores, targets = score_matrix(model, prep, target)
        cold_rows = cold_cols[targets]
        curves[target] = {}
        for delta in (-1e6, *offsets):
            shifted = scores.copy()
            shifted[:, cold_cols] += delta
            own = shifted[np.arange(len(targets)), targets]
            ranks = (shifted > own[:, None]).sum(axis=1) + 1
            curves[target][f"{delta:g}"] = {
                "all": rank_metrics(ranks),
                "warm": rank_metrics(ranks[~cold_rows]),
                "cold": {**rank_metrics(ranks[cold_rows]), "users": float(cold_rows.sum())},
            }
        curves[target]["slot"] = slot_metrics(scores, targets, cold_cols, SLOT)
    floor = (1 - WARM_TOLERANCE) * curves["valid"]["-1e+06"]["warm"]["NDCG@10"]
    allowed = [d for d in offsets if curves["valid"][f"{d:g}"]["warm"]["NDCG@10"] >= floor]
    chosen = max(allowed) if allowed else -1e6
    return {
        "chosen": chosen,
        "at_chosen": curves["test"][f"{chosen:g}"],
        "slot": curves["test"]["slot"],
        "curves": curves,
    }


def slot_metrics(
    scores: NDArray[np.float32], targets: NDArray[np.int64], cold_cols: NDArray[np.bool_], slot: int
) -> dict[str, dict[str, float]]:
    """Warm items ranked alone, and each user's best-scored cold item placed at position ``slot``."""
    from training.sasrec import rank_metrics

    rows = np.arange(len(targets))
    warm_scores = np.where(cold_cols[None, :], -np.inf, scores)
    cold_scores = np.where(cold_cols[None, :], scores, -np.inf)
    best_cold = cold_scores.argmax(axis=1)
    cold_rows = cold_cols[targets]
    own = scores[rows, targets]
    warm_rank = (warm_scores > own[:, None]).sum(axis=1) + 1
    ranks = np.where(warm_rank < slot, warm_rank, warm_rank + 1)
    ranks = np.where(cold_rows, np.where(best_cold == targets, slot, 10**6), ranks)
    return {
        "all": rank_metrics(ranks),
        "warm": rank_metrics(ranks[~cold_rows]),
        "cold": {**rank_metrics(ranks[cold_rows]), "users": float(cold_rows.sum())},
    }


def content_prior(prep: Prepared, content: NDArray[np.float32], prior: NDArray[np.float32]) -> NDArray[np.float32]:
    """Each cold item's popularity prior predicted from content: ridge on the warm items' log prior."""
    warm = prep.has_id.copy()
    warm[0] = False
    cold = ~prep.has_id
    cold[0] = False
    x = np.concatenate([content, np.ones((content.shape[0], 1), dtype=np.float32)], axis=1).astype(np.float64)
    y = np.log(prior.astype(np.float64) + 1e-6)
    xw = x[warm]
    coef = np.linalg.solve(xw.T @ xw + np.eye(x.shape[1]), xw.T @ y[warm])
    out = prior.copy()
    out[cold] = np.exp(x[cold] @ coef).astype(np.float32)
    return out


def twins(prep: Prepared, content: NDArray[np.float32], k: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(cold items, [cold, k] their k most content-similar warm items by cosine)."""
    unit = content / np.maximum(np.linalg.norm(content, axis=1, keepdims=True), 1e-9)
    warm = np.flatnonzero(prep.has_id)
    warm = warm[warm != 0]
    cold = np.flatnonzero(~prep.has_id)
    cold = cold[cold != 0]
    similarity = unit[cold] @ unit[warm].T
    return cold, warm[np.argsort(-similarity, axis=1, kind="stable")[:, :k]]


def with_twin_cooc(model: Any, cold: NDArray[np.int64], near: NDArray[np.int64]) -> None:
    """A cold item's co-occurrence term := the mean of its content twins' terms, per user."""
    import torch

    term = type(model).cooc_term.__get__(model)
    cold_t, near_t = torch.as_tensor(cold), torch.as_tensor(near)

    def twin_term(items: Any) -> Any:
        out = term(items)
        if out is not None:
            out[:, cold_t] = out[:, near_t].mean(dim=-1)
        return out

    model.cooc_term = twin_term


def run_variant(variant: Variant, prep: Prepared, base: Any, windows: Any, text: Any, args: argparse.Namespace) -> Any:
    import torch

    from training.sasrec import SASRec, evaluate_model, train

    assert prep.split is not None
    split = prep.split
    cfg = replace(
        base,
        content=variant.content,
        cold_loss=variant.cold_loss,
        cold_negatives=variant.cold_negatives,
        id_dropout=variant.id_dropout,
    )
    content = content_for(variant, prep, text)
    began = time.perf_counter()

    def validate(model: Any) -> float:
        return float(evaluate_model(model, split, "valid")["NDCG@10"])

    saved = args.out.parent / f"{variant.name}.pt"
    if args.rescore and saved.is_file():
        model = SASRec(cfg, len(prep.vocab), content, prep.has_id)
        model.load_state_dict(torch.load(saved))
        model.eval()
        info: dict[str, float] = json.loads(args.out.read_text())["variants"][variant.name]["train"]
    else:
        model, info = train(cfg, windows, len(prep.vocab), content, prep.has_id, validate, _log, None, args.budget)
        torch.save(model.state_dict(), saved)
    return score_variant(variant, model, prep, content, info, began, validate)


def score_variant(
    variant: Variant,
    model: Any,
    prep: Prepared,
    content: NDArray[np.float32],
    info: dict[str, float],
    began: float,
    validate: Callable[[Any], float],
) -> dict[str, Any]:
    from training.train_sasrec import COOC_WEIGHTS, pick_cooc_weight

    assert prep.split is not None
    split = prep.split
    row: dict[str, Any] = {"variant": variant.__dict__, "content_width": content.shape[1], "train": info}
    row["transformer"] = measure(model, prep)
    row["transformer_offset"] = offset_scan(model, prep, OFFSETS)
    cooc = cooc_for(prep, model.cfg.max_len)
    row["cooc"] = pick_cooc_weight(model, cooc, split, COOC_WEIGHTS)
    row["fused"] = measure(model, prep)
    row["fused_offset"] = offset_scan(model, prep, OFFSETS)
    weight = row["cooc"]["weight"]
    prior = content_prior(prep, content, np.asarray(cooc.popularity_prior, dtype=np.float32))
    model.attach_cooc(replace(cooc, popularity_prior=prior), weight if weight > 0 else 1.0)
    row["fused_prior"] = measure(model, prep)
    row["fused_prior"]["valid_NDCG@10"] = validate(model)
    model.attach_cooc(cooc, weight if weight > 0 else 1.0)
    cold, near = twins(prep, content, TWINS)
    with_twin_cooc(model, cold, near)
    row["fused_twins"] = measure(model, prep)
    row["fused_twins"]["valid_NDCG@10"] = validate(model)
    row["fused_twins_offset"] = offset_scan(model, prep, OFFSETS)
    row["wall_seconds"] = time.perf_counter() - began
    for scoring in ("transformer", "fused", "fused_prior", "fused_twins"):
        m = row[scoring]
        _log(
            f"  {variant.name:32s} {scoring:12s} all NDCG@10 {m['all']['NDCG@10']:.4f} HR@10 {m['all']['HR@10']:.4f}"
            f" | warm NDCG@10 {m['warm']['NDCG@10']:.4f} | cold HR@10 {m['cold']['HR@10']:.3f} HR@20 "
            f"{m['cold']['HR@20']:.3f} MRR {m['cold']['MRR']:.4f} median rank {m['cold']['rank_p50']:.0f}"
        )
        scan = row.get(f"{scoring}_offset")
        if scan is not None:
            at = scan["at_chosen"]
            _log(
                f"  {'':32s} {'+ offset':12s} all NDCG@10 {at['all']['NDCG@10']:.4f} HR@10 {at['all']['HR@10']:.4f}"
                f" | warm NDCG@10 {at['warm']['NDCG@10']:.4f} | cold HR@10 {at['cold']['HR@10']:.3f} HR@20 "
                f"{at['cold']['HR@20']:.3f} MRR {at['cold']['MRR']:.4f} (offset {scan['chosen']:g}, chosen on valid)"
            )
            at = scan["slot"]
            _log(
                f"  {'':32s} {'slot ' + str(SLOT):12s} all NDCG@10 {at['all']['NDCG@10']:.4f} HR@10 "
                f"{at['all']['HR@10']:.4f} | warm NDCG@10 {at['warm']['NDCG@10']:.4f} | cold HR@10 "
                f"{at['cold']['HR@10']:.3f}"
            )
    return row


def _log(message: str) -> None:
    print(message, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from training.sources import load_source

    p = argparse.ArgumentParser(prog="python -m bench.cold_items", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/datasets/ml-100k")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--epochs", type=int, default=30, help="cosine schedule length (same for every variant)")
    p.add_argument("--budget", type=float, default=300.0, help="training seconds per variant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder", type=Path, default=Path("out/encoder"), help="model.onnx + tokenizer.json")
    p.add_argument("--out", type=Path, default=Path("out/cold/report.json"))
    p.add_argument("--rescore", action="store_true", help="score the saved weights (out/cold/NAME.pt) again")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    prep = prepare(load_source("movielens", args.data), None, 0.05)
    trainer_args = parser().parse_args(["--epochs", str(args.epochs), "--eval-every", "2", "--patience", "100"])
    base, windows, _ = configure(trainer_args, prep)
    base = replace(base, seed=args.seed)
    need_text = any(VARIANTS[name].text for name in args.variants)
    text = text_vectors(prep, args.encoder, args.out.parent / "item_text_minilm.npz") if need_text else None
    report: dict[str, Any] = {"epochs": args.epochs, "budget_s": args.budget, "seed": args.seed, "variants": {}}
    if args.out.is_file():
        report["variants"] = json.loads(args.out.read_text()).get("variants", {})
    write: Callable[[], None] = lambda: args.out.write_text(json.dumps(report, indent=2) + "\n")  # noqa: E731
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.variants:
        _log(f"--- {name}")
        report["variants"][name] = run_variant(VARIANTS[name], prep, base, windows, text, args)
        write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
