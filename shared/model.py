"""The recommender as decide sees it: an ONNX graph plus a manifest, behind one small interface.

Runs inside Lambda, so it needs only numpy, onnxruntime, pydantic and the standard library (boto3
only on the S3 path, passed in by the caller). Any model kind (co-occurrence, popularity, later a
transformer) is served by the same ``OnnxRecommender`` as long as its graph keeps the contract:

* inputs ``item_ids`` int64 [batch, max_history] (0 = padding, newest item last) and ``k`` int64 [1];
  a graph may also declare context inputs ``timestamps`` int64 [batch, max_history] (epoch seconds
  aligned with ``item_ids``) and ``now`` int64 [batch] (the request time); the wrapper feeds them
  only then, so the co-occurrence graph and a context-aware transformer share this one wrapper;
* outputs ``top_ids`` int64 [batch, k] and ``top_scores`` float32 [batch, k], best first, with the
  padding token and the history window pushed to ``MASK_SCORE``; optionally ``scores`` [batch, V].
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.domain.engagement import CALIBRATION_FILE
from shared.domain.recommendation import ContextRecommender, Recommendation, Recommender, recommend_in_context

__all__ = ["ContextRecommender", "OnnxRecommender", "Recommendation", "Recommender", "recommend_in_context"]

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
PAD_TOKEN = "<pad>"
PAD_INDEX = 0
# The graph writes this over masked entries; anything at or below half of it is not a recommendation.
MASK_SCORE = -1.0e9
_MASKED_BELOW = MASK_SCORE / 2
# Stored in the ONNX file's metadata so a manifest from one build cannot pair with a graph from another.
VERSION_METADATA_KEY = "nudge.model_version"

INPUT_ITEM_IDS = "item_ids"
INPUT_K = "k"
# Optional context inputs: a graph that declares them gets per-item epoch seconds and the request time.
INPUT_TIMESTAMPS = "timestamps"
INPUT_NOW = "now"
OUTPUT_TOP_IDS = "top_ids"
OUTPUT_TOP_SCORES = "top_scores"
OUTPUT_SCORES = "scores"

_ORT_DTYPES = {"tensor(int64)": "int64", "tensor(float)": "float32", "tensor(int32)": "int32"}


class ModelLoadError(Exception):
    """The model directory or S3 prefix does not hold a usable, self-consistent model."""


class TensorSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    dtype: str
    # An int is a fixed size; a string names a dimension chosen at run time ("batch", "k").
    shape: list[int | str]


class ModelManifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    kind: str
    created_at: datetime
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    item_vocab: list[str]
    max_history: int
    training_data_sha256: str
    training_window: dict[str, datetime]
    metrics: dict[str, float]
    code_version: str

    @property
    def vocab_size(self) -> int:
        return len(self.item_vocab)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_vocab) if i != PAD_INDEX}

    def index_map(self) -> dict[str, int]:
        """Item id -> vocabulary index, without the padding token (it is never a real item)."""
        return dict(self._index)

    def index_of(self, item_id: str) -> int | None:
        """Vocabulary index of ``item_id``; None for unknown ids (and for the padding token)."""
        return self._index.get(item_id)

    def input(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.outputs if spec.name == name), None)


def session_options() -> ort.SessionOptions:
    """One thread, sequential: a Lambda has ~1 vCPU and a thread pool only adds wake-up latency."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def read_manifest(model_dir: str | Path) -> ModelManifest:
    path = Path(model_dir) / MANIFEST_FILE
    try:
        return ModelManifest.model_validate_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{path}: no manifest") from exc
    except ValidationError as exc:
        raise ModelLoadError(f"{path}: invalid manifest: {exc}") from exc


def _spec_of(node: Any) -> TensorSpec:
    dtype = _ORT_DTYPES.get(node.type, node.type)
    # onnxruntime reports a symbolic dimension as its name, or None when it has none.
    shape: list[int | str] = [dim if isinstance(dim, int) else str(dim or "?") for dim in node.shape]
    return TensorSpec(name=node.name, dtype=dtype, shape=shape)


