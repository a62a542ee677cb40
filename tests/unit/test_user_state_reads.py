"""Which user-state items features and feedback read (issue 16: read units per event), and that reading
less loses nothing and counts nothing twice. Against moto resources built from template.yaml; every
GetItem and BatchGetItem the store under test sends is recorded by key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from runner.stack import Stack
from shared.adapters.catalog import Catalog
from shared.adapters.event_ids import DynamoEventIdRegistry
from shared.adapters.ledger import Ledger
from shared.adapters.object_archive import ObjectArchive
from shared.adapters.user_state_codec import CONSUMED_TAIL_BYTES, PROFILE_UNREAD
from shared.adapters.user_state_store import UserStateStore
from shared.domain.admission import CLAIM_TTL_SECONDS, Delivered, StreamPosition
from shared.domain.catalog import CatalogItem
from shared.domain.contract import BehaviourEvent, FeedbackEvent, ProfileEvent
from shared.domain.user_state import UserState, feedback_mark
from shared.services.features import FeaturesService
from shared.services.feedback import FeedbackService
from testkit import traffic

pytestmark = pytest.mark.slow(seconds=6)

REGION = "us-east-1"
NOON = datetime(2026, 11, 27, 12, tzinfo=UTC)
AT = int(NOON.timestamp())


class Recorded:
    """A DynamoDB resource whose reads of the user-state table are recorded as (operation, keys)."""

    def __init__(self, table: str) -> None:
        self.resource = boto3.resource("dynamodb", region_name=REGION)
        self.table = table
        self.calls: list[tuple[str, list[str]]] = []
        self.resource.meta.client.meta.events.register("provide-client-params.dynamodb.*", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "BatchGetItem" and self.table in params["RequestItems"]:
            keys = params["RequestItems"][self.table]["Keys"]
        elif model.name == "GetItem" and params["TableName"] == self.table:
            keys = [params["Key"]]
        else:
            return
        self.calls.append((model.name, sorted(_plain(k["user_id"]) for k in keys)))

    def keys_read(self) -> list[str]:
        return sorted(key for _, keys in self.calls for key in keys)


def _plain(value: Any) -> str:
    return str(value["S"]) if isinstance(value, dict) else str(value)


def table_name(stack: Stack) -> str:
    return stack.outputs["UserStateTableName"]


def registry(stack: Stack, dynamodb: Any) -> DynamoEventIdRegistry:
    return DynamoEventIdRegistry(dynamodb, stack.outputs["EventIdsTableName"], CLAIM_TTL_SECONDS)


def features(stack: Stack, dynamodb: Any, store: UserStateStore) -> FeaturesService:
    catalog = Catalog(dynamodb, stack.outputs["CatalogTableName"])
    catalog.put_many([CatalogItem(item_id="1", title="A", genres=["Comedy"])])
    return FeaturesService(store, catalog, registry(stack, dynamodb))


def at(event: BehaviourEvent | ProfileEvent | FeedbackEvent, seq: int) -> Delivered[int]:
    return Delivered(event, StreamPosition("shardId-000000000000", str(seq)), seq)


def view(event_id: str, item: str, minutes: int = 0) -> BehaviourEvent:
    return BehaviourEvent(
        schema_version=1,
        event_id=event_id,
        user_id="u1",
        timestamp=NOON + timedelta(minutes=minutes),
        type="view",
        item_id=item,
    )


def profile(event_id: str, tz: str) -> ProfileEvent:
    return ProfileEvent(
        schema_version=1,
        event_id=event_id,
        user_id="u1",
        timestamp=NOON,
        type="profile",
        consent=True,
        timezone=tz,
        push_token="tok-u1",
        attributes={"tier": "gold"},
    )


def known_user(stack: Stack, dynamodb: Any) -> UserState:
    """u1 with a profile item (consent, token) and a hot item, written by features."""
    features(stack, dynamodb, UserStateStore(dynamodb, table_name(stack))).apply(
        [at(profile("p1", "UTC"), 1), at(view("e1", "1"), 2)]
    )
    state = UserStateStore(dynamodb, table_name(stack)).get("u1")
    assert state is not None and state.profile_version == 1 and state.consent
    return state


def test_a_behaviour_fold_reads_the_hot_item_only_and_a_profile_fold_both(stack: Stack, dynamodb: Any) -> None:
    before = known_user(stack, dynamodb)
    recorded = Recorded(table_name(stack))
    service = features(stack, dynamodb, UserStateStore(recorded.resource, table_name(stack)))

    result = service.apply([at(view("e2", "2", 1), 3)])
    assert (result.applied, result.failed, result.version_conflicts) == (1, [], 0)
    assert recorded.calls == [("BatchGetItem", ["u1"])]  # not "u1#profile": 1 read unit, not 2
    after = UserStateStore(dynamodb, table_name(stack)).get("u1")
    assert after is not None and after.history() == ["1", "2"] and after.version == before.version + 1
    # Nothing of the profile item was lost or rewritten by the hot put.
    assert (after.consent, after.push_token, after.attributes, after.profile_version) == (
        True,
        "tok-u1",
        {"tier": "gold"},
        before.profile_version,
    )

    recorded.calls.clear()
    service.apply([at(profile("p2", "Asia/Tokyo"), 4)])
    assert recorded.calls == [("BatchGetItem", ["u1", "u1#profile"])]
    changed = UserStateStore(dynamodb, table_name(stack)).get("u1")
    assert changed is not None and changed.timezone == "Asia/Tokyo" and changed.attributes == {"tier": "gold"}
    assert changed.profile_version == before.profile_version + 1 and changed.history() == ["1", "2"]


def test_consumed_items_move_to_the_profile_item_after_reading_it(stack: Stack, dynamodb: Any) -> None:
    known_user(stack, dynamodb)
    recorded = Recorded(table_name(stack))
    service = features(stack, dynamodb, UserStateStore(recorded.resource, table_name(stack)))
    items = [f"item-{n:04d}" for n in range(12)]  # 10 bytes each packed: the tail fills after 6-7
    for n, item in enumerate(items):
        assert service.apply([at(view(f"v{n}", item, n + 1), 10 + n)]).applied == 1
    # One fold read the profile item (GetItem) to move the tail there; every other read was the hot item's.
    assert recorded.calls.count(("GetItem", ["u1#profile"])) == 1
    assert all(call == ("BatchGetItem", ["u1"]) for call in recorded.calls if call[0] == "BatchGetItem")
    state = UserStateStore(dynamodb, table_name(stack)).get("u1")
    assert state is not None and state.consumed == ["1", *items] and state.profile_version == 2
    assert state.consent and state.push_token == "tok-u1"
    hot = dynamodb.Table(table_name(stack)).get_item(Key={"user_id": "u1"})["Item"]
    assert len(hot["consumed"]) <= CONSUMED_TAIL_BYTES


class RacingProfileStore(UserStateStore):
    """Feedback counts an outcome in the profile item between features' read of it and its put."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        super().__init__(dynamodb, table)
        self.raced = 0

    def with_profile(self, state: UserState) -> UserState:
        read = super().with_profile(state)
        if not self.raced:
            self.raced += 1
            current = self.get_profile(state.user_id)
            assert current is not None
            self.record_feedback(current, feedback_mark("d9:opened"), "opened", AT, "feedback")
        return read


