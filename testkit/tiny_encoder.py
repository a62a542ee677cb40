"""A tiny stand-in for the catalog function's sentence encoder: the EncoderLayer's two files, built here.

The real all-MiniLM-L6-v2 int8 graph (~23 MB, `make encoder`) is not committed, so tests point the
catalog function's ENCODER_DIR at this instead: ``model.int8.onnx`` with MiniLM's inputs and output
(``last_hidden_state`` = word embedding + token-type embedding, a Gather each, dimension ``DIM``) and a
WordPiece ``tokenizer.json`` shaped like MiniLM's (lower case, ``[CLS] ... [SEP]``), which the real
``tokenizers`` library reads. Same words, same vector; different words, different vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shared.adapters.text_encoder import INPUT_IDS, INPUT_MASK, INPUT_TYPES, OUTPUT_HIDDEN, TOKENIZER_FILE

DIM = 8
MODEL_FILE = "model.int8.onnx"
WORDS = [
    "the",
    "a",
    "of",
    "and",
    "in",
    "to",
    "new",
    "lighthouse",
    "keeper",
    "storm",
    "returns",
    "film",
    "story",
    "city",
    "night",
    "harbour",
    "map",
    "smugglers",
    "port",
    "rain",
    "documentary",
    "space",
    "war",
    "love",
    "comedy",
    "drama",
    "family",
]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS]


def _graph() -> onnx.ModelProto:
    rng = np.random.default_rng(12)
    words = numpy_helper.from_array(rng.normal(size=(len(VOCAB), DIM)).astype(np.float32), "words")
    kinds = numpy_helper.from_array(rng.normal(size=(2, DIM)).astype(np.float32), "kinds")
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["words", INPUT_IDS], ["word_vectors"]),
            helper.make_node("Gather", ["kinds", INPUT_TYPES], ["kind_vectors"]),
            # The mask is an input of MiniLM's graph; here it only has to be accepted.
            helper.make_node("Add", ["word_vectors", "kind_vectors"], [OUTPUT_HIDDEN]),
        ],
        "tiny_text_encoder",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"]) for n in (INPUT_IDS, INPUT_TYPES)]
        + [helper.make_tensor_value_info(INPUT_MASK, TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info(OUTPUT_HIDDEN, TensorProto.FLOAT, ["batch", "tokens", DIM])],
        [words, kinds],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def build_tiny_encoder(folder: Path) -> Path:
    """Write ``model.int8.onnx`` and ``tokenizer.json`` into ``folder``; returns it (an ENCODER_DIR)."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(_graph(), str(folder / MODEL_FILE))
    wordpiece_tokenizer(VOCAB).save(str(folder / TOKENIZER_FILE))
    return folder


def wordpiece_tokenizer(vocab: Sequence[str]) -> Any:
    """A BERT-style WordPiece tokenizer over ``vocab`` ([PAD], [UNK], [CLS], [SEP] first), as MiniLM's is built."""
    import tokenizers

    tokenizer = tokenizers.Tokenizer(
        tokenizers.models.WordPiece({token: i for i, token in enumerate(vocab)}, unk_token="[UNK]")
    )
    tokenizer.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return tokenizer
