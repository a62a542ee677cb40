"""`python -m runner serve` driven from this process over loopback, like a real client would."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runner.server import one_request_at_a_time
from testkit.serve import endpoint_client, start_serve, stop, wait_ready
from tests.runner.runner_testlib import REPO_ROOT, SERVE_TEMPLATE

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


def test_the_endpoint_applies_one_request_at_a_time() -> None:
    # Four threads call the wrapped app at once; none may enter while another is inside (moto has no locks).
    inside, most = 0, 0
    guard = threading.Lock()

    def app(environ: Any, start_response: Any) -> list[bytes]:
        nonlocal inside, most
        with guard:
            inside += 1
            most = max(most, inside)
        time.sleep(0.01)
        with guard:
            inside -= 1
        return [b"ok"]

    wrapped = one_request_at_a_time(app)
    threads = [threading.Thread(target=wrapped, args=({}, None)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 1
    # A long poll (moto waits inside SQS ReceiveMessage) does not hold the others up.
    poll = {"HTTP_X_AMZ_TARGET": "AmazonSQS.ReceiveMessage"}
    threads = [threading.Thread(target=wrapped, args=(poll, None)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most > 1
