"""Write a neighbour-table recommender as one self-contained ONNX graph plus its manifest.

Graph (opset 18), for ``item_ids`` [B, L] and ``k`` [1]:

    nbr_ids    = Gather(neighbour_ids, item_ids)             [B, L, M]  (stored int32)
    nbr_scores = Gather(neighbour_scores, item_ids)          [B, L, M]  * position_weights [1, L, 1]
    base       = Expand(popularity_prior, [B, V])            (prior[0] = MASK_SCORE: padding never wins)
    summed     = ScatterElements(base, nbr_ids, nbr_scores, axis=1, reduction="add")   (flattened to [B, L*M])
    scores     = ScatterElements(summed, item_ids, MASK_SCORE, axis=1, reduction="min") (history window)
    top_scores, top_ids = TopK(scores, k)                   ties -> lower index first (ONNX spec)

Padding rows of both tables are zeros, so padded positions add nothing. "min" rather than "none"
for the mask because a history may repeat an item, and "none" leaves duplicate indices undefined.
Every model kind that fits this shape (co-occurrence, popularity = no neighbours) is the same graph
with different initializers, so ``shared.model.OnnxRecommender`` serves all of them unchanged.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from shared.model import (
    INPUT_ITEM_IDS,
    INPUT_K,
    MANIFEST_FILE,
    MASK_SCORE,
    MODEL_FILE,
    OUTPUT_SCORES,
    OUTPUT_TOP_IDS,
    OUTPUT_TOP_SCORES,
    PAD_INDEX,
    PAD_TOKEN,
    VERSION_METADATA_KEY,
    ModelManifest,
    TensorSpec,
    manifest_json,
)

OPSET = 18
BATCH_DIM = "batch"
K_DIM = "k"
VERSION_PREFIX = {"cooccurrence": "cooc", "popularity": "pop"}


@dataclass(frozen=True)
class ModelArrays:
    """The learned tables. Row 0 of each [V, ...] table is the padding token and must be zero."""

    neighbour_ids: NDArray[np.int64]  # [V, M] vocabulary indices, best neighbour first
    neighbour_scores: NDArray[np.float32]  # [V, M]
    popularity_prior: NDArray[np.float32]  # [V] added to every score; the whole signal for an empty history
    position_weights: NDArray[np.float32]  # [L] oldest -> newest position in the (left-padded) window

    @property
    def vocab_size(self) -> int:
        return int(self.popularity_prior.shape[0])

    @property
    def max_history(self) -> int:
        return int(self.position_weights.shape[0])

    def validate(self) -> None:
        vocab, width = self.neighbour_ids.shape
        if self.neighbour_scores.shape != (vocab, width) or self.popularity_prior.shape != (vocab,):
            raise ValueError("neighbour_ids, neighbour_scores and popularity_prior disagree on the vocabulary")
        if width < 1 or self.max_history < 1:
            raise ValueError("need at least one neighbour column and one history position")
        if self.neighbour_ids.min() < 0 or self.neighbour_ids.max() >= min(vocab, np.iinfo(np.int32).max):
            raise ValueError("neighbour id out of the vocabulary")
        if self.neighbour_scores[PAD_INDEX].any():
            raise ValueError("the padding row must have zero scores")
        if not np.isfinite(self.neighbour_scores).all() or not np.isfinite(self.popularity_prior).all():
            raise ValueError("non-finite score")

    def digest(self) -> str:
        hasher = hashlib.sha256()
        for array in (
            self.neighbour_ids,
            self.neighbour_scores,
            self.popularity_prior,
            self.position_weights,
        ):
            hasher.update(np.ascontiguousarray(array).tobytes())
        return hasher.hexdigest()


def io_specs(vocab_size: int, max_history: int, with_scores: bool = True) -> tuple[list[TensorSpec], list[TensorSpec]]:
    inputs = [
        TensorSpec(name=INPUT_ITEM_IDS, dtype="int64", shape=[BATCH_DIM, max_history]),
        TensorSpec(name=INPUT_K, dtype="int64", shape=[1]),
    ]
    outputs = [
        TensorSpec(name=OUTPUT_TOP_IDS, dtype="int64", shape=[BATCH_DIM, K_DIM]),
        TensorSpec(name=OUTPUT_TOP_SCORES, dtype="float32", shape=[BATCH_DIM, K_DIM]),
    ]
    if with_scores:
        outputs.append(TensorSpec(name=OUTPUT_SCORES, dtype="float32", shape=[BATCH_DIM, vocab_size]))
    return inputs, outputs


_ONNX_DTYPE = {"int64": TensorProto.INT64, "float32": TensorProto.FLOAT}


def _value_info(spec: TensorSpec) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(spec.name, _ONNX_DTYPE[spec.dtype], spec.shape)


def _const(name: str, values: Sequence[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name=name)


def build_graph(arrays: ModelArrays, version: str, *, kind: str, with_scores: bool = True) -> onnx.ModelProto:
    arrays.validate()
    vocab, length = arrays.vocab_size, arrays.max_history
    prior = arrays.popularity_prior.astype(np.float32).copy()
    prior[PAD_INDEX] = MASK_SCORE
    initializers = [
        # int32 halves the biggest table; Gather and ScatterElements take int32 indices as they are.
        numpy_helper.from_array(arrays.neighbour_ids.astype(np.int32), name="neighbour_ids"),
        numpy_helper.from_array(arrays.neighbour_scores.astype(np.float32), name="neighbour_scores"),
        numpy_helper.from_array(prior, name="popularity_prior"),
        numpy_helper.from_array(
            arrays.position_weights.astype(np.float32).reshape(1, length, 1), name="position_weights"
        ),
        _const("flat_shape", [0, -1]),
        _const("vocab_dim", [vocab]),
    ]
    nodes = [
        helper.make_node("Gather", ["neighbour_ids", INPUT_ITEM_IDS], ["nbr_ids"], axis=0),
        helper.make_node("Gather", ["neighbour_scores", INPUT_ITEM_IDS], ["nbr_raw"], axis=0),
        helper.make_node("Mul", ["nbr_raw", "position_weights"], ["nbr_weighted"]),
        helper.make_node("Reshape", ["nbr_ids", "flat_shape"], ["flat_ids"]),
        helper.make_node("Reshape", ["nbr_weighted", "flat_shape"], ["flat_scores"]),
        helper.make_node("Shape", [INPUT_ITEM_IDS], ["batch_dim"], start=0, end=1),
        helper.make_node("Concat", ["batch_dim", "vocab_dim"], ["score_shape"], axis=0),
        helper.make_node("Expand", ["popularity_prior", "score_shape"], ["base"]),
        helper.make_node("ScatterElements", ["base", "flat_ids", "flat_scores"], ["summed"], axis=1, reduction="add"),
        helper.make_node("Shape", [INPUT_ITEM_IDS], ["history_shape"]),
        helper.make_node(
            "ConstantOfShape",
            ["history_shape"],
            ["mask_values"],
            value=numpy_helper.from_array(np.asarray([MASK_SCORE], dtype=np.float32)),
        ),
        helper.make_node(
            "ScatterElements",
            ["summed", INPUT_ITEM_IDS, "mask_values"],
            [OUTPUT_SCORES if with_scores else "masked"],
            axis=1,
            reduction="min",
        ),
        helper.make_node(
            "TopK",
            [OUTPUT_SCORES if with_scores else "masked", INPUT_K],
            [OUTPUT_TOP_SCORES, OUTPUT_TOP_IDS],
            axis=-1,
            largest=1,
            sorted=1,
        ),
    ]
    inputs, outputs = io_specs(vocab, length, with_scores)
    graph = helper.make_graph(
        nodes,
        f"nudge_{kind}",
        [_value_info(spec) for spec in inputs],
        [_value_info(spec) for spec in outputs],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="nudge-training",
        doc_string=f"Nudge {kind} recommender {version}",
    )
    helper.set_model_props(model, {VERSION_METADATA_KEY: version, "nudge.kind": kind})
    onnx.checker.check_model(model, full_check=True)
    return model


def make_version(kind: str, created_at: datetime, arrays: ModelArrays, item_vocab: Sequence[str]) -> str:
    """``<prefix>-<yyyymmdd>-<hash8>``; the hash covers tables and vocabulary: same content, same hash."""
    hasher = hashlib.sha256(arrays.digest().encode())
    hasher.update("\n".join(item_vocab).encode())
    return f"{VERSION_PREFIX.get(kind, kind)}-{created_at:%Y%m%d}-{hasher.hexdigest()[:8]}"


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        # mkstemp makes 0600; the artifact is committed and packaged, so give it normal file modes.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_model(
    out_dir: Path,
    arrays: ModelArrays,
    *,
    item_vocab: Sequence[str],
    kind: str,
    name: str | None = None,
    training_data_sha256: str,
    training_window: Mapping[str, datetime],
    metrics: Mapping[str, float],
    code_version: str,
    created_at: datetime | None = None,
    with_scores: bool = True,
) -> ModelManifest:
    """Write ``model.onnx`` and ``manifest.json`` into ``out_dir`` and return the manifest."""
    if len(item_vocab) != arrays.vocab_size or not item_vocab or item_vocab[PAD_INDEX] != PAD_TOKEN:
        raise ValueError(f"item_vocab must have {arrays.vocab_size} entries starting with {PAD_TOKEN!r}")
    created = created_at or datetime.now(UTC)
    version = make_version(kind, created, arrays, item_vocab)
    model = build_graph(arrays, version, kind=kind, with_scores=with_scores)
    inputs, outputs = io_specs(arrays.vocab_size, arrays.max_history, with_scores)
    manifest = ModelManifest(
        name=name or kind,
        version=version,
        kind=kind,
        created_at=created,
        inputs=inputs,
        outputs=outputs,
        item_vocab=list(item_vocab),
        max_history=arrays.max_history,
        training_data_sha256=training_data_sha256,
        training_window=dict(training_window),
        metrics={key: float(value) for key, value in metrics.items()},
        code_version=code_version,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(out_dir / MODEL_FILE, model.SerializeToString())
    _write_atomic(out_dir / MANIFEST_FILE, manifest_json(manifest).encode())
    return manifest
