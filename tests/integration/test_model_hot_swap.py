"""Promotion and rollback race concurrent decisions (issue 13): none fails, every ledger row names the
version that made it, with that version's calibration, and a promotion is served once the TTL passes."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from runner.stack import Stack
from shared.adapters.catalog import Catalog
from shared.adapters.ledger import Ledger
from shared.adapters.model_registry import S3ModelRegistry, SsmModelPointer, load_served_model
from shared.domain.catalog import CatalogItem
from shared.domain.model_registry import HotSwap, ModelPointer, challenger_draw
from shared.domain.policy import PolicyConfig, RulesPolicy
from shared.domain.user_state import RecentItem, StateChange, UserState
from shared.services.decide import DecideConfig, DecideService
from testkit.fakes import InMemoryUserStates, RecordingSender
from testkit.tiny_model import DEFAULT_VOCAB, build_registry_model

pytestmark = pytest.mark.slow(seconds=10)

REGION = "us-east-1"
NOON = int(datetime(2026, 3, 2, 12, tzinfo=UTC).timestamp())
TTL = 60
DECIDERS = 4
USERS_PER_DECIDER = 40
BATCH = 2


class Clock:
    """The swap's clock: the promoter moves it past the TTL instead of anyone sleeping for a minute."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def user(name: str) -> UserState:
    return UserState(
        user_id=name,
        version=1,
        consent=True,
        push_token=f"tok-{name}",
        recent_items=[RecentItem(item_id="i1", ts=NOON - 600, type="rate")],
    )


@pytest.fixture
def world(stack: Stack, dynamodb: Any, tmp_path: Path) -> dict[str, Any]:
    outputs = stack.outputs
    registry = S3ModelRegistry(boto3.client("s3", region_name=REGION), outputs["ArchiveBucketName"], "models/registry/")
    # Two graphs with calibrations that tell them apart in the ledger's engagement column.
    a = registry.publish(build_registry_model(tmp_path / "a", probability=0.5))
    b = registry.publish(
        build_registry_model(tmp_path / "b", created_at=datetime(2026, 2, 1, tzinfo=UTC), probability=0.9)
    )
    pointer = SsmModelPointer(boto3.client("ssm", region_name=REGION), outputs["ModelPointerParameterName"])
    pointer.write(ModelPointer.first(a))
    catalog = Catalog(dynamodb, outputs["CatalogTableName"])
    catalog.put_many(CatalogItem(item_id=i, title=f"Film {i}", genres=["Drama"]) for i in DEFAULT_VOCAB)
    clock = Clock()
    swap = HotSwap(
        load_served_model(build_registry_model(tmp_path / "layer")),  # the bootstrap default
        pointer.read,
        lambda version: registry.load(version, tmp_path / "downloads"),
        ttl_seconds=TTL,
        clock=clock,
    )
    ledger = Ledger(dynamodb, outputs["LedgerTableName"])
    service = DecideService(
        InMemoryUserStates(),
        catalog,
        ledger,
        swap,
        RecordingSender(),
        RulesPolicy(PolicyConfig(daily_push_cap=100, exploration_share=0.0)),
        DecideConfig(),
    )
    table = dynamodb.Table(outputs["LedgerTableName"])
    return {"a": a, "b": b, "pointer": pointer, "clock": clock, "swap": swap, "service": service, "table": table}


@pytest.mark.usefixtures("atomic_requests")
def test_promotions_and_rollbacks_race_decisions_without_a_failure(world: dict[str, Any]) -> None:
    a, b, pointer, clock, service = (world[k] for k in ("a", "b", "pointer", "clock", "service"))
    failures: list[str] = []
    done = threading.Event()
    moves = Counter[str]()

    def decider(n: int) -> None:
        names = [f"u{n}-{i}" for i in range(USERS_PER_DECIDER)]
        for start in range(0, len(names), BATCH):
            changes = [StateChange(user(name), NOON, name) for name in names[start : start + BATCH]]
            try:
                result = service.decide_changes(changes)
            except Exception as exc:  # an invocation that raises is a failed invocation
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            failures.extend(f"{ref}: {error}" for ref, error in [*result.failed, *result.poisoned])

    def promoter() -> None:
        while not done.is_set():
            current = pointer.read()
            moved = current.promoted(b) if current.champion == a else current.rolled_back()
            pointer.write(moved)
            moves["promote" if moved.champion == b else "rollback"] += 1
            clock.advance(TTL)
            time.sleep(0.01)

    threads = [threading.Thread(target=decider, args=(n,)) for n in range(DECIDERS)]
    mover = threading.Thread(target=promoter)
    mover.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    mover.join()

    rows = world["table"].scan()["Items"]
    served = Counter(str(row["model_version"]) for row in rows)
    print(f"\nrace: {len(rows)} decisions by {served}, pointer moves {dict(moves)}, failures {len(failures)}")
    assert failures == []
    assert len(rows) == DECIDERS * USERS_PER_DECIDER
    assert set(served) == {a, b}  # both served: the swaps happened while decisions ran
    assert moves["promote"] >= 2 and moves["rollback"] >= 1
    # Every decision used the calibration of the version it names, never the other's.
    probabilities = {a: {0.25, 0.5}, b: {0.45, 0.9}}
    calibrated = [row for row in rows if "engagement" in row]
    assert calibrated, "the policy never reached the engagement test"
    for row in calibrated:
        assert float(row["engagement"]) in probabilities[str(row["model_version"])], row


def test_a_promotion_is_served_once_the_ttl_has_passed(world: dict[str, Any]) -> None:
    a, b, pointer, clock, service, table = (world[k] for k in ("a", "b", "pointer", "clock", "service", "table"))

    def decide(name: str) -> str:
        decision = service.decide_for(user(name), NOON, "state:1")
        row = table.get_item(Key={"user_id": name, "decision_id": decision.decision_id})["Item"]
        assert row["model_version"] == decision.model_version
        return str(decision.model_version)

    assert decide("first") == a
    pointer.write(pointer.read().promoted(b))
    clock.advance(TTL - 1)
    assert decide("within-ttl") == a  # not yet re-read
    clock.advance(1)
    assert decide("after-ttl") == b
    pointer.write(pointer.read().rolled_back())
    clock.advance(TTL)
    assert decide("rolled-back") == a


def test_the_challenger_decides_for_its_share_of_users_and_the_ledger_says_so(world: dict[str, Any]) -> None:
    a, b, pointer, clock, service, table = (world[k] for k in ("a", "b", "pointer", "clock", "service", "table"))
    pointer.write(pointer.read().with_challenger(b, 0.5))
    clock.advance(TTL)
    names = [f"c-{i}" for i in range(30)]
    result = service.decide_changes([StateChange(user(name), NOON, name) for name in names])
    assert result.failed == [] and result.poisoned == []
    rows = {row["user_id"]: row["model_version"] for row in table.scan()["Items"]}
    expected = {name: b if challenger_draw(name) < 0.5 else a for name in names}
    assert rows == expected and set(expected.values()) == {a, b}
