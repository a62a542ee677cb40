"""Write the transformer artifact (fp32, and its int8 twin) and evaluate it through ``OnnxRecommender``.

No torch: the artifact is built from ``SasrecWeights``, so CI can rebuild a tiny one and check the
shipped graph. Evaluation goes through ``OnnxRecommender.recommend`` with the time context, the
same call decide makes, then applies the protocol's full-history mask.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray

from shared.model import MANIFEST_FILE, MODEL_FILE, VERSION_METADATA_KEY, ModelManifest, OnnxRecommender, manifest_json
from training.onnx_export import _write_atomic
from training.sasrec_graph import SasrecWeights, build_sasrec_graph, sasrec_io_specs
from training.sequences import UserSeq

KIND = "sasrec"


def make_version(created_at: datetime, weights: SasrecWeights, item_vocab: Sequence[str], suffix: str = "") -> str:
    hasher = hashlib.sha256(weights.digest().encode())
    hasher.update("\n".join(item_vocab).encode())
    return f"{KIND}{suffix}-{created_at:%Y%m%d}-{hasher.hexdigest()[:8]}"


def _manifest(
    version: str,
    weights: SasrecWeights,
    item_vocab: Sequence[str],
    *,
    name: str,
    created_at: datetime,
    training_data_sha256: str,
    training_window: Mapping[str, datetime],
    metrics: Mapping[str, float],
    code_version: str,
) -> ModelManifest:
    inputs, outputs = sasrec_io_specs(weights.vocab_size, weights.max_len, weights.has_context)
    return ModelManifest(
        name=name,
        version=version,
        kind=KIND,
        created_at=created_at,
        inputs=inputs,
        outputs=outputs,
        item_vocab=list(item_vocab),
        max_history=weights.max_len,
        training_data_sha256=training_data_sha256,
        training_window=dict(training_window),
        metrics={k: float(v) for k, v in metrics.items()},
        code_version=code_version,
    )


def export_sasrec(
    out_dir: Path,
    weights: SasrecWeights,
    *,
    item_vocab: Sequence[str],
    training_data_sha256: str,
    training_window: Mapping[str, datetime],
    metrics: Mapping[str, float],
    code_version: str,
    created_at: datetime | None = None,
    int8: bool = False,
    name: str = "sasrec",
) -> ModelManifest:
    """``model.onnx`` + ``manifest.json`` in ``out_dir``; ``int8=True`` writes the dynamically quantized graph."""
    if len(item_vocab) != weights.vocab_size:
        raise ValueError(f"item_vocab has {len(item_vocab)} entries, the item table {weights.vocab_size}")
    created = created_at or datetime.now(UTC)
    version = make_version(created, weights, item_vocab, "-int8" if int8 else "")
    model = build_sasrec_graph(weights, version)
    if int8:
        model = quantize_int8(model, version)
    manifest = _manifest(
        version,
        weights,
        item_vocab,
        name=f"{name}-int8" if int8 else name,
        created_at=created,
        training_data_sha256=training_data_sha256,
        training_window=training_window,
        metrics=metrics,
        code_version=code_version,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(out_dir / MODEL_FILE, model.SerializeToString())
    _write_atomic(out_dir / MANIFEST_FILE, manifest_json(manifest).encode())
    return manifest


def quantize_int8(model: onnx.ModelProto, version: str) -> onnx.ModelProto:
    """onnxruntime dynamic quantization: int8 weights for MatMul/Gemm, activations quantized per call.

    The item table stays fp32 where it is gathered (input embeddings) and is quantized where it is
    the Gemm weight (output scores), so the file keeps one fp32 copy and one int8 copy of it.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as scratch:
        src, dst = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        onnx.save_model(model, src)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        quantized = onnx.load_model(dst)
    del quantized.metadata_props[:]
    onnx.helper.set_model_props(quantized, {VERSION_METADATA_KEY: version, "nudge.kind": KIND + "-int8"})
    return quantized


# ---------------------------------------------------------------- evaluation through the wrapper


def rank_with_recommender(
    rec: OnnxRecommender,
    vocab: Sequence[str],
    histories: Sequence[UserSeq],
    now: Sequence[int],
    targets: Sequence[int],
) -> NDArray[np.int64]:
    """1-based rank of each target with every history item masked; unranked targets get V + 1."""
    ranks = np.full(len(targets), len(vocab) + 1, dtype=np.int64)
    k = rec.manifest.vocab_size
    # One call per user: the wrapper takes one request time per call, as decide makes it.
    for index, history in enumerate(histories):
        ids = [vocab[i] for i in history.items]
        (recs,) = rec.recommend([ids], k, timestamps=[history.times.tolist()], now=int(now[index]))
        seen = set(ids)
        ranked = [r.item_id for r in recs if r.item_id not in seen]
        target = vocab[targets[index]]
        if target in ranked:
            ranks[index] = ranked.index(target) + 1
    return ranks
