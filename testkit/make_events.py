"""Writes the sample Lambda events in events/ (run: python -m testkit.make_events).

The shapes are those `sam local generate-event kinesis get-records` and
`sam local generate-event dynamodb update` give; payloads follow shared/domain/contract.py.
The same files feed `sam local invoke -e` and the tests.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parents[1] / "events"
REGION = "us-east-1"
ACCOUNT = "123456789012"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/nudge-events"
TABLE_STREAM_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/nudge-user-state/stream/2026-11-27T00:00:00.000"
# Every sample arrives at 2026-11-27T12:00:00Z; event times are set relative to it.
ARRIVAL = 1795780800.0
SHARD = "shardId-000000000000"


def user_state_image() -> dict[str, Any]:
    """The NewImage of a write features makes: the hot item, asking for a decision."""
    from boto3.dynamodb.types import TypeSerializer

    from shared.adapters.user_state_codec import encode_hot
    from shared.domain.user_state import RecentItem, UserState

    state = UserState(
        user_id="u-196",
        version=3,
        last_writer="features",
        last_seen=int(ARRIVAL) - 120,
        recent_items=[
            RecentItem(item_id="1", ts=int(ARRIVAL) - 300, type="rate"),
            RecentItem(item_id="2", ts=int(ARRIVAL) - 120, type="rate"),
        ],
        consumed=["1", "2"],
        counters={"rate": 2, "profile": 1},
        asks_decision=True,
        decision_asked_at=int(ARRIVAL) - 300,
    )
    serializer = TypeSerializer()
    return {k: serializer.serialize(v) for k, v in encode_hot(state).items()}


def _iso(offset_seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ARRIVAL + offset_seconds, UTC).isoformat().replace("+00:00", "Z")


def kinesis_record(data: bytes | str, seq: int, partition_key: str = "u-196") -> dict[str, Any]:
    encoded = data if isinstance(data, str) else base64.b64encode(data).decode()
    sequence = f"4959{seq:052d}"
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence,
            "data": encoded,
            "approximateArrivalTimestamp": ARRIVAL,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{SHARD}:{sequence}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/nudge-ingest-role",
        "awsRegion": REGION,
        "eventSourceARN": STREAM_ARN,
    }


def payload(**fields: Any) -> bytes:
    return json.dumps({"schema_version": 1, **fields}, separators=(",", ":")).encode()


def rate(event_id: str, user: str, item: str, value: float, offset: float) -> bytes:
    return payload(event_id=event_id, type="rate", user_id=user, item_id=item, value=value, timestamp=_iso(offset))


def catalog_payloads() -> list[tuple[str, bytes]]:
    """(item id, record data) of the sample catalog events."""
    import math

    # A deterministic unit vector standing in for a producer's image model output.
    raw = [math.sin(1.0 + 0.37 * i) for i in range(512)]
    norm = math.sqrt(sum(x * x for x in raw))
    image = [round(x / norm, 5) for x in raw]
    return [
        (
            "1683",
            payload(
                event_id="e-cat-1683-1",
                type="catalog",
                action="upsert",
                item_id="1683",
                title="The Lighthouse Keeper",
                description="A keeper returns to the lighthouse of his childhood as a storm closes the harbour.",
                categories=["Drama", "Thriller"],
                attributes={"year": "2026", "language": "en"},
                available_from=_iso(-3600),
                available_until=_iso(90 * 24 * 3600),
                image_embedding=image,
                timestamp=_iso(-300),
            ),
        ),
        (
            "1684",
            payload(
                event_id="e-cat-1684-1",
                type="catalog",
                action="upsert",
                item_id="1684",
                title="Neon Harbour",
                description="Two smugglers fall out over a stolen map in a rain-soaked port city.",
                categories=["Crime"],
                timestamp=_iso(-240),
            ),
        ),
        (
            "1500",
            payload(event_id="e-cat-1500-2", type="catalog", action="retire", item_id="1500", timestamp=_iso(-180)),
        ),
    ]


def kinesis_event(datas: Sequence[bytes | str], partition_key: str = "u-196") -> dict[str, Any]:
    return {"Records": [kinesis_record(d, i + 1, partition_key) for i, d in enumerate(datas)]}


def build() -> dict[str, dict[str, Any]]:
    profile = payload(
        event_id="e-profile-196",
        type="profile",
        user_id="u-196",
        consent=True,
        timezone="America/Chicago",
        push_token="fcm:dGVzdC10b2tlbi0xOTY",
        attributes={"age": 49, "gender": "M", "occupation": "writer"},
        timestamp=_iso(-600),
    )
    behaviour = [
        rate("e-196-1", "u-196", "242", 3, -540),
        payload(event_id="e-196-2", type="view", user_id="u-196", item_id="302", timestamp=_iso(-480)),
        payload(event_id="e-196-3", type="click", user_id="u-196", item_id="302", timestamp=_iso(-470)),
        payload(event_id="e-196-4", type="add_to_cart", user_id="u-196", item_id="377", timestamp=_iso(-300)),
        payload(event_id="e-196-5", type="purchase", user_id="u-196", item_id="377", timestamp=_iso(-200)),
        rate("e-196-6", "u-196", "51", 5, -120),
    ]
    feedback = [
        payload(
            event_id=f"e-fb-{kind}",
            type=kind,
            user_id="u-196",
            decision_id="01795780200-3f2a9c0d4b5e6f708192",
            item_id="258",
            timestamp=_iso(-60 + i),
        )
        for i, kind in enumerate(["delivered", "opened", "dismissed", "converted"])
    ]
    events: dict[str, dict[str, Any]] = {
        "kinesis-profile.json": kinesis_event([profile]),
        "kinesis-behaviour.json": kinesis_event(behaviour),
        "kinesis-feedback.json": kinesis_event(feedback),
        "kinesis-bad-base64.json": kinesis_event(["not*base64!!"]),
        "kinesis-not-json.json": kinesis_event([b"user 196 rated 242: 3 stars"]),
        "kinesis-invalid-utf8.json": kinesis_event([b'\xff\xfe{"schema_version":1}']),
        "kinesis-wrong-types.json": kinesis_event(
            [
                payload(
                    event_id="e-bad-1",
                    type="rate",
                    user_id=196,
                    item_id=["242"],
                    value="three",
                    timestamp=_iso(0),
                )
            ]
        ),
        "kinesis-unknown-type.json": kinesis_event(
            [payload(event_id="e-bad-2", type="teleport", user_id="u-196", timestamp=_iso(0))]
        ),
        "kinesis-missing-ids.json": kinesis_event([payload(type="view", item_id="242", timestamp=_iso(0))]),
        "kinesis-wrong-schema-version.json": kinesis_event(
            [json.dumps({"schema_version": 99, "event_id": "e-v99", "type": "view"}).encode()]
        ),
        "kinesis-too-large.json": kinesis_event(
            [
                payload(
                    event_id="e-big",
                    type="profile",
                    user_id="u-196",
                    attributes={"blob": "x" * 11_000},
                    timestamp=_iso(0),
                )
            ]
        ),
        "kinesis-future-timestamp.json": kinesis_event([rate("e-future", "u-196", "242", 4, 3 * 24 * 3600)]),
        "kinesis-old-timestamp.json": kinesis_event([rate("e-old", "u-196", "242", 4, -400 * 24 * 3600)]),
        "kinesis-duplicates.json": kinesis_event([behaviour[0], behaviour[0], behaviour[1]]),
        "kinesis-mixed-batch.json": kinesis_event(
            [
                profile,
                behaviour[0],
                "%%%",
                b"{",
                behaviour[5],
                payload(event_id="x", type="nope", timestamp=_iso(0)),
            ]
        ),
    }
    # CatalogFunction's input (issue 12): two upserts (one with an image embedding of the default
    # ImageEmbeddingDim, 512) and a retire; each record keyed by its item id, as the contract asks.
    events["kinesis-catalog.json"] = {
        "Records": [kinesis_record(data, i + 1, item) for i, (item, data) in enumerate(catalog_payloads())]
    }
    events["dynamodb-user-state-changed.json"] = {
        "Records": [
            {
                "eventID": "c4ca4238a0b923820dcc509a6f75849b",
                "eventName": "MODIFY",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": REGION,
                "dynamodb": {
                    "ApproximateCreationDateTime": ARRIVAL,
                    "Keys": {"user_id": {"S": "u-196"}},
                    "NewImage": user_state_image(),
                    "SequenceNumber": "111000000000000000000001",
                    "SizeBytes": 412,
                    "StreamViewType": "NEW_IMAGE",
                },
                "eventSourceARN": TABLE_STREAM_ARN,
            }
        ]
    }
    events["schedule-due-sweep.json"] = {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": _iso(0),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/nudge-DecideFunctionDueSweep"],
        "detail": {},
    }
    # EraseFunction's request (asynchronous invoke; docs/operations.md "Erasing users").
    events["erase-request.json"] = {"user_ids": ["u-196"]}
    return events


def main() -> None:
    EVENTS_DIR.mkdir(exist_ok=True)
    for name, event in build().items():
        (EVENTS_DIR / name).write_text(json.dumps(event, indent=2) + "\n")
    print(f"wrote {len(build())} events to {EVENTS_DIR}")


if __name__ == "__main__":
    main()
