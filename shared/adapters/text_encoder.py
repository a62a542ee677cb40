"""Sentence encoder at run time: a BERT-class ONNX graph, the ``tokenizers`` library, no torch.

What a catalog function needs to turn an item's title and description into a unit vector, the way
sentence-transformers does for all-MiniLM-L6-v2 (issue 12, item 2; built by
``training/text_encoder_export.py``, parity with the PyTorch reference in docs/model.md):

1. tokenize with the model's own ``tokenizer.json`` (BERT WordPiece, lower case, ``[CLS] ... [SEP]``),
   truncated at ``max_tokens`` (256, sentence-transformers' ``max_seq_length`` for this model);
2. pad each batch to its longest member (``[PAD]``, attention mask 0, token type 0);
3. run the graph (inputs ``input_ids``, ``attention_mask``, ``token_type_ids``, int64; output
   ``last_hidden_state`` ``[batch, tokens, dim]``);
4. mean-pool the hidden states over the tokens the mask keeps, then L2-normalise.

Steps 2 and 4 are plain numpy (``pad_batch``, ``mean_pool``, ``l2_normalise``) so that they are tested
without a real model; the tokenizer is anything with ``encode_batch`` (``TokenizerLike``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from shared.model import session_options

# sentence-transformers' max_seq_length for all-MiniLM-L6-v2 (sentence_bert_config.json).
MAX_TOKENS = 256
PAD_TOKEN = "[PAD]"
TOKENIZER_FILE = "tokenizer.json"
INPUT_IDS = "input_ids"
INPUT_MASK = "attention_mask"
INPUT_TYPES = "token_type_ids"
OUTPUT_HIDDEN = "last_hidden_state"
# sentence-transformers' Normalize divides by max(norm, 1e-12) (torch.nn.functional.normalize).
_NORM_FLOOR = 1e-12
# Its mean pooling divides by the kept-token count clamped at 1e-9.
_COUNT_FLOOR = 1e-9


class EncodingLike(Protocol):
    @property
    def ids(self) -> list[int]: ...

    @property
    def type_ids(self) -> list[int]: ...


class TokenizerLike(Protocol):
    def encode_batch(self, inputs: list[str]) -> Sequence[EncodingLike]: ...


class TextEncoderError(RuntimeError):
    """The encoder's files are missing or unusable."""


def pad_batch(
    token_ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]], pad_id: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """``input_ids``, ``attention_mask`` and ``token_type_ids``, right-padded to the batch's longest row."""
    if len(token_ids) != len(type_ids):
        raise ValueError(f"{len(token_ids)} token rows but {len(type_ids)} type rows")
    width = max((len(row) for row in token_ids), default=0)
    ids = np.full((len(token_ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(token_ids), width), dtype=np.int64)
    types = np.zeros((len(token_ids), width), dtype=np.int64)
    for row, (tokens, kinds) in enumerate(zip(token_ids, type_ids, strict=True)):
        if len(tokens) != len(kinds):
            raise ValueError(f"row {row}: {len(tokens)} tokens but {len(kinds)} type ids")
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
        types[row, : len(kinds)] = kinds
    return ids, mask, types


def mean_pool(hidden: NDArray[np.floating], mask: NDArray[np.integer]) -> NDArray[np.float32]:
    """Mean of ``hidden [batch, tokens, dim]`` over the tokens where ``mask [batch, tokens]`` is 1."""
    weights = mask.astype(np.float32)[:, :, None]
    summed = (hidden.astype(np.float32) * weights).sum(axis=1)
    counts = np.maximum(weights.sum(axis=1), _COUNT_FLOOR)
    pooled: NDArray[np.float32] = (summed / counts).astype(np.float32)
    return pooled


def l2_normalise(vectors: NDArray[np.floating]) -> NDArray[np.float32]:
    """Each row divided by its Euclidean norm (a zero row stays zero)."""
    norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), _NORM_FLOOR)
    unit: NDArray[np.float32] = (vectors / norms).astype(np.float32)
    return unit


def load_tokenizer(path: str | Path, max_tokens: int = MAX_TOKENS) -> tuple[TokenizerLike, int]:
    """The tokenizer of ``tokenizer.json`` truncating at ``max_tokens``, unpadded, and its pad id.

    all-MiniLM-L6-v2's file pads and truncates at a fixed 128; both are replaced here: truncation at
    sentence-transformers' 256 and padding per batch (``pad_batch``).
    """
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for a missing or corrupt file
        raise TextEncoderError(f"{path}: tokenizers cannot load it: {exc}") from exc
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_tokens)
    pad_id = tokenizer.token_to_id(PAD_TOKEN)
    if pad_id is None:
        raise TextEncoderError(f"{path}: no {PAD_TOKEN} token in the vocabulary")
    return tokenizer, int(pad_id)


class OnnxTextEncoder:
    """Texts -> unit vectors ``[n, dim]`` float32. Build once per process (``from_files``)."""

    def __init__(self, session: ort.InferenceSession, tokenizer: TokenizerLike, pad_id: int) -> None:
        names = {node.name for node in session.get_inputs()}
        if names != {INPUT_IDS, INPUT_MASK, INPUT_TYPES}:
            raise TextEncoderError(f"graph inputs {sorted(names)}, want {INPUT_IDS}, {INPUT_MASK}, {INPUT_TYPES}")
        if OUTPUT_HIDDEN not in {node.name for node in session.get_outputs()}:
            raise TextEncoderError(f"graph has no output {OUTPUT_HIDDEN}")
        self._session = session
        self._tokenizer = tokenizer
        self._pad_id = pad_id

    @classmethod
    def from_files(
        cls, model_path: str | Path, tokenizer_path: str | Path, max_tokens: int = MAX_TOKENS
    ) -> OnnxTextEncoder:
        if not Path(model_path).is_file():
            raise TextEncoderError(f"{model_path}: no model file")
        tokenizer, pad_id = load_tokenizer(tokenizer_path, max_tokens)
        try:
            session = ort.InferenceSession(
                str(model_path), sess_options=session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt graphs
            raise TextEncoderError(f"{model_path}: onnxruntime cannot load it: {exc}") from exc
        return cls(session, tokenizer, pad_id)

    def tokenize(self, texts: Sequence[str]) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        encodings = self._tokenizer.encode_batch(list(texts))
        return pad_batch([e.ids for e in encodings], [e.type_ids for e in encodings], self._pad_id)

    def encode_tokens(
        self, ids: NDArray[np.int64], mask: NDArray[np.int64], types: NDArray[np.int64]
    ) -> NDArray[np.float32]:
        outputs = self._session.run([OUTPUT_HIDDEN], {INPUT_IDS: ids, INPUT_MASK: mask, INPUT_TYPES: types})
        hidden = np.asarray(outputs[0])
        return l2_normalise(mean_pool(hidden, mask))

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            raise ValueError("nothing to encode")
        return self.encode_tokens(*self.tokenize(texts))

    def vector_bytes(self, text: str) -> bytes:
        """One text encoded alone (no batch-mates to pad against), as float32 little-endian bytes: what the
        catalog function stores (shared/services/catalog.py)."""
        vector: NDArray[np.float32] = self.encode([text])[0]
        return bytes(vector.astype("<f4").tobytes())
