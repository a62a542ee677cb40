"""The user state as a hot item and a profile item (issue 16), through the real handlers on moto.

An item written before the split (one item per user holding everything, with the event-id
fingerprints of the time) must be read as it is and written in the new shape by whichever writer
comes next: features (a fold), feedback (a count) or delivery (an endpoint record). Erasure removes
both items.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from runner.pipeline import LocalPipeline
from shared.adapters.catalog import Catalog
from shared.adapters.user_state_store import UserStateStore
from shared.domain.catalog import CatalogItem
from testkit import traffic
from tests.integration.stacks import tiny_model_pipeline

ITEMS = [str(i) for i in range(1, 9)]
T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)  # outside quiet hours in UTC
AT = int(T0.timestamp())


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[LocalPipeline]:
    with tiny_model_pipeline(tmp_path, "nudge-split", T0, ITEMS) as pipe:
        pipe.start()
        Catalog(boto3.resource("dynamodb", region_name=pipe.region), pipe.outputs["CatalogTableName"]).put_many(
            CatalogItem(item_id=i, title=f"Film {i}", genres=["Drama"]) for i in ITEMS
        )
        yield pipe


def table(pipe: LocalPipeline) -> Any:
    return boto3.resource("dynamodb", region_name=pipe.region).Table(pipe.outputs["UserStateTableName"])


def raw(pipe: LocalPipeline, key: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = table(pipe).get_item(Key={"user_id": key}, ConsistentRead=True).get("Item")
    return item


def put_old_item(pipe: LocalPipeline, user: str) -> None:
    """One item holding everything, as the code before the split wrote it."""
    table(pipe).put_item(
        Item={
            "user_id": user,
            "version": 5,
            "last_writer": "feedback",
            "recent": f"1|{_base36(AT - 3600)}|v 2|{_base36(60)}|v",  # item|seconds since the last|kind
            "consumed": "1 2",
            "counters": {"view": 2, "profile": 1},
            "genre_affinity": {"Drama": Decimal("0.4")},
            "affinity_at": AT - 3540,
            "active_hours": " ".join(["0"] * 9 + ["2"] + ["0"] * 14),
            "last_seen": AT - 3540,
            "timezone": "UTC",
            "consent": True,
            "push_token": f"tok-{user}",
            "attributes": {"tier": "gold"},
            "recent_event_marks": "AAECAwQFBgcICQoLDA0ODw==",
            "shard_watermarks": {},
            "pushes_delivered": 2,
            "pushes_opened": 0,
            "pushes_dismissed": 1,
            "pushes_converted": 0,
            "last_feedback_at": AT - 7200,
            "feedback_seen": "d0:delivered d0:dismissed",
            "asks_decision": False,
            "decision_asked_at": AT - 3540,
        }
    )


def _base36(n: int) -> str:
    digits, out = "0123456789abcdefghijklmnopqrstuvwxyz", ""
    while n:
        n, d = divmod(n, 36)
        out = digits[d] + out
    return out


# What the fold itself sets besides the folded fields.
BOOKKEEPING = {"version", "last_writer", "asks_decision", "decision_asked_at", "shard_watermarks"}
PROFILE_ONLY = {"consent", "push_token", "timezone", "attributes", "pushes_delivered", "feedback_seen"}


def test_features_reads_an_old_item_and_writes_it_as_two(pipeline: LocalPipeline) -> None:
    put_old_item(pipeline, "u1")
    store = UserStateStore(
        boto3.resource("dynamodb", region_name=pipeline.region), pipeline.outputs["UserStateTableName"]
    )
    old = store.get("u1")
    assert old is not None and old.profile_version == 0 and old.consent and old.pushes_delivered == 2
    # Read old: a fold (the first hour's event) reads every field of the old item.
    (event,) = traffic.behaviour("u1", 1, T0, ["3"], kinds=("add_to_cart",))
    pipeline.put_events([event.model_dump(mode="json", exclude_none=True)], partition_key="user_id")
    assert pipeline.pump().quiescent

    # Write new: the hot item lost what moved, the profile item holds it (and all consumed items).
    hot, profile = raw(pipeline, "u1"), raw(pipeline, "u1#profile")
    assert hot is not None and profile is not None
    assert not PROFILE_ONLY & hot.keys() and "recent_event_marks" not in hot
    assert hot["version"] == 6 and hot["last_writer"] == "features" and hot["asks_decision"] is True
    assert profile["consent"] is True and profile["push_token"] == "tok-u1" and profile["pushes_delivered"] == 2
    assert profile["consumed"] == "1 2 3" and profile["feedback_seen"] == "d0:delivered d0:dismissed"
    assert "asks_decision" not in profile  # decide's stream filter never passes a profile write

    state = store.get("u1")
    assert state is not None
    assert state.model_dump(exclude=BOOKKEEPING) == old.model_copy(
        update={
            "counters": {"view": 2, "profile": 1, "add_to_cart": 1},
            "consumed": ["1", "2", "3"],
            "recent_items": [*old.recent_items, state.recent_items[-1]],
            "last_seen": event.epoch_seconds,
            "active_hours": state.active_hours,
            "genre_affinity": state.genre_affinity,
            "affinity_at": state.affinity_at,
            "profile_version": 1,
            "consumed_flushed": 3,
        }
    ).model_dump(exclude=BOOKKEEPING)

    # Decide saw the consent and token that only the profile item now holds (the stream image of the
    # hot item says neither).
    ledger = boto3.resource("dynamodb", region_name=pipeline.region).Table(pipeline.outputs["LedgerTableName"])
    (decision,) = ledger.scan()["Items"]
    assert decision["user_id"] == "u1" and not {"no_consent", "no_push_token"} & set(decision["reasons"])

    # Erasure removes both items.
    erased = pipeline.invoke("EraseFunction", {"user_ids": ["u1"]})
    assert erased.ok and erased.response["user_states"] == 1
    assert raw(pipeline, "u1") is None and raw(pipeline, "u1#profile") is None


def test_feedback_and_delivery_on_an_old_item_write_the_profile_item(pipeline: LocalPipeline) -> None:
    dynamodb = boto3.resource("dynamodb", region_name=pipeline.region)
    store = UserStateStore(dynamodb, pipeline.outputs["UserStateTableName"])
    put_old_item(pipeline, "u1")
    put_old_item(pipeline, "u2")
    old, hot_before = store.get("u1"), raw(pipeline, "u1")
    assert old is not None

    store.record_feedback(old, "d1:opened", "opened", AT, "feedback")
    counted = store.get("u1")
    assert counted is not None and counted.profile_version == 1
    assert (counted.pushes_delivered, counted.pushes_opened, counted.pushes_dismissed) == (2, 1, 1)
    assert counted.feedback_seen == ["d0:delivered", "d0:dismissed", "d1:opened"] and counted.consent
    assert raw(pipeline, "u1") == hot_before  # the hot item is left as it was: decide is not triggered
    # The next count goes to the profile item by its version.
    store.record_feedback(counted, "d1:converted", "converted", AT + 5, "feedback")
    again = store.get("u1")
    assert again is not None and (again.pushes_converted, again.profile_version) == (1, 2)

    store.record_endpoint("u2", "tok-u2", "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app/e2", "decide")
    recorded = store.get("u2")
    assert recorded is not None and recorded.push_endpoint is not None and recorded.push_endpoint.endswith("/e2")
    assert recorded.pushes_delivered == 2 and recorded.consent and recorded.attributes == {"tier": "gold"}
    # A token the user no longer has is still refused.
    store.disable_token("u2", "tok-old", "decide")
    assert store.get("u2") == recorded


def test_a_crash_between_the_two_puts_of_a_fold_applies_nothing_twice(pipeline: LocalPipeline) -> None:
    dynamodb = boto3.resource("dynamodb", region_name=pipeline.region)

    class CrashAfterProfile(UserStateStore):
        crashed = False

        def _put(self, item: dict[str, Any], expected_version: int, operation: str) -> None:
            super()._put(item, expected_version, operation)
            if operation == "user_state.save_profile" and not self.crashed:
                self.crashed = True
                raise RuntimeError("the invocation died between the profile put and the hot put")

    store = CrashAfterProfile(dynamodb, pipeline.outputs["UserStateTableName"])
    put_old_item(pipeline, "u1")
    state = store.get("u1")
    assert state is not None
    folded = state.model_copy(update={"consumed": [*state.consumed, "7"], "version": state.version + 1})
    with pytest.raises(RuntimeError):
        store.save(folded, state.version, profile_changed=False)
    # The retry reads the profile item the crashed attempt wrote and the hot item it did not replace.
    retry = store.get("u1")
    assert retry is not None and retry.version == state.version and retry.consumed == ["1", "2", "7"]
    assert retry.profile_version == 1 and retry.consent and retry.pushes_delivered == 2
    store.save(retry.model_copy(update={"version": retry.version + 1}), retry.version, profile_changed=False)
    final = store.get("u1")
    assert final is not None and final.consumed == ["1", "2", "7"] and final.version == state.version + 1