def _mismatches(kind: str, declared: Sequence[TensorSpec], actual: Sequence[TensorSpec]) -> list[str]:
    problems: list[str] = []
    by_name = {spec.name: spec for spec in actual}
    if set(by_name) != {spec.name for spec in declared}:
        problems.append(f"{kind} names: manifest {sorted(s.name for s in declared)}, graph {sorted(by_name)}")
    for want in declared:
        got = by_name.get(want.name)
        if got is None:
            continue
        if got.dtype != want.dtype:
            problems.append(f"{kind} {want.name}: dtype manifest {want.dtype}, graph {got.dtype}")
        # A fixed size must match exactly; a named one must stay dynamic in the graph (any name).
        differs = len(got.shape) != len(want.shape) or any(
            (isinstance(w, int) and g != w) or (isinstance(w, str) and isinstance(g, int))
            for w, g in zip(want.shape, got.shape, strict=False)
        )
        if differs:
            problems.append(f"{kind} {want.name}: shape manifest {want.shape}, graph {got.shape}")
    return problems


def _check_contract(manifest: ModelManifest) -> list[str]:
    problems: list[str] = []
    if not manifest.item_vocab or manifest.item_vocab[PAD_INDEX] != PAD_TOKEN:
        problems.append(f"item_vocab[0] must be {PAD_TOKEN!r}")
    if len(set(manifest.item_vocab)) != len(manifest.item_vocab):
        problems.append("item_vocab has duplicate ids")
    item_ids = manifest.input(INPUT_ITEM_IDS)
    if item_ids is None or item_ids.shape[-1:] != [manifest.max_history]:
        problems.append(f"input {INPUT_ITEM_IDS} must be [batch, max_history={manifest.max_history}]")
    stamps, now = manifest.input(INPUT_TIMESTAMPS), manifest.input(INPUT_NOW)
    if (stamps is None) != (now is None):
        problems.append(f"inputs {INPUT_TIMESTAMPS} and {INPUT_NOW} come together or not at all")
    if stamps is not None and stamps.shape[-1:] != [manifest.max_history]:
        problems.append(f"input {INPUT_TIMESTAMPS} must be [batch, max_history={manifest.max_history}]")
    for required in (OUTPUT_TOP_IDS, OUTPUT_TOP_SCORES):
        if manifest.output(required) is None:
            problems.append(f"missing output {required}")
    scores = manifest.output(OUTPUT_SCORES)
    if scores is not None and scores.shape[-1:] != [manifest.vocab_size]:
        problems.append(f"output {OUTPUT_SCORES} must be [batch, {manifest.vocab_size}] (the vocabulary)")
    return problems


