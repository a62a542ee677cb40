"""The run-time sentence encoder's pre- and post-processing (shared/adapters/text_encoder.py).

A tiny ONNX graph stands in for MiniLM (last_hidden_state = word embedding + token-type embedding, a
Gather each), so that padding, mean pooling with the mask and normalisation are checked against a numpy
reference without the 90 MB model; parity with the real model is `make encoder`'s job (docs/model.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from shared.adapters.text_encoder import (
    INPUT_IDS,
    INPUT_MASK,
    INPUT_TYPES,
    OUTPUT_HIDDEN,
    OnnxTextEncoder,
    TextEncoderError,
    l2_normalise,
    load_tokenizer,
    mean_pool,
    pad_batch,
)
from shared.model import session_options

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "last", "lighthouse", "a", "keeper", "returns", "storm", "##s"]
DIM = 5


def _tiny_graph(path: Path | None = None, vocab_size: int = len(VOCAB), inputs: tuple[str, ...] = ()) -> bytes:
    rng = np.random.default_rng(7)
    words = numpy_helper.from_array(rng.normal(size=(vocab_size, DIM)).astype(np.float32), "words")
    kinds = numpy_helper.from_array(rng.normal(size=(2, DIM)).astype(np.float32), "kinds")
    names = inputs or (INPUT_IDS, INPUT_MASK, INPUT_TYPES)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["words", INPUT_IDS], ["word_vectors"]),
            helper.make_node("Gather", ["kinds", INPUT_TYPES], ["kind_vectors"]),
            helper.make_node("Add", ["word_vectors", "kind_vectors"], [OUTPUT_HIDDEN]),
        ],
        "tiny_encoder",
        [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "tokens"]) for name in names],
        [helper.make_tensor_value_info(OUTPUT_HIDDEN, TensorProto.FLOAT, ["batch", "tokens", DIM])],
        [words, kinds],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    if path is not None:
        path.write_bytes(data)
    return data


def _tables() -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    graph = onnx.load_model_from_string(_tiny_graph())
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.graph.initializer}
    return arrays["words"], arrays["kinds"]


def _reference(rows: list[list[int]]) -> NDArray[np.float32]:
    """Mean of the kept tokens' vectors (type 0), normalised: sentence-transformers' pooling, by hand."""
    words, kinds = _tables()
    out = []
    for row in rows:
        mean = np.mean([words[token] + kinds[0] for token in row], axis=0)
        out.append(mean / np.linalg.norm(mean))
    return np.asarray(out, dtype=np.float32)


@dataclass
class _Encoding:
    ids: list[int]
    type_ids: list[int] = field(default_factory=list)


class _WordTokenizer:
    """Whitespace words -> vocabulary ids between [CLS] and [SEP], truncated like tokenizers does."""

    def __init__(self, max_tokens: int = 256) -> None:
        self.max_tokens = max_tokens

    def encode_batch(self, inputs: list[str]) -> list[_Encoding]:
        out = []
        for text in inputs:
            words = [VOCAB.index(w) if w in VOCAB else 1 for w in text.lower().split()][: self.max_tokens - 2]
            ids = [2, *words, 3]
            out.append(_Encoding(ids, [0] * len(ids)))
        return out


def _encoder(max_tokens: int = 256) -> OnnxTextEncoder:
    session = ort.InferenceSession(_tiny_graph(), sess_options=session_options(), providers=["CPUExecutionProvider"])
    return OnnxTextEncoder(session, _WordTokenizer(max_tokens), pad_id=0)


def test_pad_batch_pads_right_to_the_longest_row_with_mask_and_type_zero() -> None:
    ids, mask, types = pad_batch([[2, 4, 3], [2, 3]], [[0, 0, 0], [0, 1]], pad_id=0)
    assert ids.dtype == mask.dtype == types.dtype == np.int64
    assert ids.tolist() == [[2, 4, 3], [2, 3, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert types.tolist() == [[0, 0, 0], [0, 1, 0]]


def test_pad_batch_refuses_rows_that_disagree() -> None:
    with pytest.raises(ValueError, match="type ids"):
        pad_batch([[2, 3]], [[0]], pad_id=0)
    with pytest.raises(ValueError, match="type rows"):
        pad_batch([[2, 3]], [], pad_id=0)


def test_mean_pool_ignores_masked_positions_and_normalise_gives_unit_rows() -> None:
    hidden = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = np.array([[1, 1, 0], [0, 0, 0]])
    pooled = mean_pool(hidden, mask)
    np.testing.assert_allclose(pooled, [[2.0, 3.0], [0.0, 0.0]])
    unit = l2_normalise(pooled)
    np.testing.assert_allclose(unit[0], np.array([2.0, 3.0]) / np.sqrt(13.0), rtol=1e-6)
    # An all-masked row pools to zero and stays zero rather than dividing by zero.
    assert unit.dtype == np.float32 and not np.isnan(unit).any() and unit[1].tolist() == [0.0, 0.0]


def test_encode_is_the_masked_mean_normalised() -> None:
    encoder = _encoder()
    texts = ["the last lighthouse", "a keeper returns", "storm"]
    got = encoder.encode(texts)
    want = _reference([[2, 4, 5, 6, 3], [2, 7, 8, 9, 3], [2, 10, 3]])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-6)


def test_padding_does_not_change_an_embedding() -> None:
    encoder = _encoder()
    alone = encoder.encode(["storm"])
    beside_a_long_text = encoder.encode(["storm", "the last lighthouse keeper returns a storm the last"])
    ids, mask, _ = encoder.tokenize(["storm", "the last lighthouse keeper returns a storm the last"])
    assert mask[0].sum() == 3 and ids.shape[1] == 11 and (ids[0, 3:] == 0).all()
    np.testing.assert_allclose(beside_a_long_text[0], alone[0], rtol=1e-6, atol=1e-7)


def test_encode_refuses_an_empty_batch() -> None:
    with pytest.raises(ValueError, match="nothing"):
        _encoder().encode([])


def test_a_graph_without_the_three_inputs_is_refused() -> None:
    session = ort.InferenceSession(_tiny_graph(inputs=(INPUT_IDS, INPUT_TYPES)), providers=["CPUExecutionProvider"])
    with pytest.raises(TextEncoderError, match="graph inputs"):
        OnnxTextEncoder(session, _WordTokenizer(), pad_id=0)


def test_missing_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(TextEncoderError, match="no model file"):
        OnnxTextEncoder.from_files(tmp_path / "model.onnx", tmp_path / "tokenizer.json")


def _bert_like_tokenizer_file(path: Path) -> None:
    """A WordPiece tokenizer.json shaped like all-MiniLM-L6-v2's, fixed padding and truncation at 128 included."""
    from testkit.tiny_encoder import wordpiece_tokenizer

    tokenizer = wordpiece_tokenizer(VOCAB)
    tokenizer.enable_truncation(max_length=128)
    tokenizer.enable_padding(length=128, pad_id=0, pad_token="[PAD]")
    tokenizer.save(str(path))
    assert json.loads(path.read_text())["padding"]["strategy"] == {"Fixed": 128}


