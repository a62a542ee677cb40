"""`nudge explain USER` and `nudge user USER` on a local stack keeping pseudonymous ids: the decisions the
pipeline recorded (with feedback's outcomes), the merged user state without its token, and the refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from cli.__main__ import main
from runner.pipeline import LocalPipeline
from runner.stack import Stack
from shared.adapters.ledger import Ledger
from shared.domain.decision import Action, Decision, Reason, decision_id_for
from shared.domain.pseudonym import Pseudonymizer

pytestmark = pytest.mark.slow(seconds=10)

ROOT = Path(__file__).resolve().parents[2]
KEY_PARAMETER = "/nudge/test/cli-pseudonym-key"
KEY = "k" * 48
TOKEN = "device-token-7c1e"
USER = "u-cli-1"


def events(user: str) -> list[dict[str, Any]]:
    # Inside the decision's day-time hours (UTC user), so decide scores and records at once.
    at = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
    base = {"schema_version": 1, "user_id": user, "timestamp": at.isoformat()}
    return [
        {**base, "event_id": f"{user}-p", "type": "profile", "consent": True, "timezone": "UTC", "push_token": TOKEN},
        {**base, "event_id": f"{user}-r1", "type": "rate", "item_id": "1", "value": 5},
        {**base, "event_id": f"{user}-v7", "type": "view", "item_id": "7"},
        {**base, "event_id": f"{user}-r3", "type": "rate", "item_id": "3", "value": 4},
    ]


def feedback(user: str, decision_id: str, *outcomes: str) -> list[dict[str, Any]]:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    return [
        {
            "schema_version": 1,
            "event_id": f"{user}-{outcome}",
            "user_id": user,
            "timestamp": at.isoformat(),
            "type": outcome,
            "decision_id": decision_id,
        }
        for outcome in outcomes
    ]


def nudge(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_explain_and_user_show_what_the_pipeline_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with LocalPipeline(
        ROOT / "template.yaml",
        stack_name="nudge-cli-users",
        functions=["IngestFunction", "FeaturesFunction", "DecideFunction", "FeedbackFunction"],
        # No quiet hours: decide's clock is the wall clock, which is inside them from 21:00 to 08:00 UTC.
        parameter_overrides={"PseudonymKeyParameter": KEY_PARAMETER, "QuietHoursStart": 0, "QuietHoursEnd": 0},
    ) as pipe:
        pipe.client("ssm").put_parameter(Name=KEY_PARAMETER, Value=KEY, Type="SecureString")
        dynamodb = boto3.resource("dynamodb", region_name=pipe.region)
        catalog = dynamodb.Table(pipe.outputs["CatalogTableName"])
        for item in map(str, range(1, 41)):
            catalog.put_item(Item={"item_id": item, "title": f"Film {item}", "genres": ["Drama"]})
        pipe.put_events(events(USER), partition_key="user_id")
        assert pipe.pump().quiescent
        stored = Pseudonymizer(KEY.encode())(USER)
        ledger = dynamodb.Table(pipe.outputs["LedgerTableName"])
        rows = ledger.query(KeyConditionExpression="user_id = :u", ExpressionAttributeValues={":u": stored})["Items"]
        assert len(rows) == 1, rows
        pipe.put_events(feedback(USER, str(rows[0]["decision_id"]), "delivered", "opened"), partition_key="user_id")
        assert pipe.pump().quiescent
        row = ledger.get_item(Key={"user_id": stored, "decision_id": rows[0]["decision_id"]})["Item"]
        ready = tmp_path / "ready.json"
        ready.write_text(json.dumps(pipe.describe()))
        where = ["--ready-file", str(ready)]

        status, out, _ = nudge(capsys, "explain", USER, *where)
        assert status == 0
        explained = json.loads(out)
        assert explained["user_id"] == USER and explained["stored_as"] == stored
        [decision] = explained["decisions"]
        assert row["action"] == "push" and row["status"] == "sent"  # the committed model pushes a film here
        assert decision["decision_id"] == row["decision_id"] and decision["action"] == row["action"]
        assert decision["model_version"] == row["model_version"] and decision["reasons"] == list(row["reasons"])
        assert decision["item_id"] == row["item_id"] and decision["title"] == row["title"] == f"Film {row['item_id']}"
        assert decision["explanation"] == row["explanation"] and decision["explanation"].startswith("Because you")
        assert decision["score"] == pytest.approx(float(row["score"]))
        assert decision["decided_at"] == datetime.fromtimestamp(int(row["decided_at"]), UTC).isoformat()
        assert set(decision["outcomes"]) == set(row["outcomes"]) >= {"delivered", "opened"}

        # The same stack through CloudFormation's outputs and parameters.
        status, out, _ = nudge(capsys, "explain", USER, "--stack-name", "nudge-cli-users", "--limit", "1")
        assert status == 0 and json.loads(out) == explained
        status, text, _ = nudge(capsys, "explain", USER, "--text", *where)
        assert status == 0 and row["decision_id"] not in text and str(row["action"]) in text and "opened" in text

        status, out, _ = nudge(capsys, "user", USER, *where)
        assert status == 0 and TOKEN not in out
        shown = json.loads(out)
        state = shown["state"]
        assert state["consent"] is True and state["timezone"] == "UTC" and state["has_push_token"] is True
        assert [i["item_id"] for i in state["recent_items"]] == ["3", "7", "1"]  # newest first
        assert list(state["genre_affinity"]) == ["Drama"] and state["counters"] == {"profile": 1, "rate": 2, "view": 1}
        assert state["pushes"]["opened"] == 1 and state["pushes"]["delivered"] == 1
        assert state["version"] >= 1 and state["profile_version"] >= 1
        # Decided now (the events are yesterday's): the push took today's and this week's slots.
        assert (shown["push_counters"]["today"], shown["push_counters"]["this_week"]) == (1, 1)
        status, text, _ = nudge(capsys, "user", USER, "--text", *where)
        assert status == 0 and TOKEN not in text and "consent" in text

        # Refusals: one line on stderr, status 2.
        for command in ("explain", "user"):
            status, out, err = nudge(capsys, command, "u-nobody", *where)
            assert (status, out) == (
                2,
                "",
            ) and err == f"nudge {command}: no such user 'u-nobody': no decisions and no state\n"
        status, _, err = nudge(capsys, "explain", USER, "--stack-name", "no-such-stack")
        assert status == 2 and "no stack named 'no-such-stack'" in err
        (tmp_path / "bad.json").write_text("{not json")
        status, _, err = nudge(capsys, "user", USER, "--ready-file", str(tmp_path / "bad.json"))
        assert status == 2 and err.startswith("nudge user: cannot read the ready file")
        status, _, err = nudge(capsys, "user", USER)
        assert status == 2 and "name the stack" in err


def test_explain_lists_the_newest_decisions_first_up_to_the_limit(
    stack: Stack, dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = Ledger(dynamodb, stack.outputs["LedgerTableName"])
    for n, at in enumerate((1_700_000_000, 1_700_000_600, 1_700_001_200)):
        ledger.record(
            Decision(
                decision_id=decision_id_for("u-rows", at, f"t{n}"),
                user_id="u-rows",
                action=Action.SILENCE,
                reasons=[Reason.QUIET_HOURS],
                decided_at=at,
                model_version=f"m{n}",
                policy="rules-v1",
            ),
            expires_at=at + 86400,
        )
    where = ["--stack-name", stack.stack_name]
    status, out, _ = nudge(capsys, "explain", "u-rows", "--limit", "2", *where)
    assert status == 0
    decisions = json.loads(out)["decisions"]
    assert [d["model_version"] for d in decisions] == ["m2", "m1"]
    assert decisions[0]["decided_at"] == "2023-11-14T22:33:20+00:00" and decisions[0]["reasons"] == ["quiet_hours"]
    # Decisions without state (the state expired, say): shown, with no state.
    status, out, _ = nudge(capsys, "user", "u-rows", *where)
    assert status == 0 and json.loads(out)["state"] is None and "stored_as" not in json.loads(out)
