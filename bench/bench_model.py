"""Decide-side model cost: load time and per-call inference latency through ``OnnxRecommender``.

    .venv/bin/python bench/bench_model.py [--model-dir layers/model] [--iterations 2000]

Histories are full windows (``max_history`` random known items), the worst case for the graph.
Single-threaded session as in Lambda, so numbers from a 2-core box transfer to a 1-vCPU function
give or take clock speed (arm64 Graviton vs this x86 machine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repo's packages importable
    sys.path.insert(0, str(ROOT))


def timings(fn: Callable[[], object], iterations: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iterations):
        began = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - began) / 1e6)
    return samples


def row(label: str, samples: Sequence[float], per: int = 1) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    median = statistics.median(ordered)
    return f"{label:<34} {median:>9.3f} {p99:>9.3f} {median / per * 1000:>12.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "layers" / "model")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--k", type=int, default=20, help="candidates asked per user")
    args = parser.parse_args(argv)

    # Imported here to time it: onnxruntime's import is part of a Lambda cold start.
    began = time.perf_counter()
    from shared.model import OnnxRecommender

    import_ms = (time.perf_counter() - began) * 1000
    began = time.perf_counter()
    OnnxRecommender.from_dir(args.model_dir)
    first_load_ms = (time.perf_counter() - began) * 1000
    load_ms = timings(lambda: OnnxRecommender.from_dir(args.model_dir), iterations=20, warmup=1)
    rec = OnnxRecommender.from_dir(args.model_dir)
    manifest = rec.manifest
    rng = np.random.default_rng(0)
    items = manifest.item_vocab[1:]

    def histories(batch: int) -> list[list[str]]:
        return [list(rng.choice(items, size=manifest.max_history, replace=False)) for _ in range(batch)]

    one, many = histories(1), histories(64)
    one_ids = rec.preprocess(one)
    top_ids, top_scores = rec.run(one_ids, args.k)
    size = (args.model_dir / "model.onnx").stat().st_size

    print(f"model {manifest.version} ({manifest.kind}): {size / 1e6:.2f} MB, {manifest.vocab_size - 1} items,")
    print(f"max_history {manifest.max_history}, k={args.k}, {args.iterations} iterations, 1 thread")
    print(f"import shared.model (numpy, onnxruntime, pydantic) {import_ms:.0f} ms")
    print(f"first load in a fresh process {first_load_ms:.1f} ms\n")
    print(f"{'':<34} {'median ms':>9} {'p99 ms':>9} {'us per user':>12}")
    print(row("load (manifest + session)", load_ms))
    print(row("recommend, batch 1", timings(lambda: rec.recommend(one, args.k), args.iterations)))
    print(row("  preprocess only", timings(lambda: rec.preprocess(one), args.iterations)))
    print(row("  session.run only", timings(lambda: rec.run(one_ids, args.k), args.iterations)))
    print(row("  postprocess only", timings(lambda: rec.postprocess(top_ids, top_scores), args.iterations)))
    batch_ms = timings(lambda: rec.recommend(many, args.k), max(1, args.iterations // 10))
    print(row("recommend, batch 64", batch_ms, per=64))
    return 0


if __name__ == "__main__":
    sys.exit(main())
