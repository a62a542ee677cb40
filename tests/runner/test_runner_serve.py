"""`python -m runner serve` driven from this process over loopback, like a real client would."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.runner.runner_testlib import REPO_ROOT, SERVE_TEMPLATE
from tests.support.serve import endpoint_client, start_serve, stop, wait_ready

READY_TIMEOUT_S = 30.0
DELIVERY_TIMEOUT_S = 20.0


@pytest.mark.endpoint
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_serve_delivers_pushes_to_outbox(tmp_path: Path) -> None:
    outbox = ["--outbox", "toy-outbox", "--outbox-topic", "OutTopic"]
    proc, ready, err = start_serve(SERVE_TEMPLATE, "serve-test", tmp_path, REPO_ROOT, *outbox)
    try:
        info = wait_ready(proc, ready, err, READY_TIMEOUT_S)
        assert info["endpoint_url"].startswith("http://127.0.0.1:")
        assert info["functions"]["PublishFunction"].startswith("serve-test-PublishFunction-")
        assert info["resources"]["OutTopic"]["ref"] == info["outputs"]["TopicArn"]
        # The outbox the caller named, subscribed to the topic it named (by logical id).
        assert info["outbox_queue_url"].endswith("/toy-outbox")
        assert info["outbox_topics"] == [info["outputs"]["TopicArn"]]

        kinesis, sqs = endpoint_client("kinesis", info), endpoint_client("sqs", info)
        message = json.dumps({"user_id": "u1", "title": "hello"})
        kinesis.put_record(StreamName=info["outputs"]["StreamName"], Data=message.encode(), PartitionKey="u1")

        bodies: list[str] = []
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while not bodies and time.monotonic() < deadline:
            page = sqs.receive_message(QueueUrl=info["outbox_queue_url"], WaitTimeSeconds=1)
            bodies.extend(m["Body"] for m in page.get("Messages", []))
        assert bodies == [message], f"no push on the outbox; server log:\n{err.read_text()[-3000:]}"
    finally:
        stop(proc)
    assert proc.returncode == 0, err.read_text()[-3000:]
    # The handler ran in the serve process, its output captured in the per-function log.
    assert "REPORT RequestId:" in (tmp_path / "logs" / "PublishFunction.log").read_text()