def test_a_stale_profile_copy_is_caught_and_the_fold_redone(stack: Stack, dynamodb: Any) -> None:
    known_user(stack, dynamodb)
    store = RacingProfileStore(dynamodb, table_name(stack))
    service = features(stack, dynamodb, store)
    items = [f"item-{n:04d}" for n in range(8)]
    results = [service.apply([at(view(f"v{n}", item, n + 1), 10 + n)]) for n, item in enumerate(items)]
    assert store.raced == 1 and sum(r.version_conflicts for r in results) == 1
    assert sum(r.applied for r in results) == 8 and all(r.failed == [] for r in results)
    state = store.get("u1")
    # Both writers' changes survive: the count (not lost to the stale copy) and every item once.
    assert state is not None and state.pushes_opened == 1 and state.consumed == ["1", *items]
    assert state.counters["view"] == 9


def test_a_profile_fold_without_the_profile_item_is_refused(stack: Stack, dynamodb: Any) -> None:
    known_user(stack, dynamodb)
    store = UserStateStore(dynamodb, table_name(stack))
    hot_only = store.get_many(["u1"], profiles_of=[])["u1"]
    assert isinstance(hot_only, UserState) and hot_only.profile_version == PROFILE_UNREAD
    with pytest.raises(ValueError, match="profile change"):
        store.save(hot_only, hot_only.version, profile_changed=True)


