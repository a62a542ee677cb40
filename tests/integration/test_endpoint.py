"""The real pipeline behind `python -m runner serve`, driven from this process with boto3.

A client in another process puts app events on the stream (as a producer would, through the
moto server on 127.0.0.1) and receives the push on the outbox queue subscribed to the topic.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.serve import daytime_zone, endpoint_client, start_serve, stop, wait_ready
from tests.support.tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]
ITEMS = [str(i) for i in range(1, 9)]
READY_TIMEOUT_S = 60.0
PUSH_TIMEOUT_S = 60.0


@pytest.mark.endpoint
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_a_client_in_another_process_sends_events_and_receives_the_push(tmp_path: Path) -> None:
    model_dir = build_tiny_model(tmp_path / "model", vocab=ITEMS)
    proc, ready, err = start_serve(
        ROOT / "template.yaml", "nudge-endpoint", tmp_path, ROOT, "--env", f"DecideFunction.MODEL_DIR={model_dir}"
    )
    try:
        info = wait_ready(proc, ready, err, READY_TIMEOUT_S)
        dynamodb = endpoint_client("dynamodb", info)
        for item in ITEMS:
            dynamodb.put_item(
                TableName=info["outputs"]["CatalogTableName"],
                Item={"item_id": {"S": item}, "title": {"S": f"Film {item}"}, "genres": {"L": [{"S": "Drama"}]}},
            )
        now = datetime.now(UTC).replace(microsecond=0)
        stamp = (now - timedelta(minutes=1)).isoformat()
        events = [
            {
                "schema_version": 1,
                "event_id": "ep-1",
                "type": "profile",
                "user_id": "u-42",
                "timestamp": stamp,
                "consent": True,
                "timezone": daytime_zone(now),
                "push_token": "tok-42",
            },
            {
                "schema_version": 1,
                "event_id": "ep-2",
                "type": "rate",
                "user_id": "u-42",
                "item_id": "1",
                "value": 5,
                "timestamp": stamp,
            },
        ]
        kinesis = endpoint_client("kinesis", info)
        for event in events:
            kinesis.put_record(
                StreamName=info["outputs"]["EventsStreamName"], Data=json.dumps(event).encode(), PartitionKey="u-42"
            )
        sqs = endpoint_client("sqs", info)
        pushes: list[dict[str, Any]] = []
        deadline = time.monotonic() + PUSH_TIMEOUT_S
        while not pushes and time.monotonic() < deadline:
            page = sqs.receive_message(QueueUrl=info["outbox_queue_url"], WaitTimeSeconds=1)
            pushes.extend(json.loads(m["Body"]) for m in page.get("Messages", []))
        assert pushes, f"no push arrived; server log:\n{err.read_text()[-3000:]}"
        push = pushes[0]
        assert push["user_id"] == "u-42" and push["push_token"] == "tok-42" and push["item_id"] in ITEMS
        assert push["item_id"] != "1"  # never the item the user just rated
        # The ledger is marked sent right after the publish; give the server a moment.
        status = ""
        deadline = time.monotonic() + 10
        while status != "sent" and time.monotonic() < deadline:
            row = dynamodb.get_item(
                TableName=info["outputs"]["LedgerTableName"],
                Key={"user_id": {"S": "u-42"}, "decision_id": {"S": push["decision_id"]}},
            )
            status = row.get("Item", {}).get("status", {}).get("S", "")
            time.sleep(0.1)
        assert status == "sent"
    finally:
        stop(proc)
