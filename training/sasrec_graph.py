"""The transformer as shipped: plain weight arrays, a numpy reference forward, and the ONNX graph.

No torch here, so CI can rebuild and check the graph without the training dependency.

The graph computes only what a decision needs (opset 18, one self-contained file):

* inputs ``item_ids`` int64 [B, L] (left-padded, newest last), ``timestamps`` int64 [B, L] (epoch
  seconds, aligned), ``now`` int64 [B], ``k`` int64 [1];
* the time context (hour, weekday, log2 gap buckets) is derived inside the graph from raw seconds,
  exactly as ``training.context`` does in numpy;
* the causal mask and positions are constants; the padding mask is one Equal + Where;
* every block but the last runs all L positions; the last block computes the query, attention and
  feed-forward of the newest position only (the only output a decision reads), with the keys and
  values of all positions;
* scores = Gemm(query, item_table, transB) [B, V]; with a co-occurrence component (``cooc``), plus
  ``cooc_weight * log(eps + co-occurrence score)``, the score the neighbour-table graph of
  ``training.onnx_export`` computes for the same window (a product of the two experts);
* the history window and padding pushed to ``MASK_SCORE`` (ScatterElements min, as the co-occurrence
  graph), then TopK.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from shared.model import (
    INPUT_ITEM_IDS,
    INPUT_K,
    INPUT_NOW,
    INPUT_TIMESTAMPS,
    MASK_SCORE,
    OUTPUT_SCORES,
    OUTPUT_TOP_IDS,
    OUTPUT_TOP_SCORES,
    PAD_INDEX,
    VERSION_METADATA_KEY,
    TensorSpec,
)
from training.context import DAYS, GAP_BUCKETS, HOURS, event_context, request_context
from training.onnx_export import ModelArrays

OPSET = 18
LN_EPS = 1e-5
ATT_NEG = -1.0e9
CONTEXT_TABLES = ("hour", "dow", "gap", "q_hour", "q_dow", "q_gap")
# Floor under the co-occurrence score before its log: an item with no neighbour score and no
# popularity (never seen in training) gets log(COOC_EPS) instead of minus infinity.
COOC_EPS = 1e-3


@dataclass(frozen=True)
class BlockWeights:
    ln1_g: NDArray[np.float32]
    ln1_b: NDArray[np.float32]
    w_qkv: NDArray[np.float32]  # [d, 3d], x @ w
    b_qkv: NDArray[np.float32]
    w_o: NDArray[np.float32]
    b_o: NDArray[np.float32]
    ln2_g: NDArray[np.float32]
    ln2_b: NDArray[np.float32]
    w_1: NDArray[np.float32]
    b_1: NDArray[np.float32]
    w_2: NDArray[np.float32]
    b_2: NDArray[np.float32]


@dataclass(frozen=True)
class SasrecWeights:
    item_table: NDArray[np.float32]  # [V, d] fused id + content vectors; row 0 (padding) is zero
    positions: NDArray[np.float32]  # [L, d], oldest -> newest slot of the left-padded window
    blocks: list[BlockWeights]
    ln_f_g: NDArray[np.float32]
    ln_f_b: NDArray[np.float32]
    heads: int = 1
    context: dict[str, NDArray[np.float32]] = field(default_factory=dict)  # CONTEXT_TABLES, or empty
    cooc: ModelArrays | None = None  # neighbour tables over the same vocabulary (and max_len), or None
    cooc_weight: float = 0.0

    @property
    def vocab_size(self) -> int:
        return int(self.item_table.shape[0])

    @property
    def max_len(self) -> int:
        return int(self.positions.shape[0])

    @property
    def dim(self) -> int:
        return int(self.item_table.shape[1])

    @property
    def has_context(self) -> bool:
        return bool(self.context)

    @property
    def has_cooc(self) -> bool:
        return self.cooc is not None and self.cooc_weight != 0.0

    def arrays(self) -> list[tuple[str, NDArray[np.generic]]]:
        out: list[tuple[str, NDArray[np.generic]]] = [("item_table", self.item_table), ("positions", self.positions)]
        out += [(f"ctx_{name}", self.context[name]) for name in sorted(self.context)]
        for i, block in enumerate(self.blocks):
            out += [(f"b{i}_{name}", getattr(block, name)) for name in block.__dataclass_fields__]
        out += [("ln_f_g", self.ln_f_g), ("ln_f_b", self.ln_f_b)]
        if self.cooc is not None:
            out += [
                ("cooc_ids", self.cooc.neighbour_ids),
                ("cooc_scores", self.cooc.neighbour_scores),
                ("cooc_prior", self.cooc.popularity_prior),
                ("cooc_positions", self.cooc.position_weights),
                ("cooc_weight", np.asarray([self.cooc_weight], dtype=np.float32)),
            ]
        return out

    def digest(self) -> str:
        hasher = hashlib.sha256(str(self.heads).encode())
        for name, array in self.arrays():
            hasher.update(name.encode() + np.ascontiguousarray(array).tobytes())
        return hasher.hexdigest()

    def save(self, path: str) -> None:
        np.savez_compressed(path, heads=np.asarray(self.heads), **dict(self.arrays()))  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str) -> SasrecWeights:
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files}
        count = 1 + max(int(n.split("_", 1)[0][1:]) for n in arrays if n.startswith("b") and n[1].isdigit())
        names = BlockWeights.__dataclass_fields__
        return cls(
            item_table=arrays["item_table"],
            positions=arrays["positions"],
            blocks=[BlockWeights(**{n: arrays[f"b{i}_{n}"] for n in names}) for i in range(count)],
            ln_f_g=arrays["ln_f_g"],
            ln_f_b=arrays["ln_f_b"],
            heads=int(arrays["heads"]),
            context={n: arrays[f"ctx_{n}"] for n in CONTEXT_TABLES if f"ctx_{n}" in arrays},
            cooc=_cooc_arrays(arrays),
            cooc_weight=float(arrays["cooc_weight"][0]) if "cooc_weight" in arrays else 0.0,
        )

    def with_cooc(self, cooc: ModelArrays | None, weight: float) -> SasrecWeights:
        """The same transformer fused with neighbour tables (``weight`` 0 or ``cooc`` None: without)."""
        if cooc is not None and weight and (cooc.vocab_size != self.vocab_size or cooc.max_history != self.max_len):
            raise ValueError("the co-occurrence tables must share the vocabulary and the window length")
        keep = cooc is not None and weight != 0.0
        return replace(self, cooc=cooc if keep else None, cooc_weight=float(weight) if keep else 0.0)


def _cooc_arrays(arrays: dict[str, NDArray[np.generic]]) -> ModelArrays | None:
    if "cooc_ids" not in arrays:
        return None
    return ModelArrays(
        neighbour_ids=np.asarray(arrays["cooc_ids"], dtype=np.int64),
        neighbour_scores=np.asarray(arrays["cooc_scores"], dtype=np.float32),
        popularity_prior=np.asarray(arrays["cooc_prior"], dtype=np.float32),
        position_weights=np.asarray(arrays["cooc_positions"], dtype=np.float32).reshape(-1),
    )


def cooc_scores(cooc: ModelArrays, items: NDArray[np.int64]) -> NDArray[np.float64]:
    """[B, V] neighbour-table scores of the windows (``cooccurrence.dense_scores``, in float64)."""
    weights = cooc.neighbour_scores[items].astype(np.float64) * cooc.position_weights[None, :, None]
    batch, vocab = items.shape[0], cooc.vocab_size
    rows = np.repeat(np.arange(batch), weights.shape[1] * weights.shape[2])
    flat = rows * vocab + cooc.neighbour_ids[items].ravel()
    summed = np.bincount(flat, weights=weights.ravel(), minlength=batch * vocab).astype(np.float64)
    summed = summed.reshape(batch, vocab)
    total: NDArray[np.float64] = summed + cooc.popularity_prior[None, :].astype(np.float64)
    return total


# ---------------------------------------------------------------- numpy reference


def _ln(x: NDArray[np.float64], g: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float64]:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    out: NDArray[np.float64] = (x - mean) / np.sqrt(var + LN_EPS) * g + b
    return out


def reference_scores(
    w: SasrecWeights, items: NDArray[np.int64], times: NDArray[np.int64], now: NDArray[np.int64]
) -> NDArray[np.float64]:
    """[B, V] unmasked scores, the full-sequence forward in float64 (the definition the graph must match)."""
    b, length = items.shape
    d, heads = w.dim, w.heads
    x = w.item_table[items].astype(np.float64) + w.positions[-length:]
    if w.has_context:
        hour, dow, gap = event_context(times)
        x += w.context["hour"][hour] + w.context["dow"][dow] + w.context["gap"][gap]
    causal = np.triu(np.ones((length, length), dtype=bool), 1)
    bias = np.where((items == PAD_INDEX)[:, None, None, :], ATT_NEG, 0.0) + np.where(causal, ATT_NEG, 0.0)
    for block in w.blocks:
        qkv = _ln(x, block.ln1_g, block.ln1_b) @ block.w_qkv + block.b_qkv
        q, k, v = (t.reshape(b, length, heads, d // heads).transpose(0, 2, 1, 3) for t in np.split(qkv, 3, -1))
        # In float32, logit + -1e9 is just -1e9 (the logit is below its resolution), so a query whose
        # keys are all masked attends uniformly over its padding in the graph and in torch: match that.
        logits = np.where(bias < 0, bias, q @ k.transpose(0, 1, 3, 2) / np.sqrt(d // heads))
        att = np.exp(logits - logits.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        x = x + (att @ v).transpose(0, 2, 1, 3).reshape(b, length, d) @ block.w_o + block.b_o
        f = _ln(x, block.ln2_g, block.ln2_b)
        x = x + np.maximum(f @ block.w_1 + block.b_1, 0.0) @ block.w_2 + block.b_2
    h = _ln(x[:, -1], w.ln_f_g, w.ln_f_b)
    if w.has_context:
        q_hour, q_dow, q_gap = request_context(times[:, -1], now)
        h = h + w.context["q_hour"][q_hour] + w.context["q_dow"][q_dow] + w.context["q_gap"][q_gap]
    out: NDArray[np.float64] = h @ w.item_table.T.astype(np.float64)
    if w.has_cooc:
        assert w.cooc is not None
        out = out + w.cooc_weight * np.log(COOC_EPS + cooc_scores(w.cooc, items))
    return out


def reference_masked(
    w: SasrecWeights, items: NDArray[np.int64], times: NDArray[np.int64], now: NDArray[np.int64]
) -> NDArray[np.float64]:
    """``reference_scores`` with the graph's masking (padding and the history window)."""
    scores = reference_scores(w, items, times, now)
    scores[:, PAD_INDEX] = MASK_SCORE
    np.put_along_axis(scores, items, MASK_SCORE, axis=1)
    return scores


