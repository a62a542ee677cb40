"""Poison a later stage meets (the record is valid, what it needs is not): quarantined by that stage
with its reason, its batch applied, nothing dead-lettered.

The records are valid, so the contract cannot catch them: a user-state item nobody can read (written by
hand or by a bug) and a legacy item whose time zone the policy cannot load. Features, decide and
feedback each meet one, in a batch with other users' events, through the real handlers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import boto3
import pytest

from reliability.poison import GENRES, ITEMS, T0, valid_events, wire
from runner.pipeline import LocalPipeline
from shared.adapters.catalog import Catalog
from shared.domain.catalog import CatalogItem
from shared.domain.contract import FeedbackEvent
from testkit.audit import archived_lines, audit_user_state, read_dead_letters, user_states
from tests.integration.stacks import tiny_model_pipeline

UNREADABLE, UNLOADABLE_ZONE = "du2", "du7"
# More films than the users rated, so decide has a candidate to push and reaches the policy's clock.
CATALOG = [*ITEMS, *(str(i) for i in range(9, 21))]
DECISION = "01795000000-deadbeef"


@pytest.fixture
def pipe(tmp_path: Path) -> Iterator[LocalPipeline]:
    with tiny_model_pipeline(tmp_path, "nudge-downstream", T0 + timedelta(minutes=11), CATALOG) as pipeline:
        dynamodb = boto3.resource("dynamodb", region_name=pipeline.region)
        Catalog(dynamodb, pipeline.outputs["CatalogTableName"]).put_many(
            CatalogItem(item_id=i, title=f"Film {i}", genres=GENRES.get(i, ["Drama"])) for i in CATALOG
        )
        states = dynamodb.Table(pipeline.outputs["UserStateTableName"])
        # A packed history without its separators: no reader can unpack it.
        states.put_item(Item={"user_id": UNREADABLE, "version": 3, "recent": "no-separators-here"})
        # Written before the contract refused tzdata directories; decide's policy cannot load it.
        states.put_item(
            Item={"user_id": UNLOADABLE_ZONE, "version": 1, "timezone": "America", "consent": True, "push_token": "t"}
        )
        dynamodb.Table(pipeline.outputs["LedgerTableName"]).put_item(
            Item={"user_id": UNREADABLE, "decision_id": DECISION, "action": "push", "outcomes": {}}
        )
        yield pipeline


def test_each_stage_quarantines_what_it_can_never_process_and_applies_the_rest(pipe: LocalPipeline) -> None:
    events = [e for e in valid_events("d") if e.user_id != UNLOADABLE_ZONE or e.type != "profile"]
    opened = FeedbackEvent(
        schema_version=1,
        event_id="fb-1",
        user_id=UNREADABLE,
        timestamp=T0 + timedelta(minutes=10),
        type="opened",
        decision_id=DECISION,
    )
    records = [wire(e) for e in events] + [wire(opened)]
    pipe.put_events(records, partition_key="user_id")
    assert pipe.pump().quiescent

    dead = read_dead_letters(pipe)
    assert sum(dead.messages.values()) == 0, dead.as_dict()
    quarantine = archived_lines(pipe, "quarantine/")
    by_stage: dict[str, list[str]] = {}
    for line in quarantine:
        by_stage.setdefault(str(line.get("stage")), []).append(str(line["reason"]))
    unreadable_events = [e for e in events if e.user_id == UNREADABLE]
    # Features: every event of the unreadable user, once each; decide: the trigger of the other user.
    assert by_stage["features"] == ["undecodable_user_state"] * len(unreadable_events)
    assert by_stage["decide"] == ["unexpected_error"]
    assert by_stage["feedback"] == ["undecodable_user_state"]
    assert set(by_stage) == {"features", "decide", "feedback"}  # ingest refused nothing: all were valid
    # Every other user's events applied exactly once, as a reference fold says.
    others = [e for e in events if e.user_id not in (UNREADABLE, UNLOADABLE_ZONE)]
    states = {u: s for u, s in user_states(pipe).items() if u not in (UNREADABLE, UNLOADABLE_ZONE)}
    audit = audit_user_state(others, states, GENRES)
    assert (audit.events_applied, audit.events_lost, audit.events_applied_twice) == (len(others), 0, 0)
    assert audit.users_differing_from_reference == []
    # The user decide could not decide for still had its events applied by features.
    zone_user = user_states(pipe)[UNLOADABLE_ZONE]
    assert sum(zone_user.counters.values()) == len([e for e in events if e.user_id == UNLOADABLE_ZONE])
    # Quarantine lines keep what a replay needs: the record as delivered, or the change's key.
    features_line = next(line for line in quarantine if line.get("stage") == "features")
    assert features_line["partition_key"] == UNREADABLE and features_line["data"]
    decide_line = next(line for line in quarantine if line.get("stage") == "decide")
    assert decide_line["partition_key"] == UNLOADABLE_ZONE and decide_line["detail"] == "IsADirectoryError"