def test_a_real_tokenizer_file_is_unpadded_truncated_at_max_tokens_and_pooled(tmp_path: Path) -> None:
    _bert_like_tokenizer_file(tmp_path / "tokenizer.json")
    _tiny_graph(tmp_path / "model.onnx")
    encoder = OnnxTextEncoder.from_files(tmp_path / "model.onnx", tmp_path / "tokenizer.json", max_tokens=6)
    ids, mask, types = encoder.tokenize(["The Last LIGHTHOUSE.", "storms " * 10])
    # Lower case, WordPiece (storms -> storm ##s), punctuation unknown; no fixed padding to 128.
    assert ids.tolist() == [[2, 4, 5, 6, 1, 3], [2, 10, 11, 10, 11, 3]]
    assert mask.tolist() == [[1] * 6, [1] * 6] and types.tolist() == [[0] * 6, [0] * 6]
    short = encoder.encode(["a keeper"])
    np.testing.assert_allclose(short, _reference([[2, 7, 8, 3]]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(encoder.encode(["a keeper", "the last lighthouse keeper"])[0], short[0], atol=1e-7)


def test_a_tokenizer_without_a_pad_token_is_refused(tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(TextEncoderError, match=r"\[PAD\]"):
        load_tokenizer(tmp_path / "tokenizer.json")
    with pytest.raises(TextEncoderError, match="cannot load"):
        load_tokenizer(tmp_path / "missing.json")
