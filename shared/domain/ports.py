"""The ports: what each service needs from storage and delivery, as Protocols.

The DynamoDB, S3 and SNS adapters in shared/adapters implement them; the fakes in testkit/fakes.py
implement them in memory and are type-checked against them. Each service asks for the narrowest
port it uses (features never schedules a deferral, decide never saves a fold), so a fake only has
to do what its service does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    # Annotations only: a function that imports a port (ingest's LineWriter) does not load every model.
    from shared.domain.caps import Counter
    from shared.domain.catalog import CatalogItem
    from shared.domain.decision import Decision, Reason
    from shared.domain.delivery import DeliveryResult, Push
    from shared.domain.errors import PoisonRecord
    from shared.domain.user_state import UserState

# Hands a push to its platform once per decision id, however often it is called (the composition root
# wraps a Deliverer in Powertools idempotency keyed by decision id).
SendOnce = Callable[["Push"], "DeliveryResult"]


class Deliverer(Protocol):
    def deliver(self, push: Push) -> DeliveryResult:
        """Hand the push over; the result names the endpoint when delivery had to register or re-point one."""
        ...


class UserStateReader(Protocol):
    def get(self, user_id: str) -> UserState | None:
        """Strongly consistent; None for a user never seen. Raises PoisonRecord for an unreadable item."""
        ...


class FoldedStates(UserStateReader, Protocol):
    """What features needs: read a batch of users, write each back if nobody wrote meanwhile."""

    def get_many(
        self, user_ids: Iterable[str], profiles_of: Iterable[str] | None = None
    ) -> Mapping[str, UserState | PoisonRecord]:
        """The users' states; of users not in ``profiles_of`` (None: all users) only the often-changing
        part is read, which is all a fold of behaviour events needs (``save`` completes it if needed)."""
        ...

    def save(self, state: UserState, expected_version: int, *, profile_changed: bool) -> None:
        """Raises VersionConflict when the stored version is not ``expected_version`` (or the rarely
        changing part, written too when ``profile_changed``, is not at ``state.profile_version``)."""
        ...


class DecidingStates(UserStateReader, Protocol):
    """What decide needs: deferrals on the due index, and delivery's records of the user's device."""

    def with_profile(self, state: UserState) -> UserState:
        """A state read from a change record (which carries only the often-changing part) made whole."""
        ...

    def record_endpoint(self, user_id: str, token: str, endpoint: str, writer: str) -> None:
        """Remember the endpoint a push to ``token`` went through (if the user still has that token)."""
        ...

    def disable_token(self, user_id: str, token: str, writer: str) -> None:
        """Mark ``token`` unusable (if the user still has it): no push goes to it until a new one."""
        ...

    def schedule(self, user_id: str, expected_version: int, due_at: int, due_shard: str, writer: str) -> None: ...

    def clear_due(self, user_id: str, due_at: int, writer: str) -> None: ...

    def due_users(self, due_shard: str, now: int, limit: int = 500) -> list[tuple[str, int]]: ...


class FeedbackStates(UserStateReader, Protocol):
    def get_profile(self, user_id: str) -> UserState | None:
        """What counting an outcome needs (the rarely changing part and its version); None for a user never seen."""
        ...

    def record_feedback(self, state: UserState, seen_key: str, outcome: str, at: int, writer: str) -> None: ...


class ErasableStates(UserStateReader, Protocol):
    def delete(self, user_id: str) -> bool: ...


class DeviceEndpoints(Protocol):
    """The SNS endpoints delivery registered for devices (endpoint mode)."""

    def forget(self, endpoint: str) -> bool: ...


class CatalogReader(Protocol):
    def get_many(self, item_ids: Iterable[str]) -> Mapping[str, CatalogItem]: ...


class DecisionLedger(Protocol):
    """The decisions decide records once, and reads back for caps and repeats."""

    def record(self, decision: Decision, expires_at: int, outbox_shard: str | None = None) -> tuple[Decision, bool]:
        """Create-once; a push (``outbox_shard``) stays on the outbox until sent or settled."""
        ...

    def downgrade(self, decision: Decision, reason: Reason) -> Decision: ...

    def mark_sent(self, user_id: str, decision_id: str, message_id: str, sent_at: int) -> None: ...

    def pushes_since(self, user_id: str, since: int) -> list[dict[str, Any]]: ...

    def mark_undeliverable(self, user_id: str, decision_id: str, reason: str, at: int) -> None: ...

    def unsent_pushes(self, outbox_shard: str, decided_before: int, limit: int = 500) -> list[tuple[str, str]]:
        """(user_id, decision_id) of pushes recorded but neither sent nor settled, decided before a time."""
        ...

    def get(self, user_id: str, decision_id: str) -> dict[str, Any] | None: ...


class OutcomeLedger(Protocol):
    def record_outcome(self, user_id: str, decision_id: str, outcome: str, at: int) -> dict[str, Any] | None: ...


class ErasableLedger(Protocol):
    def decision_ids_of(self, user_id: str) -> list[str]: ...

    def forget(self, user_id: str, decision_ids: list[str]) -> int: ...


class CapCounters(Protocol):
    def reserve(self, decision_id: str, counters: list[Counter]) -> None:
        """Take a slot in every counter or none; raises CapReached naming the full one."""
        ...


class ErasableCounters(Protocol):
    def forget_owner(self, owner: str) -> bool: ...


class SendRecords(Protocol):
    def forget_sends(self, decision_ids: Iterable[str]) -> int: ...


class LineWriter(Protocol):
    """JSON Lines objects (archive, quarantine, feedback log), one object per key."""

    def put_lines(self, key: str, records: Iterable[Mapping[str, Any]]) -> str | None: ...


@dataclass(frozen=True)
class ObjectVersion:
    key: str
    version_id: str
    latest: bool


class LineStore(LineWriter, Protocol):
    """A versioned line store erasure can search and rewrite."""

    def versions(self, prefix: str) -> list[ObjectVersion]: ...

    def read_version(self, key: str, version_id: str) -> list[dict[str, Any]]: ...

    def delete_version(self, key: str, version_id: str) -> None: ...
