"""A tiny, hand-set model written through the real export path, for tests of anything that loads a model.

Default rule (n items, vocabulary order): item j's neighbours are item j+1 (score 1.0) and item j+2
(score 0.5), wrapping around; popularity prior 0.001 * (n - j), so the first item is the most popular;
position weights halve with age (newest = 1.0). With the default vocabulary ``i1..i6``:

* ``["i1"]``       -> i2 1.005, i3 0.504, i4 0.003, i5 0.002, i6 0.001
* ``["i1", "i2"]`` -> i3 1.254, i4 0.503, i5 0.002, i6 0.001
* ``[]``           -> i1 0.006, i2 0.005, ... (popularity)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from shared.model import PAD_TOKEN
from training.context import DAYS, GAP_BUCKETS, HOURS
from training.onnx_export import ModelArrays, export_model
from training.sasrec_export import export_sasrec
from training.sasrec_graph import BlockWeights, SasrecWeights

DEFAULT_VOCAB = ["i1", "i2", "i3", "i4", "i5", "i6"]
CREATED_AT = datetime(2026, 1, 1, tzinfo=UTC)
PRIOR_STEP = 0.001


def default_neighbours(vocab: Sequence[str]) -> dict[str, dict[str, float]]:
    n = len(vocab)
    return {item: {vocab[(j + 1) % n]: 1.0, vocab[(j + 2) % n]: 0.5} if n > 2 else {} for j, item in enumerate(vocab)}


def build_tiny_model(
    out_dir: Path,
    vocab: list[str] | None = None,
    *,
    neighbours: Mapping[str, Mapping[str, float]] | None = None,
    popularity: Mapping[str, float] | None = None,
    max_history: int = 4,
    kind: str = "cooccurrence",
    created_at: datetime = CREATED_AT,
) -> Path:
    """Write ``model.onnx`` + ``manifest.json`` into ``out_dir`` and return ``out_dir``.

    ``vocab`` lists item ids (without the padding token). ``neighbours[a][b]`` is the score b gets
    from a at the newest history position; ``popularity[b]`` is b's prior. Both default to the rule
    in the module docstring.
    """
    items = [item for item in (vocab or DEFAULT_VOCAB) if item != PAD_TOKEN]
    full_vocab = [PAD_TOKEN, *items]
    index = {item: i for i, item in enumerate(full_vocab)}
    table = neighbours if neighbours is not None else default_neighbours(items)
    width = max([len(row) for row in table.values()] + [1])
    ids = np.zeros((len(full_vocab), width), dtype=np.int64)
    scores = np.zeros((len(full_vocab), width), dtype=np.float32)
    for source, row in table.items():
        ranked = sorted(row.items(), key=lambda pair: -pair[1])
        for column, (target, score) in enumerate(ranked):
            ids[index[source], column] = index[target]
            scores[index[source], column] = score
    prior = np.zeros(len(full_vocab), dtype=np.float32)
    for j, item in enumerate(items):
        prior[j + 1] = popularity[item] if popularity is not None else PRIOR_STEP * (len(items) - j)
    arrays = ModelArrays(
        neighbour_ids=ids,
        neighbour_scores=scores,
        popularity_prior=prior,
        position_weights=(0.5 ** np.arange(max_history - 1, -1, -1)).astype(np.float32),
    )
    export_model(
        out_dir,
        arrays,
        item_vocab=full_vocab,
        kind=kind,
        name=f"tiny-{kind}",
        training_data_sha256="0" * 64,
        training_window={
            "start": datetime(2025, 12, 1, tzinfo=UTC),
            "end": datetime(2025, 12, 31, tzinfo=UTC),
        },
        metrics={"push_hit@10": 0.0},
        code_version="test",
        created_at=created_at,
    )
    return out_dir


def tiny_sasrec_weights(
    vocab_size: int = 7, max_len: int = 4, dim: int = 8, heads: int = 2, context: bool = True, seed: int = 0
) -> SasrecWeights:
    """Random but fixed transformer weights (row 0 of the item table is padding, so zero)."""
    rng = np.random.default_rng(seed)

    def r(*shape: int) -> NDArray[np.float32]:
        return (rng.normal(size=shape) * 0.5).astype(np.float32)

    def block() -> BlockWeights:
        d = dim
        return BlockWeights(
            1 + r(d), r(d), r(d, 3 * d), r(3 * d), r(d, d), r(d), 1 + r(d), r(d), r(d, d), r(d), r(d, d), r(d)
        )

    table = r(vocab_size, dim)
    table[0] = 0.0
    sizes = {"hour": HOURS, "dow": DAYS, "gap": GAP_BUCKETS, "q_hour": HOURS, "q_dow": DAYS, "q_gap": GAP_BUCKETS}
    return SasrecWeights(
        item_table=table,
        positions=r(max_len, dim),
        blocks=[block(), block()],
        ln_f_g=1 + r(dim),
        ln_f_b=r(dim),
        heads=heads,
        context={name: r(size, dim) for name, size in sizes.items()} if context else {},
    )


def build_tiny_sasrec(
    out_dir: Path, vocab: list[str] | None = None, *, context: bool = True, int8: bool = False
) -> Path:
    """A tiny transformer artifact through the real export path (``training.sasrec_export``)."""
    items = vocab or DEFAULT_VOCAB
    export_sasrec(
        out_dir,
        tiny_sasrec_weights(vocab_size=len(items) + 1, context=context),
        item_vocab=[PAD_TOKEN, *items],
        training_data_sha256="0" * 64,
        training_window={"start": datetime(2025, 12, 1, tzinfo=UTC), "end": datetime(2025, 12, 31, tzinfo=UTC)},
        metrics={},
        code_version="test",
        created_at=CREATED_AT,
        int8=int8,
        name="tiny-sasrec",
    )
    return out_dir


def build_registry_model(
    out_dir: Path,
    *,
    created_at: datetime = CREATED_AT,
    calibrated_for: str | None = None,
    probability: float = 0.5,
    evaluation: Mapping[str, float] | None = None,
) -> Path:
    """A tiny model folder as the registry holds one: the graph, its manifest, ``calibration.json``
    (fitted for the graph, or for ``calibrated_for`` to make a mismatch) and ``evaluation.json``.

    ``created_at`` changes the graph's version; ``probability`` changes only the calibration (so the
    same graph gives another registry version).
    """
    import json

    from shared.domain.engagement import CALIBRATION_FILE, Calibration
    from shared.domain.model_registry import EVALUATION_FILE
    from shared.model import read_manifest

    build_tiny_model(out_dir, created_at=created_at)
    graph = read_manifest(out_dir).version
    calibration = Calibration(
        model_version=calibrated_for or graph, upper=[0.5, 10.0], probability=[probability / 2, probability]
    )
    (out_dir / CALIBRATION_FILE).write_text(calibration.model_dump_json(indent=2) + "\n")
    (out_dir / EVALUATION_FILE).write_text(json.dumps(dict(evaluation or {"ndcg@10": 0.1})) + "\n")
    return out_dir
