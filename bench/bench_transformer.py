"""Transformer serving cost: PyTorch eager vs onnxruntime fp32 vs int8, batch 1 and 64, one thread each.

    .venv/bin/python -m bench.bench_transformer [--model-dir layers/model/sasrec] [--int8-dir layers/model/sasrec/int8]

Needs torch (``requirements/train.txt``; ``make train`` installs it). The eager model is rebuilt from
the shipped graph's own weights (``weights_from_graph`` + ``from_weights``, the co-occurrence term
included when the graph fuses one), so all three compute the same function on the same inputs in the
same process. Eager gets its context tensors precomputed
outside the timed region (favouring eager); onnxruntime gets raw timestamps, as decide passes them.
Also: artifact sizes, and the cold start of a fresh process (import + model load), median of 5.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_COLD_START = """
import time, sys
t0 = time.perf_counter()
from shared.model import OnnxRecommender
t1 = time.perf_counter()
rec = OnnxRecommender.from_dir(sys.argv[1])
t2 = time.perf_counter()
rec.recommend([rec.manifest.item_vocab[1:6]], 20, timestamps=[[880000000 + i for i in range(5)]], now=880000100)
t3 = time.perf_counter()
print((t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000)
"""


def timings(fn: Callable[[], object], iterations: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iterations):
        began = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - began) / 1e6)
    return out


def stats(samples: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def cold_start(model_dir: Path, runs: int = 5) -> dict[str, float]:
    rows = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _COLD_START, str(model_dir)], cwd=ROOT, capture_output=True, text=True, check=True
        )
        rows.append([float(x) for x in out.stdout.split()])
    return {
        name: statistics.median(r[i] for r in rows) for i, name in enumerate(("import_ms", "load_ms", "first_call_ms"))
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "layers" / "model" / "sasrec")
    parser.add_argument("--int8-dir", type=Path, default=ROOT / "layers" / "model" / "sasrec" / "int8")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)

    import onnx
    import onnxruntime as ort
    import torch

    from shared.model import session_options
    from training.sasrec import context_inputs, from_weights
    from training.sasrec_graph import weights_from_graph

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    weights = weights_from_graph(onnx.load_model(args.model_dir / "model.onnx"))
    eager = from_weights(weights)
    sessions = {
        "onnxruntime fp32": ort.InferenceSession(str(args.model_dir / "model.onnx"), session_options()),
    }
    if (args.int8_dir / "model.onnx").is_file():
        sessions["onnxruntime int8"] = ort.InferenceSession(str(args.int8_dir / "model.onnx"), session_options())

    rng = np.random.default_rng(0)
    length, vocab = weights.max_len, weights.vocab_size
    k = np.asarray([args.k], dtype=np.int64)
    results: dict[str, dict[str, float]] = {}
    fused = f", + co-occurrence (weight {weights.cooc_weight:g})" if weights.has_cooc else ""
    print(
        f"SASRec d={weights.dim}, {weights.heads} head(s), {len(weights.blocks)} blocks, L={length}, "
        f"V={vocab - 1}{fused}, k={args.k}, 1 thread\n"
    )
    print(f"{'':<22}{'batch':>6}{'median ms':>11}{'p99 ms':>9}{'vs eager':>10}")
    for batch in (1, 64):
        items = np.stack([rng.choice(np.arange(1, vocab), size=length, replace=False) for _ in range(batch)])
        times = np.sort(rng.integers(880_000_000, 890_000_000, size=(batch, length)), axis=1)
        now = times[:, -1] + rng.integers(60, 86_400, size=batch)
        ctx = context_inputs(items, times, now)
        items_t = torch.as_tensor(items)

        def run_eager(items_t: torch.Tensor = items_t, ctx: dict[str, torch.Tensor] = ctx) -> object:
            with torch.inference_mode():
                scores = eager.scores(items_t, ctx)
                scores.scatter_(1, items_t, -1.0e9)
                return torch.topk(scores, args.k)

        iterations = args.iterations if batch == 1 else max(50, args.iterations // 10)
        base_median, base_p99 = stats(timings(run_eager, iterations))
        results[f"eager b{batch}"] = {"median_ms": base_median, "p99_ms": base_p99}
        print(f"{'PyTorch eager':<22}{batch:>6}{base_median:>11.3f}{base_p99:>9.3f}{1.0:>9.2f}x")
        feeds = {"item_ids": items, "timestamps": times, "now": now, "k": k}
        reference = run_eager()
        for name, session in sessions.items():
            wanted = {i.name for i in session.get_inputs()}
            feed = {key: value for key, value in feeds.items() if key in wanted}
            median, p99 = stats(timings(functools.partial(session.run, ["top_ids", "top_scores"], feed), iterations))
            top_ids = session.run(["top_ids"], feed)[0]
            same = float(np.mean(top_ids[:, :10] == reference.indices.numpy()[:, :10]))  # type: ignore[attr-defined]
            results[f"{name} b{batch}"] = {
                "median_ms": median,
                "p99_ms": p99,
                "speedup": base_median / median,
                "top10_agreement": same,
            }
            print(f"{name:<22}{batch:>6}{median:>11.3f}{p99:>9.3f}{base_median / median:>9.2f}x")
    sizes = {
        str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path): path.stat().st_size
        for path in (args.model_dir / "model.onnx", args.int8_dir / "model.onnx")
        if path.is_file()
    }
    print("\nsizes: " + ", ".join(f"{name} {size / 1e6:.2f} MB" for name, size in sizes.items()))
    cold = cold_start(args.model_dir)
    print(
        f"cold start, fresh process (median of 5): import shared.model {cold['import_ms']:.0f} ms, "
        f"model load {cold['load_ms']:.0f} ms, first recommend {cold['first_call_ms']:.1f} ms"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"latency": results, "sizes": sizes, "cold_start": cold}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
