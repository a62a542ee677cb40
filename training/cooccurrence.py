"""Item-to-item neighbour tables from interaction sequences, in the shape ``onnx_export`` ships.

A pair (a -> b) is counted whenever b follows a within ``window`` positions in one user's time-ordered
sequence, weighted ``distance_decay ** (gap - 1)``; the reverse direction counts ``backward_weight``
as much (ratings arrive in bursts, so order inside a burst is weak evidence). Counts are divided
by ``count(a) ** source_alpha * count(b) ** target_alpha`` so that blockbusters do not become
everybody's neighbour, then each item keeps its best ``neighbours`` columns. A user's score for b is
the recency-weighted sum over the last ``max_history`` items plus a small popularity prior.

The defaults come from ``python -m training.evaluate --tune`` (coordinate ascent on the validation
targets of the leave-last-out protocol; test targets never used to choose). One deliberate deviation:
the tuner preferred max_history 20 by 0.0003 validation NDCG@10 (0.1361 vs 0.1358; one standard
error is ~0.008), and 50 is kept because it equals the recent items decide holds, so the graph masks
all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from shared.model import PAD_INDEX, PAD_TOKEN
from training.movielens import Interactions
from training.onnx_export import ModelArrays

# Above this many V x V cells the pair counts are kept sparse (20,000 items would be 3.2 GB dense).
DENSE_LIMIT = 1 << 25


@dataclass(frozen=True)
class CoocConfig:
    window: int = 50
    distance_decay: float = 0.9
    backward_weight: float = 0.5
    source_alpha: float = 0.5
    target_alpha: float = 0.5
    neighbours: int = 100
    # 50 = shared.domain.user_state.MAX_RECENT_ITEMS: the graph sees (and masks) all the recent items decide has.
    max_history: int = 50
    recency_decay: float = 0.85
    popularity_weight: float = 0.05


def build_vocab(interactions: Interactions) -> list[str]:
    """``<pad>`` then every item seen in ``interactions``, by numeric id (deterministic across runs)."""
    return [PAD_TOKEN, *(str(item) for item in np.unique(interactions.item))]


def encode_sequences(interactions: Interactions, vocab: Sequence[str]) -> dict[int, NDArray[np.int64]]:
    """Each user's time-ordered vocabulary indices; items outside ``vocab`` are dropped."""
    lookup = np.zeros(int(interactions.item.max(initial=0)) + 1, dtype=np.int64)
    for index, item in enumerate(vocab):
        if index != PAD_INDEX and int(item) < lookup.shape[0]:
            lookup[int(item)] = index
    encoded = {}
    for user, items in interactions.sequences().items():
        indices = lookup[items]
        encoded[user] = indices[indices != PAD_INDEX]
    return encoded


def item_counts(sequences: Mapping[int, NDArray[np.int64]], vocab_size: int) -> NDArray[np.float64]:
    flat = np.concatenate([*sequences.values(), np.zeros(0, dtype=np.int64)])
    counts = np.bincount(flat, minlength=vocab_size).astype(np.float64)
    counts[PAD_INDEX] = 0.0
    return counts


def pair_counts(
    sequences: Mapping[int, NDArray[np.int64]],
    vocab_size: int,
    *,
    window: int,
    distance_decay: float = 1.0,
    backward_weight: float = 1.0,
) -> NDArray[np.float64]:
    """Dense [V, V] weighted counts of (earlier -> later) pairs at most ``window`` apart."""
    parts = [seq for seq in sequences.values() if seq.size]
    if not parts:
        return np.zeros((vocab_size, vocab_size))
    flat = np.concatenate(parts)
    owner = np.repeat(np.arange(len(parts)), [seq.size for seq in parts])
    counts = np.zeros(vocab_size * vocab_size)
    for gap in range(1, window + 1):
        if gap >= flat.size:
            break
        same_user = owner[:-gap] == owner[gap:]
        earlier, later = flat[:-gap][same_user], flat[gap:][same_user]
        weight = distance_decay ** (gap - 1)
        counts += np.bincount(earlier * vocab_size + later, minlength=vocab_size * vocab_size) * weight
        if backward_weight:
            counts += (
                np.bincount(later * vocab_size + earlier, minlength=vocab_size * vocab_size) * weight * backward_weight
            )
    matrix = counts.reshape(vocab_size, vocab_size)
    np.fill_diagonal(matrix, 0.0)  # re-consuming the same item says nothing about what to push next
    matrix[PAD_INDEX, :] = 0.0
    matrix[:, PAD_INDEX] = 0.0
    return matrix


