"""``python -m training.build_model``: train on the earliest part of time, export, measure on the rest.

    python -m training.build_model --data DIR --kind cooccurrence --split-quantile 0.8 --out layers/model

The model only ever sees interactions older than the split cutoff (the demo replays the rest), and
the manifest's metrics are measured on that held-out replay period through ``OnnxRecommender``:
push_hit@1/@10 (a top-k item rated within 7 days of the event) and next-item HR/NDCG@10, next to
the same numbers for popularity so a reader of the manifest sees the uplift.
Set ``SOURCE_DATE_EPOCH`` for a byte-reproducible build (it fixes ``created_at`` and the version).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from shared.model import MANIFEST_FILE, MODEL_FILE, ModelManifest
from training.cooccurrence import (
    CoocConfig,
    build_cooccurrence,
    build_popularity,
    build_vocab,
    encode_sequences,
)
from training.evaluate import heldout_metrics, most_pop_ranker, onnx_ranker, push_cases
from training.movielens import REPO_ROOT, DatasetNotFoundError, load_movielens, resolve_data_dir, time_split
from training.onnx_export import ModelArrays, export_model

KINDS = ("cooccurrence", "popularity", "sasrec")
# The transformer trains with torch (requirements/train.txt) in its own module (training.train_sasrec),
# with the same data-sized recipe as make train; without validation data it runs its whole schedule.


def code_version() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def build_time() -> datetime:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    return datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)


def build(
    data_dir: Path,
    kind: str,
    quantile: float,
    out_dir: Path,
    config: CoocConfig | None = None,
    created_at: datetime | None = None,
) -> ModelManifest:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    data = load_movielens(data_dir)
    train, replay = time_split(data.interactions, quantile)
    vocab = build_vocab(train)
    sequences = encode_sequences(train, vocab)
    config = config or CoocConfig()
    arrays: ModelArrays = (
        build_cooccurrence(sequences, len(vocab), config)
        if kind == "cooccurrence"
        else build_popularity(sequences, len(vocab), config.max_history)
    )
    window = {
        "start": datetime.fromtimestamp(int(train.timestamp.min()), UTC),
        "end": datetime.fromtimestamp(int(train.timestamp.max()), UTC),
    }
    created = created_at or build_time()
    version_of_code = code_version()

    def write(target: Path, metrics: dict[str, float]) -> ModelManifest:
        return export_model(
            target,
            arrays,
            item_vocab=vocab,
            kind=kind,
            training_data_sha256=data.training_data_sha256,
            training_window=window,
            metrics=metrics,
            code_version=version_of_code,
            created_at=created,
        )

    # Measure the exported graph itself (through the runtime wrapper), then write the final files.
    with tempfile.TemporaryDirectory() as scratch:
        write(Path(scratch), {})
        metrics = heldout_metrics(
            onnx_ranker(Path(scratch)), most_pop_ranker(sequences, vocab), push_cases(train, replay)
        )
    metrics["train_interactions"] = float(len(train))
    metrics["split_quantile"] = quantile
    return write(out_dir, metrics)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.build_model", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="ml-100k folder (default: $NUDGE_ML100K_DIR or ../shared/...)")
    parser.add_argument("--kind", choices=KINDS, default="cooccurrence")
    parser.add_argument("--split-quantile", type=float, default=0.8, help="train on this earliest share of time")
    parser.add_argument("--out", type=Path, required=True, help="directory for model.onnx + manifest.json")
    parser.add_argument("--epochs", type=int, default=None, help="sasrec only: epochs (default: the recipe's)")
    args = parser.parse_args(argv)
    if args.kind == "sasrec":
        from training import train_sasrec

        forwarded = ["--split-quantile", str(args.split_quantile), "--seeds", "0", "--out", str(args.out)]
        forwarded += (["--epochs", str(args.epochs)] if args.epochs else []) + (
            ["--data", str(args.data)] if args.data else []
        )
        return train_sasrec.main(forwarded)
    began = time.perf_counter()
    try:
        manifest = build(resolve_data_dir(args.data), args.kind, args.split_quantile, args.out)
    except DatasetNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    size = (args.out / MODEL_FILE).stat().st_size
    print(f"{manifest.version}: {manifest.vocab_size - 1} items, max_history {manifest.max_history}")
    elapsed = time.perf_counter() - began
    print(f"wrote {args.out / MODEL_FILE} ({size / 1e6:.2f} MB) and {MANIFEST_FILE} in {elapsed:.1f}s")
    for key, value in sorted(manifest.metrics.items()):
        print(f"  {key:>28}: {value:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
