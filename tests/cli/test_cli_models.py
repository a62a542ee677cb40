"""`nudge models ...` against a local stack, and decide's real handler serving what the pointer names."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from cli.__main__ import main
from runner.pipeline import LocalPipeline
from testkit.tiny_model import DEFAULT_VOCAB, build_registry_model

pytestmark = pytest.mark.slow(seconds=8)

ROOT = Path(__file__).resolve().parents[2]
LAYER_DEFAULT = json.loads((ROOT / "layers/model/sasrec/int8/manifest.json").read_text())["version"]
TTL_SECONDS = 1


def events(user: str) -> list[dict[str, Any]]:
    # Inside the decision's day-time hours (UTC user), so decide scores and records at once.
    stamp = (datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)).isoformat()
    base = {"schema_version": 1, "user_id": user, "timestamp": stamp}
    return [
        {**base, "event_id": f"{user}-p", "type": "profile", "consent": True, "timezone": "UTC", "push_token": "t"},
        {**base, "event_id": f"{user}-r", "type": "rate", "item_id": "i1", "value": 5},
    ]


def nudge(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, json.loads(captured.out) if status == 0 else captured.err


def test_promote_and_rollback_reach_decide_within_the_ttl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with LocalPipeline(
        ROOT / "template.yaml",
        stack_name="nudge-models",
        functions=["IngestFunction", "FeaturesFunction", "DecideFunction"],
        # No quiet hours: decide's clock is the wall clock, which is inside them from 21:00 to 08:00 UTC.
        parameter_overrides={"ModelPointerTtlSeconds": TTL_SECONDS, "QuietHoursStart": 0, "QuietHoursEnd": 0},
    ) as pipe:
        ready = tmp_path / "ready.json"
        ready.write_text(json.dumps(pipe.describe()))
        where = ["--ready-file", str(ready)]
        catalog = boto3.resource("dynamodb", region_name=pipe.region).Table(pipe.outputs["CatalogTableName"])
        for item in [*DEFAULT_VOCAB, *map(str, range(1, 21))]:
            catalog.put_item(Item={"item_id": item, "title": f"Film {item}", "genres": ["Drama"]})
        ledger = boto3.resource("dynamodb", region_name=pipe.region).Table(pipe.outputs["LedgerTableName"])

        def served_to(user: str) -> str:
            pipe.put_events(events(user), partition_key="user_id")
            assert pipe.pump().quiescent
            rows = ledger.query(KeyConditionExpression="user_id = :u", ExpressionAttributeValues={":u": user})
            assert len(rows["Items"]) == 1, rows
            return str(rows["Items"][0]["model_version"])

        # A fresh stack: no pointer, the committed model layer serves.
        assert served_to("u-fresh") == LAYER_DEFAULT
        status, listed = nudge(capsys, "models", "list", *where)
        assert status == 0 and listed == {"pointer": None, "versions": []}

        status, published = nudge(capsys, "models", "publish", str(build_registry_model(tmp_path / "a")), *where)
        assert status == 0
        a = published["published"]
        b_dir = build_registry_model(
            tmp_path / "b", created_at=datetime(2026, 2, 1, tzinfo=UTC), evaluation={"ndcg@10": 0.3}
        )
        b = nudge(capsys, "models", "publish", str(b_dir), *where)[1]["published"]
        assert nudge(capsys, "models", "promote", a, *where)[1]["after"]["champion"] == a
        time.sleep(TTL_SECONDS + 0.1)
        assert served_to("u-a") == a
        assert nudge(capsys, "models", "promote", b, *where)[1]["after"] == {
            "champion": b,
            "challenger": None,
            "challenger_share": 0.0,
            "previous": [a],
        }
        time.sleep(TTL_SECONDS + 0.1)
        assert served_to("u-b") == b
        status, listed = nudge(capsys, "models", "list", *where)
        assert {v["version"]: v["role"] for v in listed["versions"]} == {a: "previous", b: "champion"}
        status, compared = nudge(capsys, "models", "compare", a, b, *where)
        assert compared["metrics"]["evaluation.ndcg@10"] == {"a": 0.1, "b": 0.3, "delta": 0.2}
        assert compared["same_graph"] is False

        assert nudge(capsys, "models", "rollback", *where)[1]["after"]["champion"] == a
        time.sleep(TTL_SECONDS + 0.1)
        assert served_to("u-back") == a

        # How each version's decisions turned out, from the ledger: the versions that served, with their roles.
        status, read_out = nudge(capsys, "models", "outcomes", *where)
        assert status == 0
        assert {v: r["decisions"] for v, r in read_out["versions"].items()} == {LAYER_DEFAULT: 1, a: 2, b: 1}
        rows = ledger.scan()["Items"]
        for version, report in read_out["versions"].items():
            assert report["pushes"] == sum(r["model_version"] == version and r["action"] == "push" for r in rows)
        assert read_out["versions"][a]["role"] == "champion" and read_out["pointer"]["champion"] == a

        # Clear refusals, and the pointer is left as it was.
        status, err = nudge(capsys, "models", "rollback", *where)
        assert status == 2 and "nothing to roll back to" in err
        status, err = nudge(capsys, "models", "promote", "cooc-20990101-00000000.000000000000", *where)
        assert status == 2 and "has no manifest.json" in err
        wrong = build_registry_model(tmp_path / "wrong", calibrated_for="another-graph")
        status, err = nudge(capsys, "models", "publish", str(wrong), *where)
        assert status == 2 and "fitted for 'another-graph'" in err
        assert nudge(capsys, "models", "list", *where)[1]["pointer"]["champion"] == a
        status, err = nudge(capsys, "models", "list", "--stack-name", "no-such-stack")
        assert status == 2 and "no stack named 'no-such-stack'" in err
