"""The event contract: what producers may put on the stream, version 1.

Every event carries an ``event_id`` (deduplication), a ``user_id`` (also the Kinesis
partition key, so one user's events stay ordered), an aware ``timestamp`` and a
``schema_version``. ``decode_event`` is the single gate every consumer uses, so ingest
and features always agree on which records are valid.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1
MAX_EVENT_BYTES = 10 * 1024
# Producers' clocks drift; an event more than this ahead of its arrival is a bug upstream.
MAX_FUTURE_SKEW = timedelta(minutes=5)
# Older events would rewrite history that decisions were already made on.
MAX_EVENT_AGE = timedelta(days=7)

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]*$")]

BEHAVIOUR_TYPES = ("view", "click", "add_to_cart", "purchase", "rate")
PROFILE_TYPES = ("profile",)
FEEDBACK_TYPES = ("delivered", "opened", "dismissed", "converted")


class QuarantineReason(StrEnum):
    """Why a record was refused; stable codes that dashboards and tests rely on."""

    BAD_ENCODING = "bad_encoding"
    NOT_JSON = "not_json"
    TOO_LARGE = "too_large"
    NOT_AN_OBJECT = "not_an_object"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    INVALID_FIELDS = "invalid_fields"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    DUPLICATE = "duplicate_event_id"


class ContractViolation(Exception):
    """A record that does not satisfy the contract; it is quarantined, never retried."""

    def __init__(self, reason: QuarantineReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    event_id: Identifier
    user_id: Identifier
    timestamp: AwareDatetime

    @property
    def epoch_seconds(self) -> int:
        return int(self.timestamp.timestamp())


class BehaviourEvent(_Event):
    type: Literal["view", "click", "add_to_cart", "purchase", "rate"]
    item_id: Identifier
    # Strict: JSON true or "4" is not a rating (lax mode would read them as 1.0 and 4.0).
    value: Annotated[float, Strict()] | None = Field(default=None, description="The rating for type=rate (0.5 to 5)")

    @model_validator(mode="after")
    def _rating_has_value(self) -> BehaviourEvent:
        if self.type == "rate":
            if self.value is None or not (0.5 <= self.value <= 5.0):
                raise ValueError("rate events need a value between 0.5 and 5")
        elif self.value is not None and not math.isfinite(self.value):
            raise ValueError("value must be finite")
        return self


class ProfileEvent(_Event):
    """A change to what the user told us: consent, time zone, push token, demographics."""

    type: Literal["profile"]
    consent: bool | None = None
    timezone: str | None = Field(default=None, max_length=64)
    push_token: str | None = Field(default=None, min_length=1, max_length=512)
    attributes: dict[Identifier, str | int] = Field(default_factory=dict, max_length=32)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class FeedbackEvent(_Event):
    """What the user did with a push; ``decision_id`` joins it to the ledger."""

    type: Literal["delivered", "opened", "dismissed", "converted"]
    decision_id: Identifier
    item_id: Identifier | None = None


Event = Annotated[BehaviourEvent | ProfileEvent | FeedbackEvent, Field(discriminator="type")]
_EVENT_ADAPTER: TypeAdapter[BehaviourEvent | ProfileEvent | FeedbackEvent] = TypeAdapter(Event)
_KNOWN_TYPES = frozenset(BEHAVIOUR_TYPES + PROFILE_TYPES + FEEDBACK_TYPES)


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def decode_event(raw: bytes, received_at: datetime) -> BehaviourEvent | ProfileEvent | FeedbackEvent:
    """Turn one record's bytes into a valid event, or raise ContractViolation with the reason.

    ``received_at`` is when the stream accepted the record; timestamps are judged against it,
    never against the consumer's clock, so a retried or replayed batch gets the same verdict.
    """
    if len(raw) > MAX_EVENT_BYTES:
        raise ContractViolation(QuarantineReason.TOO_LARGE, f"{len(raw)} bytes > {MAX_EVENT_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractViolation(QuarantineReason.BAD_ENCODING, "not UTF-8") from exc
    try:
        payload = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ContractViolation(QuarantineReason.NOT_JSON, type(exc).__name__) from exc
    if not isinstance(payload, dict):
        raise ContractViolation(QuarantineReason.NOT_AN_OBJECT, type(payload).__name__)
    version = payload.get("schema_version")
    # type() equality, not ==: True and 1.0 also compare equal to 1.
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ContractViolation(QuarantineReason.UNSUPPORTED_SCHEMA_VERSION, repr(version)[:40])
    event_type = payload.get("type")
    # Checked as a string first: a list or object here is unhashable, and must be refused, not raise.
    if not isinstance(event_type, str) or event_type not in _KNOWN_TYPES:
        raise ContractViolation(QuarantineReason.UNKNOWN_EVENT_TYPE, repr(event_type)[:40])
    try:
        event = _EVENT_ADAPTER.validate_python(payload)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"][1:]) or "event" for err in exc.errors()})
        raise ContractViolation(QuarantineReason.INVALID_FIELDS, ",".join(fields)[:200]) from exc
    if event.timestamp > received_at + MAX_FUTURE_SKEW:
        raise ContractViolation(QuarantineReason.TIMESTAMP_IN_FUTURE, event.timestamp.isoformat())
    if event.timestamp < received_at - MAX_EVENT_AGE:
        raise ContractViolation(QuarantineReason.TIMESTAMP_TOO_OLD, event.timestamp.isoformat())
    return event


def encode_event(event: BehaviourEvent | ProfileEvent | FeedbackEvent) -> bytes:
    """The canonical wire form producers (and the demo) put on the stream."""
    return event.model_dump_json(exclude_none=True).encode("utf-8")


AnyEvent = BehaviourEvent | ProfileEvent | FeedbackEvent
