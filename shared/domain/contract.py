"""The event contract: what producers may put on the stream, version 1.

Every event carries an ``event_id`` (deduplication), an aware ``timestamp`` and a ``schema_version``.
User events (behaviour, profile, feedback) carry a ``user_id`` (also the Kinesis partition key, so one
user's events stay ordered); a ``catalog`` event (an item upserted or retired, issue 12) carries no user:
its partition key is its ``item_id``, so one item's announcements stay ordered. ``decode_event`` is the
single gate every consumer uses, so ingest, features, feedback and catalog always agree on which records
are valid. It is total: whatever bytes a producer sends, it
returns an event or raises ContractViolation with a reason, and an event it returns can be
stored as it is (every string, number and boolean fits DynamoDB, S3 JSON Lines and the model).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1
MAX_EVENT_BYTES = 10 * 1024
# A catalog event may carry an image embedding (512 floats of a CLIP-like model are 5 to 10 KB of JSON),
# so it alone may be larger; anything else over MAX_EVENT_BYTES stays too large. Kinesis takes 1 MB.
MAX_CATALOG_EVENT_BYTES = 64 * 1024
# The dimension of a catalog event's image_embedding when none is configured (template parameter
# ImageEmbeddingDim, IMAGE_EMBEDDING_DIM in every function's environment): CLIP ViT-B/32's.
DEFAULT_IMAGE_EMBEDDING_DIM = 512
MAX_IMAGE_EMBEDDING_DIM = 2048
MAX_TITLE_CHARS = 256
MAX_DESCRIPTION_CHARS = 4000
MAX_CATEGORIES = 32
MAX_CATEGORY_CHARS = 64
# Producers' clocks drift; an event more than this ahead of its arrival is a bug upstream.
MAX_FUTURE_SKEW = timedelta(minutes=5)
# Older events would rewrite history that decisions were already made on.
MAX_EVENT_AGE = timedelta(days=7)

# DynamoDB numbers: at most 38 significant digits, magnitudes from 1e-130 up to (not including) 1e126.
# Integers are stored exactly, so they keep to 38 digits; floats reach storage as their shortest repr.
MAX_INT_DIGITS = 38
MIN_MAGNITUDE = 1e-130
MAX_MAGNITUDE = 1e126
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_CHARS = 256
# A lone surrogate cannot be encoded as UTF-8 (DynamoDB and boto3 refuse it); NUL ends C strings in
# the tools operators use on the archive. Neither has a place in an event.
_BAD_CHARACTERS = re.compile("[\ud800-\udfff\x00]")
# RFC 3339, the profile of ISO 8601 the contract names: date, "T", time with seconds, a zone.
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]*$")]


def _iso_8601_text(value: Any) -> Any:
    # Lax datetime parsing would take epoch numbers and a dozen other shapes; the contract says text.
    # (A datetime object only reaches here from Python code building events: JSON has none.)
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        raise ValueError("timestamp must be ISO 8601 text with seconds and a zone, e.g. 2026-11-27T12:00:00Z")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_8601_text)]
AttributeValue = (
    Annotated[StrictStr, StringConstraints(max_length=MAX_ATTRIBUTE_CHARS)] | StrictBool | StrictInt | StrictFloat
)

BEHAVIOUR_TYPES = ("view", "click", "add_to_cart", "purchase", "rate")
PROFILE_TYPES = ("profile",)
FEEDBACK_TYPES = ("delivered", "opened", "dismissed", "converted")
CATALOG_TYPES = ("catalog",)


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
    DUPLICATE_KEY = "duplicate_key"
    BAD_STRING = "bad_string"
    NUMBER_OUT_OF_RANGE = "number_out_of_range"
    # The same event id again: with the same body (a producer retry), or with another body (first wins).
    DUPLICATE = "duplicate_event_id"
    EVENT_ID_CONFLICT = "event_id_conflict"
    # A catalog event's image_embedding whose length is not the deployment's IMAGE_EMBEDDING_DIM.
    EMBEDDING_DIMENSION = "embedding_dimension"


class ContractViolation(Exception):
    """A record that does not satisfy the contract; it is quarantined, never retried."""

    def __init__(self, reason: QuarantineReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class _Stamped(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    event_id: Identifier
    timestamp: Timestamp

    @property
    def epoch_seconds(self) -> int:
        return int(self.timestamp.timestamp())


class _Event(_Stamped):
    """An event about one user."""

    user_id: Identifier

    @property
    def partition_key(self) -> str:
        """What the contract asks producers to use as the Kinesis partition key."""
        return self.user_id


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


# The push services a device token can belong to (shared/domain/delivery.py builds each one's payload).
Platform = Literal["APNS", "APNS_SANDBOX", "FCM"]


class ProfileEvent(_Event):
    """A change to what the user told us: consent, time zone, push token, demographics."""

    type: Literal["profile"]
    # Strict: "yes", 1 or "true" are not consent; only a JSON boolean is.
    consent: StrictBool | None = None
    timezone: StrictStr | None = Field(default=None, max_length=64)
    push_token: StrictStr | None = Field(default=None, min_length=1, max_length=512)
    # Which platform the token is for (shared/domain/delivery.py); needed to reach it in endpoint mode.
    platform: Platform | None = None
    # Booleans stay booleans (lax mode stored true as the number 1); numbers are range-checked at parse.
    attributes: dict[Identifier, AttributeValue] = Field(default_factory=dict, max_length=MAX_ATTRIBUTES)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        # OSError: a tzdata directory ("America", "Etc") is a path that opens as a directory.
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError("unknown time zone") from exc
        return value


class FeedbackEvent(_Event):
    """What the user did with a push; ``decision_id`` joins it to the ledger."""

    type: Literal["delivered", "opened", "dismissed", "converted"]
    decision_id: Identifier
    item_id: Identifier | None = None


Category = Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_CATEGORY_CHARS)]
EmbeddingValue = Annotated[float, Strict()]


class CatalogEvent(_Stamped):
    """An item announced by the product: upserted (created or changed) or retired (issue 12).

    No user: the partition key is the item id. ``title`` is required for an upsert (it is what the
    encoder reads, with the description); a retire needs only the item id. ``image_embedding`` is a
    vector from the producer's own image model; its length must be the deployment's IMAGE_EMBEDDING_DIM
    (checked by ``decode_event``, reason ``embedding_dimension``), since the model projecting it expects
    exactly that many inputs. The event's timestamp is the item's version: the catalog function never
    lets an older announcement overwrite a newer one (shared/services/catalog.py).
    """

    type: Literal["catalog"]
    action: Literal["upsert", "retire"]
    item_id: Identifier
    # validate_default: a missing title still reaches the validator, which knows the action by then.
    title: Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_TITLE_CHARS)] | None = Field(
        default=None, validate_default=True
    )
    description: Annotated[StrictStr, StringConstraints(max_length=MAX_DESCRIPTION_CHARS)] = ""
    categories: list[Category] = Field(default_factory=list, max_length=MAX_CATEGORIES)
    attributes: dict[Identifier, Annotated[StrictStr, StringConstraints(max_length=MAX_ATTRIBUTE_CHARS)]] = Field(
        default_factory=dict, max_length=MAX_ATTRIBUTES
    )
    available_from: Timestamp | None = None
    available_until: Timestamp | None = None
    image_embedding: list[EmbeddingValue] | None = Field(default=None, min_length=1, max_length=MAX_IMAGE_EMBEDDING_DIM)

    @field_validator("title")
    @classmethod
    def _upsert_has_title(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("action") == "upsert":
            raise ValueError("an upsert needs a title")
        return value

    @model_validator(mode="after")
    def _window_is_ordered(self) -> CatalogEvent:
        if self.available_from and self.available_until and self.available_until <= self.available_from:
            raise ValueError("available_until must be after available_from")
        return self

    @property
    def partition_key(self) -> str:
        return self.item_id

    @property
    def text(self) -> str:
        """What the sentence encoder reads: the title, then the description (as in docs/model.md's timing)."""
        title = self.title or ""
        return f"{title}. {self.description}" if self.description else title


UserEvent = BehaviourEvent | ProfileEvent | FeedbackEvent
AnyEvent = BehaviourEvent | ProfileEvent | FeedbackEvent | CatalogEvent
Event = Annotated[AnyEvent, Field(discriminator="type")]
_EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(Event)
_KNOWN_TYPES = frozenset(BEHAVIOUR_TYPES + PROFILE_TYPES + FEEDBACK_TYPES + CATALOG_TYPES)


class _Refused(Exception):
    """Raised from inside the JSON parser's hooks; not a ValueError, so it is not read as bad JSON."""

    def __init__(self, reason: QuarantineReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def _checked_string(value: str) -> str:
    if _BAD_CHARACTERS.search(value):
        raise _Refused(QuarantineReason.BAD_STRING, "lone surrogate or NUL")
    return value


def _checked_value(value: Any) -> Any:
    if isinstance(value, str):
        _checked_string(value)
    elif isinstance(value, list):
        for element in value:
            _checked_value(element)
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Python keeps the last of two equal keys, other parsers the first: refuse rather than guess.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(QuarantineReason.DUPLICATE_KEY, repr(_checked_string(key))[:40])
        out[_checked_string(key)] = _checked_value(value)
    return out


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(QuarantineReason.NUMBER_OUT_OF_RANGE, f"integer of {len(text.lstrip('-'))} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    magnitude = abs(value)
    underflow = magnitude == 0.0 and any(c in "123456789" for c in text.lower().split("e")[0])
    if not math.isfinite(value) or underflow or (magnitude and not MIN_MAGNITUDE <= magnitude < MAX_MAGNITUDE):
        raise _Refused(QuarantineReason.NUMBER_OUT_OF_RANGE, text[:40])
    return value


def parse_json_strictly(text: str) -> Any:
    """json.loads, refusing what a store would refuse later: duplicate keys, lone surrogates and NULs,
    NaN/Infinity, and numbers outside DynamoDB's range and precision (raises ContractViolation)."""
    try:
        # Objects check their own keys and values; a bare string or array at the top is checked here.
        return _checked_value(
            json.loads(
                text, parse_constant=_reject_constant, object_pairs_hook=_object, parse_int=_int, parse_float=_float
            )
        )
    except _Refused as refused:
        raise ContractViolation(refused.reason, refused.detail) from None
    except (ValueError, RecursionError) as exc:
        raise ContractViolation(QuarantineReason.NOT_JSON, type(exc).__name__) from exc


def _too_large(raw: bytes, limit: int) -> ContractViolation:
    return ContractViolation(QuarantineReason.TOO_LARGE, f"{len(raw)} bytes > {limit}")


def _parse(raw: bytes) -> Any:
    """The record's JSON; a record over MAX_EVENT_BYTES is parsed only to see whether it is a catalog
    event (the one type allowed up to MAX_CATALOG_EVENT_BYTES): any other verdict on it is too_large."""
    if len(raw) > MAX_CATALOG_EVENT_BYTES:
        raise _too_large(raw, MAX_EVENT_BYTES)
    oversized = len(raw) > MAX_EVENT_BYTES
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if oversized:
            raise _too_large(raw, MAX_EVENT_BYTES) from None
        raise ContractViolation(QuarantineReason.BAD_ENCODING, "not UTF-8") from exc
    try:
        payload = parse_json_strictly(text)
    except ContractViolation:
        if oversized:
            raise _too_large(raw, MAX_EVENT_BYTES) from None
        raise
    if oversized and not (isinstance(payload, dict) and payload.get("type") in CATALOG_TYPES):
        raise _too_large(raw, MAX_EVENT_BYTES)
    return payload


def decode_event(raw: bytes, received_at: datetime, image_embedding_dim: int = DEFAULT_IMAGE_EMBEDDING_DIM) -> AnyEvent:
    """Turn one record's bytes into a valid event, or raise ContractViolation with the reason.

    ``received_at`` is when the stream accepted the record; timestamps are judged against it,
    never against the consumer's clock, so a retried or replayed batch gets the same verdict.
    ``image_embedding_dim`` is the deployment's IMAGE_EMBEDDING_DIM: every consumer passes the same one
    (shared/plumbing/config.py, ContractSettings), so they agree on which catalog events are valid.
    """
    payload = _parse(raw)
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
    except Exception as exc:  # a validator met input nobody foresaw: still a verdict, never a crash
        raise ContractViolation(QuarantineReason.INVALID_FIELDS, f"unexpected {type(exc).__name__}") from exc
    if event.timestamp > received_at + MAX_FUTURE_SKEW:
        raise ContractViolation(QuarantineReason.TIMESTAMP_IN_FUTURE, event.timestamp.isoformat())
    if event.timestamp < received_at - MAX_EVENT_AGE:
        raise ContractViolation(QuarantineReason.TIMESTAMP_TOO_OLD, event.timestamp.isoformat())
    embedding = event.image_embedding if isinstance(event, CatalogEvent) else None
    if embedding is not None and len(embedding) != image_embedding_dim:
        raise ContractViolation(
            QuarantineReason.EMBEDDING_DIMENSION,
            f"image_embedding has {len(embedding)} values, this deployment takes {image_embedding_dim}",
        )
    return event


def encode_event(event: AnyEvent) -> bytes:
    """The canonical wire form producers (and the demo) put on the stream."""
    return event.model_dump_json(exclude_none=True).encode("utf-8")


def event_digest(event: AnyEvent) -> str:
    """A fingerprint of the event's content (canonical form): two records with one event id are the
    same event when their digests agree, whatever their key order or spacing."""
    return hashlib.blake2b(encode_event(event), digest_size=16).hexdigest()