# ---------------------------------------------------------------- ONNX graph


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, value: object, dtype: type) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name=name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], out: str | None = None, **attrs: Any) -> str:
        self._n += 1
        name = out or f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=f"n{self._n}_{op_type}", **attrs))
        return name

    def op2(self, op_type: str, inputs: Sequence[str], outs: Sequence[str], **attrs: Any) -> list[str]:
        self._n += 1
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outs), name=f"n{self._n}_{op_type}", **attrs))
        return list(outs)


def _bucketize(g: _Graph, ts: str, suffix: str) -> tuple[str, str]:
    """hour and weekday indices of int64 epoch seconds (same arithmetic as ``training.context``)."""
    hours = g.op("Div", [ts, "c_3600"])
    hour = g.op("Mod", [hours, "c_24"], f"hour{suffix}")
    days = g.op("Add", [g.op("Div", [ts, "c_86400"]), "c_3"])
    dow = g.op("Mod", [days, "c_7"], f"dow{suffix}")
    return hour, dow


def _gap_bucket(g: _Graph, gap: str, suffix: str) -> str:
    as_float = g.op("Cast", [g.op("Max", [gap, "c_0"])], to=TensorProto.DOUBLE)
    log2 = g.op("Div", [g.op("Log", [g.op("Add", [as_float, "c_1d"])]), "c_ln2"])
    bucket = g.op("Clip", [g.op("Floor", [log2]), "c_0d", "c_maxgap"])
    return g.op("Cast", [bucket], f"gap{suffix}", to=TensorProto.INT64)


