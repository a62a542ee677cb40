"""The model registry as decide and the operator see it: version ids, the serving pointer, the hot swap.

A registry version is a folder ``<prefix><version id>/`` holding ``model.onnx``, ``manifest.json``,
``calibration.json`` and ``evaluation.json``. Its id is ``<manifest version>.<digest>``: the manifest
version names the graph (it is also stamped into the ONNX metadata and is what a calibration is fitted
for), the digest covers every file decide serves, so a recalibrated copy of the same graph is another
version, and a folder whose files were changed after publishing no longer matches its id.

The pointer (one per stage) says what decide serves: ``champion``, an optional ``challenger`` with the
share of users it serves, and the champions it replaced (newest first), which is what rollback walks back.

Standard library and pydantic only: the S3 and SSM adapters live in shared/adapters/model_registry.py.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.domain.engagement import CALIBRATION_FILE
from shared.domain.errors import NudgeError
from shared.domain.recommendation import ServedModel

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
EVALUATION_FILE = "evaluation.json"
# What decide downloads and the version id covers; the evaluation report is for people (and `compare`),
# so re-running an evaluation does not make a new version of the same model.
SERVED_FILES = (MANIFEST_FILE, MODEL_FILE, CALIBRATION_FILE)
DIGEST_CHARS = 12
# Rollback can walk back this many champions; older ones stay in the registry (and in SSM's history).
PREVIOUS_KEPT = 20

logger = logging.getLogger(__name__)


class ModelRegistryError(NudgeError):
    """A registry version or the pointer is missing, malformed, or refused (e.g. a calibration mismatch)."""


def file_digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def version_id_for(graph_version: str, digests: Mapping[str, str]) -> str:
    """``<graph version>.<digest of the served files>``; ``digests`` maps each of SERVED_FILES to its sha256."""
    missing = [name for name in SERVED_FILES if name not in digests]
    if missing:
        raise ModelRegistryError(f"a registry version needs {', '.join(missing)}")
    combined = hashlib.sha256("".join(f"{name}\x1f{digests[name]}\n" for name in SERVED_FILES).encode())
    return f"{graph_version}.{combined.hexdigest()[:DIGEST_CHARS]}"


def graph_version_of(version: str) -> str:
    """The graph (manifest) version a served version was built on: itself for a bare manifest version
    (the model layer's default), the part before the digest for a registry version."""
    head, dot, digest = version.rpartition(".")
    if dot and len(digest) == DIGEST_CHARS and all(c in "0123456789abcdef" for c in digest):
        return head
    return version


class ModelPointer(BaseModel):
    """What decide serves for one stage."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    champion: str = Field(min_length=1)
    challenger: str | None = None
    challenger_share: float = Field(default=0.0, ge=0.0, le=1.0)
    # Champions this one replaced, newest first: rollback's stack.
    previous: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _share_needs_a_challenger(self) -> ModelPointer:
        if self.challenger is None and self.challenger_share > 0:
            raise ValueError("challenger_share > 0 needs a challenger")
        return self

    def promoted(self, version: str) -> ModelPointer:
        """``version`` becomes champion; the old champion goes on the rollback stack. A challenger that is
        promoted stops being the challenger."""
        if version == self.champion:
            return self
        challenger = None if self.challenger == version else self.challenger
        return ModelPointer(
            champion=version,
            challenger=challenger,
            challenger_share=self.challenger_share if challenger else 0.0,
            previous=[self.champion, *self.previous][:PREVIOUS_KEPT],
        )

    def rolled_back(self) -> ModelPointer:
        """The champion before this one serves again; the challenger is dropped (it was measured against
        the champion being rolled back)."""
        if not self.previous:
            raise ModelRegistryError(f"nothing to roll back to: {self.champion} has no predecessor")
        return ModelPointer(champion=self.previous[0], previous=self.previous[1:])

    def with_challenger(self, version: str | None, share: float) -> ModelPointer:
        return self.model_copy(update={"challenger": version, "challenger_share": share if version else 0.0})

    @classmethod
    def first(cls, version: str) -> ModelPointer:
        return cls(champion=version)


def challenger_draw(user_id: str) -> float:
    """A uniform number in [0, 1) fixed by the user id: the user is in the challenger's share when it is
    below ``challenger_share``. Not salted with a version, so raising the share only adds users, and a
    user never flips between two models from one decision to the next."""
    digest = hashlib.sha256(f"challenger\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8]) / 2**64


class ModelSource:
    """Decide's view of what it serves: one consistent (model, calibration, version) per decision."""

    def current(self) -> ServedModel:
        """The champion."""
        raise NotImplementedError

    def for_user(self, user_id: str) -> ServedModel:
        """What serves this user: the champion, unless a challenger has the user's share."""
        return self.current()


@dataclass(frozen=True)
class FixedModel(ModelSource):
    """One model for the container's life (the model layer or ModelS3Uri, with no pointer configured)."""

    served: ServedModel

    def current(self) -> ServedModel:
        return self.served


@dataclass(frozen=True)
class Serving:
    """Everything a container serves at one moment, swapped as one reference."""

    champion: ServedModel
    challenger: ServedModel | None = None
    challenger_share: float = 0.0

    def for_user(self, user_id: str) -> ServedModel:
        if self.challenger is not None and challenger_draw(user_id) < self.challenger_share:
            return self.challenger
        return self.champion


class HotSwap(ModelSource):
    """Serves the pointer's champion (and challenger), re-reading the pointer at most every ``ttl_seconds``.

    A changed version is loaded beside the ones in use, then swapped in by replacing one reference, so
    a decision that already took its model finishes on it, and no caller ever waits for a load except
    the one that noticed the change. Nothing here ever raises: a pointer that cannot be read, or a
    version that cannot be loaded (missing, corrupt, calibration for another graph), is logged as an
    error and what is in use goes on serving until the next check (a refused challenger: the champion
    serves everyone).
    """

    def __init__(
        self,
        default: ServedModel,
        read_pointer: Callable[[], ModelPointer | None],
        load: Callable[[str], ServedModel],
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        on_swap: Callable[[str, str], None] | None = None,
        on_refused: Callable[[str, Exception], None] | None = None,
    ) -> None:
        self._default = default
        self._read_pointer = read_pointer
        self._load = load
        self._ttl = ttl_seconds
        self._clock = clock
        self._on_swap = on_swap
        self._on_refused = on_refused
        self._serving = Serving(default)
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._first_check_done = False
        self._pointer: ModelPointer | None = None

    @property
    def pointer(self) -> ModelPointer | None:
        """The pointer as last read (None before the first read, or when no pointer exists)."""
        return self._pointer

    def current(self) -> ServedModel:
        return self.serving().champion

    def for_user(self, user_id: str) -> ServedModel:
        return self.serving().for_user(user_id)

    def serving(self) -> Serving:
        # One check at a time, and once the first is done nobody waits for one: while a caller re-reads
        # the pointer (and maybe loads a version), the others go on with the models in use. Checks never
        # overlap, so a slow load cannot land after a newer pointer's. Before the first check everyone
        # waits for it: the bootstrap default must not serve while the pointer's champion is loading.
        if self._lock.acquire(blocking=not self._first_check_done):
            try:
                if self._due():
                    self._check()
                self._first_check_done = True
            finally:
                self._lock.release()
        return self._serving

    def _due(self) -> bool:
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self._ttl:
            return False
        self._checked_at = now
        return True

    def _check(self) -> None:
        try:
            pointer = self._read_pointer()
        except Exception as exc:
            self._refused("pointer", exc)
            return
        self._pointer = pointer
        before = self._serving
        # No pointer yet (a fresh stack): the bootstrap default serves.
        champion = self._obtain(pointer.champion if pointer is not None else self._default.version)
        if champion is None:
            return  # refused: everything in use goes on serving
        challenger = None
        if pointer is not None and pointer.challenger is not None and pointer.challenger_share > 0:
            challenger = self._obtain(pointer.challenger)
        share = pointer.challenger_share if challenger is not None and pointer is not None else 0.0
        after = Serving(champion, challenger, share)
        if after == before:
            return
        self._serving = after  # the switch: one reference, atomic under the GIL
        logger.warning("models swapped: %s -> %s", _label(before), _label(after))
        if self._on_swap is not None:
            self._on_swap(_label(before), _label(after))

    def _obtain(self, version: str) -> ServedModel | None:
        """A version already in use, the default, or freshly loaded; None (logged) when it cannot be."""
        for served in (self._serving.champion, self._serving.challenger, self._default):
            if served is not None and served.version == version:
                return served
        try:
            loaded = self._load(version)
        except Exception as exc:
            self._refused(version, exc)
            return None
        if loaded.version != version:  # a loader bug must not mislabel the ledger
            self._refused(version, ModelRegistryError(f"loaded {loaded.version}, wanted {version}"))
            return None
        return loaded

    def _refused(self, what: str, exc: Exception) -> None:
        logger.error("model %s refused, still serving %s: %s", what, _label(self._serving), exc)
        if self._on_refused is not None:
            self._on_refused(what, exc)


def _label(serving: Serving) -> str:
    if serving.challenger is None:
        return serving.champion.version
    return f"{serving.champion.version} + {serving.challenger.version} ({serving.challenger_share:.0%})"