class OnnxRecommender:
    """Implements ``Recommender`` over any graph that keeps the module's input/output contract.

    Build it once per process (``from_dir``): the session is the expensive part, a call is cheap.
    """

    def __init__(self, manifest: ModelManifest, session: ort.InferenceSession) -> None:
        self._manifest = manifest
        self._session = session
        self._index = manifest.index_map()
        self._vocab = np.asarray(manifest.item_vocab, dtype=object)
        self._has_scores = manifest.output(OUTPUT_SCORES) is not None
        self._uses_context = manifest.input(INPUT_TIMESTAMPS) is not None

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> OnnxRecommender:
        model_dir = Path(model_dir)
        manifest = read_manifest(model_dir)
        model_path = model_dir / MODEL_FILE
        if not model_path.is_file():
            raise ModelLoadError(f"{model_path}: no model file")
        try:
            session = ort.InferenceSession(
                str(model_path), sess_options=session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt graphs
            raise ModelLoadError(f"{model_path}: onnxruntime cannot load it: {exc}") from exc
        problems = _check_contract(manifest)
        problems += _mismatches("input", manifest.inputs, [_spec_of(n) for n in session.get_inputs()])
        problems += _mismatches("output", manifest.outputs, [_spec_of(n) for n in session.get_outputs()])
        graph_version = session.get_modelmeta().custom_metadata_map.get(VERSION_METADATA_KEY)
        if graph_version != manifest.version:
            problems.append(f"graph version {graph_version!r} != manifest version {manifest.version!r}")
        if problems:
            raise ModelLoadError(f"{model_dir}: manifest and graph disagree: " + "; ".join(problems))
        return cls(manifest, session)

    @property
    def manifest(self) -> ModelManifest:
        return self._manifest

    @property
    def uses_context(self) -> bool:
        """True when the graph takes ``timestamps`` and ``now`` (a time-aware model)."""
        return self._uses_context

    def recommend(
        self,
        histories: Sequence[Sequence[str]],
        k: int,
        *,
        timestamps: Sequence[Sequence[int]] | None = None,
        now: int | None = None,
    ) -> list[list[Recommendation]]:
        """Top-k per history, best first. Only the last ``max_history`` known items are masked:
        callers that must never repeat older items (decide's consumed list) filter those themselves.

        ``timestamps`` (epoch seconds, aligned with ``histories``) and ``now`` are used only by a
        graph that declares them; without them such a graph sees every item as happening ``now``.
        """
        if not histories:
            return []
        if k <= 0:
            return [[] for _ in histories]
        feeds = self.feeds(histories, timestamps, now)
        top_ids, top_scores = self.run_feeds(feeds, min(k, self._manifest.vocab_size))
        return self.postprocess(top_ids, top_scores)

    def preprocess(self, histories: Sequence[Sequence[str]]) -> NDArray[np.int64]:
        """Ids -> indices (unknown ids dropped *before* taking the newest max_history), left-padded."""
        return self._windows(histories, None)[0]

    def _windows(
        self, histories: Sequence[Sequence[str]], timestamps: Sequence[Sequence[int]] | None
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        length = self._manifest.max_history
        batch = np.full((len(histories), length), PAD_INDEX, dtype=np.int64)
        times = np.zeros((len(histories), length), dtype=np.int64)
        if timestamps is not None and len(timestamps) != len(histories):
            raise ValueError("timestamps must align with histories")
        for row, history in enumerate(histories):
            stamps = timestamps[row] if timestamps is not None else None
            if stamps is not None and len(stamps) != len(history):
                raise ValueError(f"history {row}: {len(history)} items but {len(stamps)} timestamps")
            known = [(i, n) for n, i in enumerate(self._index.get(item) for item in history) if i is not None]
            window = known[-length:] if length else []
            if window:
                batch[row, length - len(window) :] = [i for i, _ in window]
                if stamps is not None:
                    times[row, length - len(window) :] = [stamps[n] for _, n in window]
        return batch, times

    def feeds(
        self,
        histories: Sequence[Sequence[str]],
        timestamps: Sequence[Sequence[int]] | None = None,
        now: int | None = None,
    ) -> dict[str, NDArray[np.int64]]:
        """The graph's inputs except ``k``: item window, and the time context when the graph takes it."""
        item_ids, times = self._windows(histories, timestamps if self._uses_context else None)
        feeds = {INPUT_ITEM_IDS: item_ids}
        if self._uses_context:
            request = int(time.time()) if now is None else int(now)
            if timestamps is None:
                times = np.where(item_ids != PAD_INDEX, request, 0)
            feeds[INPUT_TIMESTAMPS] = times
            feeds[INPUT_NOW] = np.full(len(histories), request, dtype=np.int64)
        return feeds

    def run(self, item_ids: NDArray[np.int64], k: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        feeds = {INPUT_ITEM_IDS: item_ids}
        if self._uses_context:
            # No times given: every known item "now", as recommend does without timestamps.
            request = int(time.time())
            feeds[INPUT_TIMESTAMPS] = np.where(item_ids != PAD_INDEX, request, 0)
            feeds[INPUT_NOW] = np.full(item_ids.shape[0], request, dtype=np.int64)
        return self.run_feeds(feeds, k)

    def run_feeds(self, feeds: dict[str, NDArray[np.int64]], k: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        top_ids, top_scores = self._session.run(
            [OUTPUT_TOP_IDS, OUTPUT_TOP_SCORES], {**feeds, INPUT_K: np.asarray([k], dtype=np.int64)}
        )
        return np.asarray(top_ids, dtype=np.int64), np.asarray(top_scores, dtype=np.float32)

    def postprocess(self, top_ids: NDArray[np.int64], top_scores: NDArray[np.float32]) -> list[list[Recommendation]]:
        """Indices -> ids, dropping masked entries (padding, history) that fill up a too-large k."""
        results: list[list[Recommendation]] = []
        for ids, scores in zip(top_ids, top_scores, strict=True):
            keep = (scores > _MASKED_BELOW) & (ids != PAD_INDEX)
            results.append(
                [
                    Recommendation(str(item), float(score))
                    for item, score in zip(self._vocab[ids[keep]], scores[keep], strict=True)
                ]
            )
        return results

    def score_matrix(
        self,
        histories: Sequence[Sequence[str]],
        timestamps: Sequence[Sequence[int]] | None = None,
        now: int | None = None,
    ) -> NDArray[np.float32]:
        """Full [batch, V] scores (masked entries at ``MASK_SCORE``), for scoring given candidates."""
        if not self._has_scores:
            raise ModelLoadError(f"model {self._manifest.version} has no {OUTPUT_SCORES} output")
        feeds = {**self.feeds(histories, timestamps, now), INPUT_K: np.asarray([1], dtype=np.int64)}
        (scores,) = self._session.run([OUTPUT_SCORES], feeds)
        return np.asarray(scores, dtype=np.float32)

    def score_items(self, history: Sequence[str], candidates: Sequence[str]) -> list[float | None]:
        """Score of each candidate for one user; None for unknown or masked candidates."""
        row = self.score_matrix([history])[0]
        out: list[float | None] = []
        for item in candidates:
            index = self._index.get(item)
            score = None if index is None else float(row[index])
            out.append(score if score is not None and score > _MASKED_BELOW else None)
        return out


def _parse_s3_uri(s3_uri: str) -> tuple[str, str]:
    if not s3_uri.startswith("s3://"):
        raise ModelLoadError(f"not an s3:// URI: {s3_uri!r}")
    bucket, _, prefix = s3_uri[len("s3://") :].partition("/")
    if not bucket:
        raise ModelLoadError(f"no bucket in {s3_uri!r}")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


# What S3 answers for a key that is not there: 404, or 403 to a role without s3:ListBucket (decide's).
_ABSENT_CODES = frozenset({"404", "NoSuchKey", "NotFound", "403", "AccessDenied", "Forbidden"})


def download_model(s3_uri: str, dest_dir: Path, s3_client: Any) -> Path:
    """Copy ``model.onnx``, ``manifest.json`` and, when there is one, ``calibration.json`` from
    ``s3://bucket/prefix/`` into ``dest_dir``.

    Each file lands under a temporary name and is renamed into place, so a crash mid-download
    never leaves a half-written file that ``from_dir`` would try to load. Returns ``dest_dir``.
    """
    bucket, prefix = _parse_s3_uri(s3_uri)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    # A calibration left from an earlier download must not pair with this model.
    (dest_dir / CALIBRATION_FILE).unlink(missing_ok=True)
    for name in (MODEL_FILE, MANIFEST_FILE, CALIBRATION_FILE):
        fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{name}.")
        os.close(fd)
        try:
            s3_client.download_file(bucket, prefix + name, tmp_name)
            os.replace(tmp_name, dest_dir / name)
        except Exception as exc:  # botocore's ClientError and friends; boto3 is not imported here
            Path(tmp_name).unlink(missing_ok=True)
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if name == CALIBRATION_FILE and code in _ABSENT_CODES:
                continue  # optional: a model may have no calibration yet (no engagement test then)
            raise ModelLoadError(f"cannot download s3://{bucket}/{prefix}{name}: {exc}") from exc
    return dest_dir


def manifest_json(manifest: ModelManifest) -> str:
    """The manifest as written next to the graph (stable key order, readable diffs)."""
    return json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n"
