"""Per-record isolation inside a stage: poison is quarantined, transient failures retried, neighbours stand."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import EventType
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord

from shared.domain.admission import Delivered, StreamPosition
from shared.domain.contract import BehaviourEvent, ProfileEvent
from shared.domain.errors import PoisonRecord, TransientStorageError
from shared.domain.user_state import UserState
from shared.plumbing.stream_batch import CommitFailure, Parsed, Quarantine, StreamConsumer
from shared.services.features import FeaturesService
from testkit.fakes import InMemoryArchive, InMemoryCatalog, InMemoryEventIds, InMemoryUserStates
from tests.events import load_event

NOON = datetime(2026, 11, 27, 12, tzinfo=UTC)


class RefusingStates(InMemoryUserStates):
    """A store that refuses some content (as DynamoDB refuses an item it cannot hold) or some users
    for now (throttling)."""

    def __init__(self, throttled: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.throttled = throttled

    def save(self, state: UserState, expected_version: int, *, profile_changed: bool) -> None:
        if state.user_id in self.throttled:
            raise TransientStorageError("user_state.save: ProvisionedThroughputExceededException")
        if "refused" in state.attributes:
            raise PoisonRecord("store_refused", "user_state.save: ValidationException")
        super().save(state, expected_version, profile_changed=profile_changed)


def view(user: str, n: int) -> BehaviourEvent:
    return BehaviourEvent(
        schema_version=1,
        event_id=f"{user}-{n}",
        user_id=user,
        timestamp=NOON + timedelta(minutes=n),
        type="view",
        item_id=str(n),
    )


def refused_profile(user: str) -> ProfileEvent:
    return ProfileEvent(
        schema_version=1,
        event_id=f"{user}-p",
        user_id=user,
        timestamp=NOON,
        type="profile",
        attributes={"refused": "yes"},
    )


def delivered(events: Sequence[BehaviourEvent | ProfileEvent]) -> list[Delivered[int]]:
    return [Delivered(e, StreamPosition("shard-0", str(100 + n)), n) for n, e in enumerate(events)]


def test_a_poison_event_is_isolated_from_the_same_users_other_events_and_from_other_users() -> None:
    store = RefusingStates()
    batch = delivered([view("u1", 1), refused_profile("u1"), view("u1", 2), view("u2", 1), view("u2", 2)])
    result = FeaturesService(store, InMemoryCatalog([]), InMemoryEventIds()).apply(batch)
    assert [ref for ref, _ in result.poisoned] == [1] and result.failed == []
    assert result.poisoned[0][1].reason == "store_refused"
    u1, u2 = store.get("u1"), store.get("u2")
    assert u1 is not None and u1.history() == ["1", "2"] and "refused" not in u1.attributes
    assert u2 is not None and u2.history() == ["1", "2"]
    # Retried, the batch changes nothing more: the poison is refused again and nothing is doubled.
    again = FeaturesService(store, InMemoryCatalog([]), InMemoryEventIds()).apply(batch)
    assert again.applied == 0 and store.get("u1") == u1


def test_a_transient_failure_fails_only_that_users_records() -> None:
    store = RefusingStates(throttled=frozenset({"u2"}))
    batch = delivered([view("u1", 1), view("u2", 1), view("u1", 2), view("u2", 2)])
    result = FeaturesService(store, InMemoryCatalog([]), InMemoryEventIds()).apply(batch)
    assert sorted(ref for ref, _ in result.failed) == [1, 3] and result.poisoned == []
    assert (state := store.get("u1")) is not None and state.history() == ["1", "2"]


def consumer(
    commit: Any, archive: InMemoryArchive, record_handler: Any = lambda record: record.kinesis.sequence_number
) -> StreamConsumer[Any, KinesisStreamRecord]:
    quarantine = Quarantine(archive, "quarantine/", "features", None)
    return StreamConsumer(
        EventType.KinesisDataStreams,
        record_handler,
        commit,
        Logger(service="t"),
        Metrics(namespace="T"),
        lambda: quarantine,
    )


def test_the_consumer_quarantines_poison_once_reports_transient_failures_and_logs_one_error_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    event = load_event("kinesis-mixed-batch.json")
    records = event["Records"]
    assert len(records) >= 3

    def commit(parsed: Sequence[Parsed[str, KinesisStreamRecord]]) -> list[CommitFailure[KinesisStreamRecord]]:
        return [
            CommitFailure(parsed[0].record, PoisonRecord("store_refused", "ValidationException")),
            CommitFailure(parsed[1].record, TransientStorageError("Throttling")),
        ]

    archive = InMemoryArchive()
    response = consumer(commit, archive)(event, None)
    second = records[1]["kinesis"]["sequenceNumber"]
    assert response == {"batchItemFailures": [{"itemIdentifier": second}]}
    (key,) = archive.keys("quarantine/features/")
    (line,) = archive.read_lines(key)
    assert line["sequence_number"] == records[0]["kinesis"]["sequenceNumber"] and line["reason"] == "store_refused"
    assert line["data"] == records[0]["kinesis"]["data"] and line["stage"] == "features"
    # The same batch again (a retry) rewrites the same object: quarantined once.
    consumer(commit, archive)(event, None)
    assert archive.keys("quarantine/features/") == [key]
    errors = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"level":"ERROR"' in line]
    assert len(errors) == 2  # one line per batch with failures (the batch ran twice)
    assert errors[0]["failed"] == [{"sequence_number": second, "error": "TransientStorageError: Throttling"}]


def test_a_record_handler_that_meets_poison_does_not_fail_the_batch() -> None:
    event = load_event("kinesis-mixed-batch.json")

    def parse(record: KinesisStreamRecord) -> str:
        if record.kinesis.sequence_number == event["Records"][0]["kinesis"]["sequenceNumber"]:
            raise ValueError("nobody foresaw this")
        return record.kinesis.sequence_number

    archive = InMemoryArchive()
    response = consumer(lambda parsed: [], archive, parse)(event, None)
    assert response == {"batchItemFailures": []}
    (key,) = archive.keys("quarantine/features/")
    assert archive.read_lines(key)[0]["reason"] == "unexpected_error"
