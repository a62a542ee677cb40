"""The scenario kit's own pieces: noise in the traffic, the simulated users, the plain-text summaries."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.domain.contract import ProfileEvent
from testkit import traffic
from testkit.feedback import Push, SimulatedUsers, every_other
from testkit.scenario import Scenario, StackSpec, Timeline, progress_total
from testkit.text import counts, duration, table

T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)


def test_noise_adds_malformed_records_and_retries_after_every_nth_record() -> None:
    events = traffic.behaviour("u1", 10, T0, ["1", "2", "3"])
    noisy = traffic.with_noise(traffic.records_of(events), malformed_every=4, duplicate_every=5)
    kinds = [r.kind for r in noisy]
    assert kinds.count("event") == 10 and kinds.count("malformed") == 2 and kinds.count("duplicate") == 2
    # A retry is the same event right after it; a malformed record rides with the user's key and time.
    dup = kinds.index("duplicate")
    assert noisy[dup].data == noisy[dup - 1].data and noisy[dup].event is noisy[dup - 1].event
    bad = noisy[kinds.index("malformed")]
    assert bad.event is None and isinstance(bad.data, bytes) and bad.key == "u1" and bad.at == noisy[3].at


def test_with_profiles_puts_each_users_profile_a_second_before_their_first_event() -> None:
    from training.movielens import User

    ratings = [*traffic.behaviour("7", 2, T0, ["1"], kinds=("rate",)), *traffic.behaviour("8", 1, T0, ["1"])]
    users = [User("7", 30, "F", "writer", "10001")]
    events = traffic.with_profiles(ratings, users)
    assert [e.type for e in events] == ["profile", "rate", "rate", "view"]  # user 8 has no profile to send
    assert events[0].epoch_seconds == events[1].epoch_seconds - 1
    assert isinstance(events[0], ProfileEvent) and events[0].timezone == "America/New_York"


def test_simulated_users_answer_each_push_once_and_convert_when_engaged() -> None:
    users = SimulatedUsers(every_other(after_s=600), retry_every=2)
    first, second = Push("d1", "u1", "i1", 1_000), Push("d2", "u1", "i2", 2_000)
    assert users.outcomes(first) == [(1_001, "delivered"), (4_600, "dismissed")]
    assert [e.type for e in users.answer(second)] == ["delivered", "delivered", "opened", "converted"]
    assert users.answer(second) == [] and users.answered == 2
    converted = users.answer(Push("d3", "u1", "i3", 3_000))
    assert converted[0].event_id == "fb-d3-delivered" and converted[0].decision_id == "d3"


def test_progress_counts_records_or_the_steps_up_to_until() -> None:
    records = traffic.records_of(traffic.behaviour("u1", 5, T0, ["1"]))
    stack = StackSpec(name="s")
    assert progress_total(Scenario(stack, records, Timeline(step_s=60))) == 5
    start = int(T0.timestamp())
    assert progress_total(Scenario(stack, records, Timeline(step_s=3600, start=start, until=start + 36 * 3600))) == 36


def test_summaries_are_aligned_tables_and_readable_counts() -> None:
    text = table(["policy", "pushes", "rate"], [["full", 1234, 0.29281], ["popularity", 95, 0.2]])
    lines = text.splitlines()
    assert lines[0] == "policy      pushes    rate"
    assert lines[2] == "full         1,234  0.2928"
    assert lines[3] == "popularity      95  0.2000"
    assert counts({"daily_cap": 7, "below_fatigue_cost": 40}) == "below fatigue cost 40, daily cap 7"
    assert counts({}) == "none"
    assert duration(187.4) == "3 min 07 s" and duration(42.25) == "42.2 s"
