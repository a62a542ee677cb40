"""`python -m runner serve` driven from this process over loopback, like a real client would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runner.runner_testlib import REPO_ROOT, SERVE_TEMPLATE
from tests.support.serve import endpoint_client, stop, wait_ready

READY_TIMEOUT_S = 30.0
DELIVERY_TIMEOUT_S = 20.0


@pytest.mark.endpoint
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_serve_delivers_pushes_to_outbox(tmp_path: Path) -> None:
    ready, out, err = tmp_path / "ready.json", tmp_path / "serve.out", tmp_path / "serve.err"
    cmd = [
        sys.executable,
        "-m",
        "runner",
        "serve",
        "--port",
        "0",
        "--template",
        str(SERVE_TEMPLATE),
        "--stack-name",
        "serve-test",
        "--ready-file",
        str(ready),
        "--log-dir",
        str(tmp_path / "logs"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=stdout, stderr=stderr)
    try:
        info = wait_ready(proc, ready, err, READY_TIMEOUT_S)
        assert info["endpoint_url"].startswith("http://127.0.0.1:")
        assert info["functions"] == {"PublishFunction": "serve-test-PublishFunction"}
        assert info["resources"]["OutTopic"]["ref"] == info["outputs"]["TopicArn"]

        kinesis, sqs = endpoint_client("kinesis", info), endpoint_client("sqs", info)
        message = json.dumps({"user_id": "u1", "title": "hello"})
        kinesis.put_record(StreamName=info["outputs"]["StreamName"], Data=message.encode(), PartitionKey="u1")

        bodies: list[str] = []
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while not bodies and time.monotonic() < deadline:
            page = sqs.receive_message(QueueUrl=info["push_outbox_queue_url"], WaitTimeSeconds=1)
            bodies.extend(m["Body"] for m in page.get("Messages", []))
        assert bodies == [message], f"no push on the outbox; server log:\n{err.read_text()[-3000:]}"
    finally:
        stop(proc)
    assert proc.returncode == 0, err.read_text()[-3000:]
    # The handler ran in the serve process, its output captured in the per-function log.
    assert "REPORT RequestId:" in (tmp_path / "logs" / "PublishFunction.log").read_text()