def _layer_norm(g: _Graph, x: str, prefix: str) -> str:
    return g.op("LayerNormalization", [x, f"{prefix}_g", f"{prefix}_b"], axis=-1, epsilon=LN_EPS)


def build_sasrec_graph(w: SasrecWeights, version: str, *, with_scores: bool = True) -> onnx.ModelProto:
    g = _Graph()
    d, heads, length, vocab = w.dim, w.heads, w.max_len, w.vocab_size
    dh = d // heads
    scale = np.float32(1.0 / np.sqrt(dh))
    g.const("item_table", w.item_table, np.float32)
    g.const("positions", w.positions[None], np.float32)
    causal = np.where(np.triu(np.ones((length, length), dtype=bool), 1), ATT_NEG, 0.0)
    g.const("causal_bias", causal[None, None], np.float32)
    g.const("att_neg", [ATT_NEG], np.float32)
    g.const("zero_f", [0.0], np.float32)
    g.const("pad_index", [PAD_INDEX], np.int64)
    g.const("heads_shape", [0, 0, heads, dh], np.int64)
    g.const("merge_shape", [0, 0, d], np.int64)
    g.const("last_start", [-1], np.int64)
    g.const("last_end", [np.iinfo(np.int64).max], np.int64)
    g.const("axis1", [1], np.int64)
    g.const("flat_shape", [0, d], np.int64)

    x = g.op("Gather", ["item_table", INPUT_ITEM_IDS], axis=0)
    x = g.op("Add", [x, "positions"])
    if w.has_context:
        for name, value in (("c_3600", 3600), ("c_24", HOURS), ("c_86400", 86400), ("c_3", 3), ("c_7", DAYS)):
            g.const(name, [value], np.int64)
        g.const("c_0", [0], np.int64)
        g.const("c_1d", [1.0], np.float64)
        g.const("c_0d", np.float64(0.0), np.float64)
        g.const("c_ln2", [np.log(2.0)], np.float64)
        g.const("c_maxgap", np.float64(GAP_BUCKETS - 1), np.float64)
        for name in CONTEXT_TABLES:
            g.const(f"ctx_{name}", w.context[name], np.float32)
        hour, dow = _bucketize(g, INPUT_TIMESTAMPS, "")
        g.const("prev_pads", [0, 1, 0, -1], np.int64)
        prev = g.op("Pad", [INPUT_TIMESTAMPS, "prev_pads"], mode="constant")
        gap = _gap_bucket(g, g.op("Sub", [INPUT_TIMESTAMPS, prev]), "")
        for table, index in (("ctx_hour", hour), ("ctx_dow", dow), ("ctx_gap", gap)):
            x = g.op("Add", [x, g.op("Gather", [table, index], axis=0)])
    # Additive attention bias [B, 1, L, L]: causal constant + padded keys.
    is_pad = g.op("Equal", [INPUT_ITEM_IDS, "pad_index"])
    pad_bias = g.op("Where", [is_pad, "att_neg", "zero_f"])
    g.const("bias_axes", [1, 2], np.int64)
    pad_bias = g.op("Unsqueeze", [pad_bias, "bias_axes"])  # [B, 1, 1, L]
    full_bias = g.op("Add", [pad_bias, "causal_bias"])

    def split_heads(t: str) -> str:
        return g.op("Transpose", [g.op("Reshape", [t, "heads_shape"])], perm=[0, 2, 1, 3])

    last = len(w.blocks) - 1
    for i, block in enumerate(w.blocks):
        p = f"b{i}"
        w_qkv = block.w_qkv.copy()
        b_qkv = block.b_qkv.copy()
        # Fold 1/sqrt(dh) into the query projection: one Mul fewer per block.
        w_qkv[:, :d] *= scale
        b_qkv[:d] *= scale
        for name in ("ln1_g", "ln1_b", "w_o", "b_o", "ln2_g", "ln2_b", "w_1", "b_1", "w_2", "b_2"):
            g.const(f"{p}_{name}", getattr(block, name), np.float32)
        a = _layer_norm(g, x, f"{p}_ln1")
        if i < last:
            g.const(f"{p}_w_qkv", w_qkv, np.float32)
            g.const(f"{p}_b_qkv", b_qkv, np.float32)
            qkv = g.op("Add", [g.op("MatMul", [a, f"{p}_w_qkv"]), f"{p}_b_qkv"])
            q, k, v = g.op2("Split", [qkv], [f"{p}_q", f"{p}_k", f"{p}_v"], axis=-1, num_outputs=3)
            bias, residual = full_bias, x
        else:
            # Newest position only for the query; keys and values still span the window.
            g.const(f"{p}_w_q", w_qkv[:, :d], np.float32)
            g.const(f"{p}_b_q", b_qkv[:d], np.float32)
            g.const(f"{p}_w_kv", w_qkv[:, d:], np.float32)
            g.const(f"{p}_b_kv", b_qkv[d:], np.float32)
            a_last = g.op("Slice", [a, "last_start", "last_end", "axis1"])
            residual = g.op("Slice", [x, "last_start", "last_end", "axis1"])
            q = g.op("Add", [g.op("MatMul", [a_last, f"{p}_w_q"]), f"{p}_b_q"])
            kv = g.op("Add", [g.op("MatMul", [a, f"{p}_w_kv"]), f"{p}_b_kv"])
            k, v = g.op2("Split", [kv], [f"{p}_k", f"{p}_v"], axis=-1, num_outputs=2)
            bias = pad_bias
        logits = g.op(
            "Add", [g.op("MatMul", [split_heads(q), g.op("Transpose", [split_heads(k)], perm=[0, 1, 3, 2])]), bias]
        )
        att = g.op("MatMul", [g.op("Softmax", [logits], axis=-1), split_heads(v)])
        merged = g.op("Reshape", [g.op("Transpose", [att], perm=[0, 2, 1, 3]), "merge_shape"])
        x = g.op("Add", [residual, g.op("Add", [g.op("MatMul", [merged, f"{p}_w_o"]), f"{p}_b_o"])])
        f = _layer_norm(g, x, f"{p}_ln2")
        hidden = g.op("Relu", [g.op("Add", [g.op("MatMul", [f, f"{p}_w_1"]), f"{p}_b_1"])])
        x = g.op("Add", [x, g.op("Add", [g.op("MatMul", [hidden, f"{p}_w_2"]), f"{p}_b_2"])])

    g.const("ln_f_g", w.ln_f_g, np.float32)
    g.const("ln_f_b", w.ln_f_b, np.float32)
    h = g.op("Reshape", [_layer_norm(g, x, "ln_f"), "flat_shape"])  # [B, d]
    if w.has_context:
        last_ts = g.op("Squeeze", [g.op("Slice", [INPUT_TIMESTAMPS, "last_start", "last_end", "axis1"]), "axis1"])
        q_hour, q_dow = _bucketize(g, INPUT_NOW, "_now")
        q_gap = _gap_bucket(g, g.op("Sub", [INPUT_NOW, last_ts]), "_now")
        for table, index in (("ctx_q_hour", q_hour), ("ctx_q_dow", q_dow), ("ctx_q_gap", q_gap)):
            h = g.op("Add", [h, g.op("Gather", [table, index], axis=0)])
    raw = g.op("Gemm", [h, "item_table"], transB=1)  # [B, V]
    if w.has_cooc:
        raw = g.op("Add", [raw, _cooc_term(g, w)])
    # Padding and the history window can never be recommended.
    g.const("pad_col", [[PAD_INDEX]], np.int64)
    batch = g.op("Shape", [INPUT_ITEM_IDS], start=0, end=1)
    g.const("one_i", [1], np.int64)
    pad_cols = g.op("Expand", ["pad_col", g.op("Concat", [batch, "one_i"], axis=0)])
    mask_idx = g.op("Concat", [INPUT_ITEM_IDS, pad_cols], axis=1)
    mask_vals = g.op(
        "ConstantOfShape",
        [g.op("Shape", [mask_idx])],
        value=numpy_helper.from_array(np.asarray([MASK_SCORE], dtype=np.float32)),
    )
    scores_name = OUTPUT_SCORES if with_scores else "masked_scores"
    g.op("ScatterElements", [raw, mask_idx, mask_vals], scores_name, axis=1, reduction="min")
    g.op2("TopK", [scores_name, INPUT_K], [OUTPUT_TOP_SCORES, OUTPUT_TOP_IDS], axis=-1, largest=1, sorted=1)

    inputs, outputs = sasrec_io_specs(vocab, length, w.has_context, with_scores)
    onnx_type = {"int64": TensorProto.INT64, "float32": TensorProto.FLOAT}
    graph = helper.make_graph(
        g.nodes,
        "nudge_sasrec",
        [helper.make_tensor_value_info(s.name, onnx_type[s.dtype], s.shape) for s in inputs],
        [helper.make_tensor_value_info(s.name, onnx_type[s.dtype], s.shape) for s in outputs],
        initializer=g.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="nudge-training",
        doc_string=f"Nudge SASRec recommender {version}",
    )
    helper.set_model_props(model, {VERSION_METADATA_KEY: version, "nudge.kind": "sasrec"})
    onnx.checker.check_model(model, full_check=True)
    return model


