"""What decide asks of a recommender, whatever runs it: ranked candidates for a user's history.

The ONNX implementation lives in shared/model.py (an adapter: it loads onnxruntime); the policy and
the services know only these types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    from shared.domain.engagement import Calibration


class Recommendation(NamedTuple):
    item_id: str
    score: float


class ModelIdentity(Protocol):
    """What a decision records about the model that made it."""

    @property
    def version(self) -> str: ...


@runtime_checkable
class Recommender(Protocol):
    @property
    def manifest(self) -> ModelIdentity: ...

    def recommend(self, histories: Sequence[Sequence[str]], k: int) -> list[list[Recommendation]]: ...


@dataclass(frozen=True)
class ServedModel:
    """What one decision is made with: a model, the calibration fitted for it, and the version the ledger
    records. Taken as one value so a hot swap can never pair one version's scores with another's calibration."""

    recommender: Recommender
    calibration: Calibration | None
    version: str


@runtime_checkable
class ContextRecommender(Recommender, Protocol):
    """A recommender that can also take each history item's time and the request time."""

    @property
    def uses_context(self) -> bool: ...

    def recommend(
        self,
        histories: Sequence[Sequence[str]],
        k: int,
        *,
        timestamps: Sequence[Sequence[int]] | None = None,
        now: int | None = None,
    ) -> list[list[Recommendation]]: ...


def recommend_in_context(
    recommender: Recommender,
    histories: Sequence[Sequence[str]],
    k: int,
    timestamps: Sequence[Sequence[int]],
    now: int,
) -> list[list[Recommendation]]:
    """Pass the time context to recommenders that take it; plain ``Recommender`` s get the histories only."""
    if isinstance(recommender, ContextRecommender) and recommender.uses_context:
        return recommender.recommend(histories, k, timestamps=timestamps, now=now)
    return recommender.recommend(histories, k)