def test_an_old_item_whose_profile_item_was_written_since_is_not_overwritten(stack: Stack, dynamodb: Any) -> None:
    """An item from before the split still holds the profile fields; feedback wrote the profile item
    since. Read alone it looks whole: the fold's profile put is refused and the fold redone on both."""
    table = dynamodb.Table(table_name(stack))
    table.put_item(
        Item={
            "user_id": "u1",
            "version": 3,
            "consumed": "1",
            "recent": "1|0|v",
            "timezone": "UTC",
            "consent": True,
            "push_token": "tok-u1",
            "pushes_opened": 0,
            "feedback_seen": "",
        }
    )
    store = UserStateStore(dynamodb, table_name(stack))
    old = store.get_profile("u1")
    assert old is not None and old.profile_version == 0
    store.record_feedback(old, feedback_mark("d1:opened"), "opened", AT, "feedback")
    result = features(stack, dynamodb, store).apply([at(view("e2", "2"), 5)])
    assert (result.applied, result.version_conflicts, result.failed) == (1, 1, [])
    state = store.get("u1")
    assert state is not None and state.pushes_opened == 1 and state.consent and state.history() == ["1", "2"]
    assert "consent" not in table.get_item(Key={"user_id": "u1"})["Item"]  # written as a hot item now


def feedback_service(stack: Stack, dynamodb: Any, store: UserStateStore) -> FeedbackService:
    return FeedbackService(
        Ledger(dynamodb, stack.outputs["LedgerTableName"]),
        store,
        ObjectArchive(boto3.client("s3", region_name=REGION), stack.outputs["ArchiveBucketName"]),
        registry(stack, dynamodb),
        "feedback/",
    )


def outcome(event_id: str, kind: str, decision_id: str) -> FeedbackEvent:
    return traffic.outcome("u1", event_id, kind, decision_id, NOON + timedelta(minutes=5))


def ledger_row(stack: Stack, dynamodb: Any, decision_id: str) -> None:
    dynamodb.Table(stack.outputs["LedgerTableName"]).put_item(
        Item={
            "user_id": "u1",
            "decision_id": decision_id,
            "item_id": "1",
            "decided_at": AT,
            "action": "push",
            "outcomes": {},
        }
    )


def test_feedback_reads_only_the_profile_item_and_keeps_marks(stack: Stack, dynamodb: Any) -> None:
    before = known_user(stack, dynamodb)
    ledger_row(stack, dynamodb, "d1")
    recorded = Recorded(table_name(stack))
    service = feedback_service(stack, dynamodb, UserStateStore(recorded.resource, table_name(stack)))
    # The same outcome twice under two event ids (an app's resend): counted once.
    result = service.apply([at(outcome("f1", "opened", "d1"), 20), at(outcome("f2", "opened", "d1"), 21)])
    assert (result.joined, result.duplicates, result.failed) == (1, 1, [])
    assert recorded.calls == [("GetItem", ["u1#profile"])] * 2  # never the hot item
    state = UserStateStore(dynamodb, table_name(stack)).get("u1")
    assert state is not None and state.pushes_opened == 1 and state.feedback_seen == [feedback_mark("d1:opened")]
    assert len(state.feedback_seen[0]) == 8 and state.version == before.version  # the hot item is not written


def test_feedback_reads_keys_kept_before_the_marks_and_rewrites_them(stack: Stack, dynamodb: Any) -> None:
    known_user(stack, dynamodb)
    table = dynamodb.Table(table_name(stack))
    table.update_item(
        Key={"user_id": "u1#profile"},
        UpdateExpression="SET feedback_seen = :s, pushes_opened = :one",
        ExpressionAttributeValues={":s": "d1:opened", ":one": 1},
    )
    for decision_id in ("d1", "d2"):
        ledger_row(stack, dynamodb, decision_id)
    service = feedback_service(stack, dynamodb, UserStateStore(dynamodb, table_name(stack)))
    result = service.apply([at(outcome("f1", "opened", "d1"), 30), at(outcome("f2", "opened", "d2"), 31)])
    assert (result.joined, result.duplicates) == (1, 1)  # d1's was counted under the old key
    state = UserStateStore(dynamodb, table_name(stack)).get("u1")
    assert state is not None and state.pushes_opened == 2
    assert state.feedback_seen == [feedback_mark("d1:opened"), feedback_mark("d2:opened")]