def _cooc_term(g: _Graph, w: SasrecWeights) -> str:
    """cooc_weight * log(eps + neighbour-table score) [B, V], as ``training.onnx_export``'s graph sums it."""
    assert w.cooc is not None
    cooc = w.cooc
    g.const("cooc_ids", cooc.neighbour_ids.astype(np.int32), np.int32)
    g.const("cooc_scores", cooc.neighbour_scores, np.float32)
    g.const("cooc_prior", cooc.popularity_prior, np.float32)
    g.const("cooc_positions", cooc.position_weights.reshape(1, -1, 1), np.float32)
    g.const("cooc_weight", [w.cooc_weight], np.float32)
    g.const("cooc_eps", [COOC_EPS], np.float32)
    g.const("cooc_flat", [0, -1], np.int64)
    g.const("cooc_vocab", [w.vocab_size], np.int64)
    ids = g.op("Reshape", [g.op("Gather", ["cooc_ids", INPUT_ITEM_IDS], axis=0), "cooc_flat"])
    weighted = g.op("Mul", [g.op("Gather", ["cooc_scores", INPUT_ITEM_IDS], axis=0), "cooc_positions"])
    flat_scores = g.op("Reshape", [weighted, "cooc_flat"])
    shape = g.op("Concat", [g.op("Shape", [INPUT_ITEM_IDS], start=0, end=1), "cooc_vocab"], axis=0)
    base = g.op("Expand", ["cooc_prior", shape])
    summed = g.op("ScatterElements", [base, ids, flat_scores], axis=1, reduction="add")
    return g.op("Mul", [g.op("Log", [g.op("Add", [summed, "cooc_eps"])]), "cooc_weight"])