def sparse_pair_counts(
    sequences: Mapping[int, NDArray[np.int64]],
    vocab_size: int,
    *,
    window: int,
    distance_decay: float = 1.0,
    backward_weight: float = 1.0,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """``pair_counts`` as (rows, cols, values) of its non-zero entries, row-major: memory grows with the
    pairs, not with V², so a 20,000-item catalogue costs megabytes instead of gigabytes."""
    parts = [seq for seq in sequences.values() if seq.size]
    keys: list[NDArray[np.int64]] = []
    weights: list[NDArray[np.float64]] = []
    if parts:
        flat = np.concatenate(parts)
        owner = np.repeat(np.arange(len(parts)), [seq.size for seq in parts])
        for gap in range(1, window + 1):
            if gap >= flat.size:
                break
            same_user = owner[:-gap] == owner[gap:]
            earlier, later = flat[:-gap][same_user], flat[gap:][same_user]
            weight = distance_decay ** (gap - 1)
            keys.append(earlier * vocab_size + later)
            weights.append(np.full(earlier.size, weight))
            if backward_weight:
                keys.append(later * vocab_size + earlier)
                weights.append(np.full(earlier.size, weight * backward_weight))
    if not keys:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    unique, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    values = np.bincount(inverse, weights=np.concatenate(weights), minlength=unique.size)
    rows, cols = unique // vocab_size, unique % vocab_size
    keep = (rows != cols) & (rows != PAD_INDEX) & (cols != PAD_INDEX) & (values != 0)
    return rows[keep], cols[keep], values[keep]


def sparse_top_neighbours(
    rows: NDArray[np.int64], cols: NDArray[np.int64], values: NDArray[np.float64], vocab_size: int, width: int
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """``top_neighbours`` of a sparse matrix: best ``width`` columns per row, ties to the lower column."""
    width = max(1, min(width, vocab_size))
    ids = np.zeros((vocab_size, width), dtype=np.int64)
    out = np.zeros((vocab_size, width), dtype=np.float32)
    positive = values > 0
    rows, cols, values = rows[positive], cols[positive], values[positive]
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    starts = np.searchsorted(rows, rows, side="left")
    rank = np.arange(rows.size) - starts
    keep = rank < width
    ids[rows[keep], rank[keep]] = cols[keep]
    out[rows[keep], rank[keep]] = values[keep]
    return ids, out


def top_neighbours(scores: NDArray[np.float64], width: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Best ``width`` columns per row, best first; empty slots are (padding, 0.0)."""
    vocab = scores.shape[0]
    width = max(1, min(width, vocab))
    # argpartition then a stable sort of that slice: ties resolve to the lower index, like TopK
    # (only exact at the cut-off boundary up to argpartition's choice, which is harmless).
    if width < vocab:
        part = np.sort(np.argpartition(-scores, width - 1, axis=1)[:, :width], axis=1)
    else:
        part = np.tile(np.arange(vocab), (vocab, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1).astype(np.int64)
    values = np.take_along_axis(part_scores, order, axis=1).astype(np.float32)
    empty = values <= 0.0
    ids[empty] = PAD_INDEX
    values[empty] = 0.0
    return ids, values


def position_weights(max_history: int, recency_decay: float) -> NDArray[np.float32]:
    """Newest position (last) weighs 1, each older one ``recency_decay`` times the next."""
    ages = np.arange(max_history - 1, -1, -1, dtype=np.float64)
    return (recency_decay**ages).astype(np.float32)


def popularity_prior(counts: NDArray[np.float64], weight: float) -> NDArray[np.float32]:
    peak = counts.max(initial=0.0)
    prior = counts / peak * weight if peak > 0 else np.zeros_like(counts)
    prior[PAD_INDEX] = 0.0
    return prior.astype(np.float32)


def build_cooccurrence(
    sequences: Mapping[int, NDArray[np.int64]], vocab_size: int, config: CoocConfig = CoocConfig()
) -> ModelArrays:
    counts = item_counts(sequences, vocab_size)
    safe = np.maximum(counts, 1.0)
    options = {
        "window": config.window,
        "distance_decay": config.distance_decay,
        "backward_weight": config.backward_weight,
    }
    if vocab_size * vocab_size <= DENSE_LIMIT:
        pairs = pair_counts(sequences, vocab_size, **options)  # type: ignore[arg-type]
        normalised = pairs / (safe[:, None] ** config.source_alpha) / (safe[None, :] ** config.target_alpha)
        # Scale so the strongest neighbour score is 1: keeps popularity_weight meaningful across configs.
        peak = normalised.max(initial=0.0)
        if peak > 0:
            normalised /= peak
        ids, scores = top_neighbours(normalised, config.neighbours)
    else:
        rows, cols, values = sparse_pair_counts(sequences, vocab_size, **options)  # type: ignore[arg-type]
        values = values / (safe[rows] ** config.source_alpha) / (safe[cols] ** config.target_alpha)
        peak = values.max(initial=0.0)
        if peak > 0:
            values /= peak
        ids, scores = sparse_top_neighbours(rows, cols, values, vocab_size, config.neighbours)
    ids[PAD_INDEX] = PAD_INDEX
    scores[PAD_INDEX] = 0.0
    return ModelArrays(
        neighbour_ids=ids,
        neighbour_scores=scores,
        popularity_prior=popularity_prior(counts, config.popularity_weight),
        position_weights=position_weights(config.max_history, config.recency_decay),
    )


def build_popularity(
    sequences: Mapping[int, NDArray[np.int64]], vocab_size: int, max_history: int = CoocConfig.max_history
) -> ModelArrays:
    """Pure popularity in the same graph: one all-padding neighbour column adds nothing."""
    return ModelArrays(
        neighbour_ids=np.zeros((vocab_size, 1), dtype=np.int64),
        neighbour_scores=np.zeros((vocab_size, 1), dtype=np.float32),
        popularity_prior=popularity_prior(item_counts(sequences, vocab_size), 1.0),
        position_weights=np.ones(max_history, dtype=np.float32),
    )


def pad_histories(histories: Sequence[NDArray[np.int64]], max_history: int) -> NDArray[np.int64]:
    """Newest ``max_history`` indices per row, left-padded with the padding index (the graph's input)."""
    batch = np.full((len(histories), max_history), PAD_INDEX, dtype=np.int64)
    for row, history in enumerate(histories):
        window = history[-max_history:]
        if window.size:
            batch[row, max_history - window.size :] = window
    return batch


def dense_scores(arrays: ModelArrays, item_ids: NDArray[np.int64]) -> NDArray[np.float32]:
    """numpy twin of the ONNX graph before masking: [B, L] indices -> [B, V] scores.

    Used to tune fast and to check the exported graph computes the same thing.
    """
    batch, vocab = item_ids.shape[0], arrays.vocab_size
    weights = arrays.neighbour_scores[item_ids] * arrays.position_weights[None, :, None]
    rows = np.repeat(np.arange(batch), weights.shape[1] * weights.shape[2])
    flat = rows * vocab + arrays.neighbour_ids[item_ids].ravel()
    summed = np.bincount(flat, weights=weights.ravel(), minlength=batch * vocab).reshape(batch, vocab)
    return (summed + arrays.popularity_prior[None, :]).astype(np.float32)
