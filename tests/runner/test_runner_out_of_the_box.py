"""The commands exactly as runner/README.md shows them, from a shell without AWS settings (issue 14).

`serve` and `invoke DecideFunction` serve the default model (the template's /opt/model/... is
the model layer's source), and `erase` (the runner's alias and the project CLI) needs no credentials.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from testkit.serve import clean_env, daytime_zone, endpoint_client, stop, wait_ready
from tests.runner.runner_testlib import REPO_ROOT

pytestmark = pytest.mark.slow(seconds=12)

DEFAULT_MODEL = json.loads((REPO_ROOT / "layers/model/sasrec/int8/manifest.json").read_text())["version"]
ITEMS = [str(i) for i in range(1, 21)]
PUSH_TIMEOUT_S = 60.0


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, env=clean_env(), capture_output=True, text=True, timeout=300
    )


def events(user: str, now: datetime) -> list[dict[str, Any]]:
    stamp = (now - timedelta(minutes=1)).isoformat()
    profile = {"type": "profile", "consent": True, "timezone": daytime_zone(now), "push_token": f"tok-{user}"}
    rate = {"type": "rate", "item_id": "1", "value": 5}
    return [
        {"schema_version": 1, "event_id": f"{user}-{n}", "user_id": user, "timestamp": stamp, **body}
        for n, body in enumerate((profile, rate))
    ]


def test_invoke_decide_serves_the_default_model() -> None:
    done = run("runner", "invoke", "DecideFunction", "--event", "events/dynamodb-user-state-changed.json")
    # Before: ModelLoadError: /opt/model/sasrec/int8/manifest.json (the Lambda mount path).
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert json.loads(done.stdout) == {"batchItemFailures": []}
    assert "layers/model/sasrec/int8" in done.stderr


@pytest.mark.endpoint
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_serve_pushes_from_the_default_model_and_erase_needs_no_credentials(tmp_path: Path) -> None:
    ready, out, err = tmp_path / "ready.json", tmp_path / "serve.out", tmp_path / "serve.err"
    command = [sys.executable, "-m", "runner", "serve", "--port", "0", "--ready-file", str(ready)]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=clean_env(), stdout=stdout, stderr=stderr)
    try:
        info = wait_ready(proc, ready, err, 90.0)
        dynamodb, kinesis, sqs = (endpoint_client(s, info) for s in ("dynamodb", "kinesis", "sqs"))
        for item in ITEMS:
            dynamodb.put_item(
                TableName=info["outputs"]["CatalogTableName"],
                Item={"item_id": {"S": item}, "title": {"S": f"Film {item}"}, "genres": {"L": [{"S": "Drama"}]}},
            )
        now = datetime.now(UTC).replace(microsecond=0)
        for user in ("u-a", "u-b"):
            for event in events(user, now):
                kinesis.put_record(
                    StreamName=info["outputs"]["EventsStreamName"], Data=json.dumps(event).encode(), PartitionKey=user
                )
        pushes: list[dict[str, Any]] = []
        deadline = time.monotonic() + PUSH_TIMEOUT_S
        while len(pushes) < 2 and time.monotonic() < deadline:
            page = sqs.receive_message(QueueUrl=info["outbox_queue_url"], WaitTimeSeconds=1)
            pushes.extend(json.loads(m["Body"]) for m in page.get("Messages", []))
        assert {p["user_id"] for p in pushes} == {"u-a", "u-b"}, f"server log:\n{err.read_text()[-3000:]}"
        assert {p["model_version"] for p in pushes} == {DEFAULT_MODEL}
        for queue in ("IngestDeadLetterQueueUrl", "FeaturesDeadLetterQueueUrl", "DecideDeadLetterQueueUrl"):
            attributes = sqs.get_queue_attributes(QueueUrl=info["outputs"][queue], AttributeNames=["All"])
            assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0", queue

        # The runner's alias and the project CLI, each erasing one user, with no AWS_* in the environment.
        for command_module, user in (("runner", "u-a"), ("cli", "u-b")):
            done = run(command_module, "erase", "--user", user, "--ready-file", str(ready))
            assert done.returncode == 0, done.stderr[-3000:]
            report = json.loads(done.stdout)
            assert (report["users"], report["user_states"], report["decisions"]) == (1, 1, 1), report
        states = dynamodb.scan(TableName=info["outputs"]["UserStateTableName"])["Items"]
        assert states == []
    finally:
        stop(proc)
    assert proc.returncode == 0, err.read_text()[-3000:]