def sasrec_io_specs(
    vocab_size: int, max_len: int, context: bool, with_scores: bool = True
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    inputs = [TensorSpec(name=INPUT_ITEM_IDS, dtype="int64", shape=["batch", max_len])]
    if context:
        inputs += [
            TensorSpec(name=INPUT_TIMESTAMPS, dtype="int64", shape=["batch", max_len]),
            TensorSpec(name=INPUT_NOW, dtype="int64", shape=["batch"]),
        ]
    inputs.append(TensorSpec(name=INPUT_K, dtype="int64", shape=[1]))
    outputs = [
        TensorSpec(name=OUTPUT_TOP_IDS, dtype="int64", shape=["batch", "k"]),
        TensorSpec(name=OUTPUT_TOP_SCORES, dtype="float32", shape=["batch", "k"]),
    ]
    if with_scores:
        outputs.append(TensorSpec(name=OUTPUT_SCORES, dtype="float32", shape=["batch", vocab_size]))
    return inputs, outputs


def weights_from_graph(model: onnx.ModelProto) -> SasrecWeights:
    """Recover ``SasrecWeights`` from an fp32 graph written by ``build_sasrec_graph`` (undoing the folds).

    Lets the benchmark and the parity tests rebuild the reference (numpy or torch) from the shipped
    file alone, so a fresh clone checks the artifact without the training data or a checkpoint.
    """
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    heads = int(inits["heads_shape"][2])
    dim = int(inits["item_table"].shape[1])
    scale = np.float32(1.0 / np.sqrt(dim // heads))
    count = 1 + max(int(name[1:].split("_", 1)[0]) for name in inits if name[:1] == "b" and name[1:2].isdigit())
    blocks = []
    for i in range(count):
        p = f"b{i}"
        if f"{p}_w_qkv" in inits:
            w_qkv, b_qkv = inits[f"{p}_w_qkv"].copy(), inits[f"{p}_b_qkv"].copy()
        else:
            w_qkv = np.concatenate([inits[f"{p}_w_q"], inits[f"{p}_w_kv"]], axis=1)
            b_qkv = np.concatenate([inits[f"{p}_b_q"], inits[f"{p}_b_kv"]])
        w_qkv[:, :dim] /= scale
        b_qkv[:dim] /= scale
        rest = {n: inits[f"{p}_{n}"] for n in BlockWeights.__dataclass_fields__ if n not in ("w_qkv", "b_qkv")}
        blocks.append(BlockWeights(w_qkv=w_qkv, b_qkv=b_qkv, **rest))
    return SasrecWeights(
        item_table=inits["item_table"],
        positions=inits["positions"][0],
        blocks=blocks,
        ln_f_g=inits["ln_f_g"],
        ln_f_b=inits["ln_f_b"],
        heads=heads,
        context={n: inits[f"ctx_{n}"] for n in CONTEXT_TABLES if f"ctx_{n}" in inits},
        cooc=_cooc_arrays(inits),
        cooc_weight=float(inits["cooc_weight"][0]) if "cooc_weight" in inits else 0.0,
    )
