"""The default training recipe, sized from the data: no flags needed for a new catalogue.

``auto_config`` reads the shape of what is about to be trained (windows, targets, catalogue size,
whether times and content exist) and picks what used to be hand-set per data set:

* batch: about ``TARGETS_PER_STEP`` next-item targets per step (ML-100k: 64 windows of ~39 targets;
  Yelp: 256 windows of ~7), a power of two;
* softmax: full over the catalogue while the output layer stays cheap (``FULL_SOFTMAX_MAX_ITEMS``),
  else sampled over ``SAMPLED_NEGATIVES`` uniform negatives per step;
* epochs: the cosine schedule spans about ``SCHEDULE_STEPS`` optimiser steps, between
  ``MIN_EPOCHS`` and ``MAX_EPOCHS`` passes; a validation check every ``epochs // CHECKS`` epochs (at
  least every epoch) and a patience of ``PATIENCE_SHARE`` of the schedule;
* batches grouped by window length only when windows are mostly padding (mean length at most
  ``BUCKET_BELOW`` of the window): each batch is then cut to its longest window, which makes short
  sequences cheap; with mostly full windows, random batches;
* time context only for a source with real times (``Dataset.timed``), content only when the
  catalogue has any;
* a wall-clock budget (``TIME_BUDGET_S``) the trainer stops at, keeping the best check so far.

Every explicit flag of ``training.train_sasrec`` still wins over the value chosen here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from training.sasrec import SasrecConfig

TARGETS_PER_STEP = 2_500
MIN_BATCH, MAX_BATCH = 32, 1024
FULL_SOFTMAX_MAX_ITEMS = 8_000
SAMPLED_NEGATIVES = 2_048
SCHEDULE_STEPS = 4_000
MIN_EPOCHS, MAX_EPOCHS = 12, 80
CHECKS = 40
PATIENCE_SHARE = 0.15
MIN_PATIENCE = 3
TIME_BUDGET_S = 15 * 60.0
BUCKET_BELOW = 0.5


@dataclass(frozen=True)
class DataShape:
    """What the recipe looks at: counts of the training part and what the source carries."""

    users: int
    items: int  # catalogue size (without padding)
    warm_items: int  # items with at least one training interaction
    windows: int
    targets: int  # next-item targets in one epoch
    timed: bool  # real timestamps (not invented ones that only keep the order)
    content: bool  # any content feature at all
    mean_length: float = 0.0  # mean non-padding length of a training window

    @property
    def targets_per_window(self) -> float:
        return self.targets / max(self.windows, 1)


def _power_of_two(value: float) -> int:
    return int(2 ** round(math.log2(max(value, 1.0))))


def auto_config(shape: DataShape, base: SasrecConfig | None = None) -> SasrecConfig:
    """``base`` (architecture, learning rate, ...) with the data-dependent fields chosen for ``shape``."""
    cfg = base or SasrecConfig()
    batch = min(MAX_BATCH, max(MIN_BATCH, _power_of_two(TARGETS_PER_STEP / max(shape.targets_per_window, 1.0))))
    steps_per_epoch = max(1, math.ceil(shape.windows / batch))
    epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(SCHEDULE_STEPS / steps_per_epoch)))
    eval_every = max(1, epochs // CHECKS)
    patience = max(MIN_PATIENCE, math.ceil(PATIENCE_SHARE * epochs / eval_every))
    negatives = 0 if shape.warm_items <= FULL_SOFTMAX_MAX_ITEMS else SAMPLED_NEGATIVES
    return replace(
        cfg,
        batch_size=batch,
        epochs=epochs,
        eval_every=eval_every,
        patience=patience,
        negatives=negatives,
        bucket=shape.mean_length <= BUCKET_BELOW * cfg.max_len,
        context=cfg.context and shape.timed,
        content=cfg.content and shape.content,
    )


def describe(shape: DataShape, cfg: SasrecConfig) -> dict[str, Any]:
    """For the report: the shape seen and what was chosen from it."""
    chosen = ("batch_size", "epochs", "eval_every", "patience", "negatives", "bucket", "context", "content")
    return {"shape": asdict(shape), "chosen": {k: v for k, v in asdict(cfg).items() if k in chosen}}
