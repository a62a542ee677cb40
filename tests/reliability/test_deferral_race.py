"""A deferred push survives a concurrent write that triggers no decision of its own.

Decide records a deferral with a version-conditional write. If feedback (or the sweep) wrote the
user in between, that write does not pass decide's stream filter (only features writes do), so
nothing would ever decide again: giving up on the conflict silently dropped the deferred push.
"""

from __future__ import annotations

from typing import Any

import pytest

from runner.stack import Stack
from shared.adapters.user_state_store import UserStateStore
from shared.domain.decision import Action
from shared.domain.user_state import StateChange
from testkit.fakes import RecordingSender
from tests.unit.test_services import NOON, decide_service, out, stored_user


def test_a_deferral_is_kept_when_feedback_wrote_the_user_meanwhile(stack: Stack, dynamodb: Any) -> None:
    service = decide_service(stack, dynamodb, RecordingSender())
    state = stored_user(stack, dynamodb, tz="Asia/Tokyo")  # 12:00 UTC = 21:00 in Tokyo: deferred
    store = UserStateStore(dynamodb, out(stack, "UserStateTableName"))
    schedule = store.schedule

    def feedback_races_in(*args: Any, **kwargs: Any) -> None:
        current = store.get(state.user_id)
        assert current is not None
        store.record_feedback(current, "d-0:dismissed", "dismissed", int(NOON.timestamp()), "feedback")
        service._states.schedule = schedule  # type: ignore[method-assign]  # the race happens once
        schedule(*args, **kwargs)

    service._states.schedule = feedback_races_in  # type: ignore[method-assign]
    decision = service.decide_changes([StateChange(state, int(NOON.timestamp()), "ref")]).decisions[0]
    assert decision.action is Action.DEFER
    after = store.get(state.user_id)
    assert after is not None and after.pushes_dismissed == 1
    assert after.due_at == decision.due_at, "the deferred push was dropped"


@pytest.mark.parametrize("asks_decision", [False, True])
def test_a_deferral_is_kept_unless_the_racing_events_asked_for_a_decision(
    stack: Stack, dynamodb: Any, asks_decision: bool
) -> None:
    # Events inside the decision interval write the user without asking decide for anything: only
    # a write that asks (and so triggers its own decision) may take the deferral's place.
    service = decide_service(stack, dynamodb, RecordingSender())
    state = stored_user(stack, dynamodb, tz="Asia/Tokyo")
    store = UserStateStore(dynamodb, out(stack, "UserStateTableName"))
    schedule = store.schedule

    def features_races_in(*args: Any, **kwargs: Any) -> None:
        current = store.get(state.user_id)
        assert current is not None
        newer = current.model_copy(update={"version": current.version + 1, "last_writer": "features"})
        newer.asks_decision = asks_decision
        store.save(newer, expected_version=current.version, profile_changed=False)
        service._states.schedule = schedule  # type: ignore[method-assign]
        schedule(*args, **kwargs)

    service._states.schedule = features_races_in  # type: ignore[method-assign]
    decision = service.decide_changes([StateChange(state, int(NOON.timestamp()), "ref")]).decisions[0]
    assert decision.action is Action.DEFER
    after = store.get(state.user_id)
    assert after is not None
    assert after.due_at == (None if asks_decision else decision.due_at)
