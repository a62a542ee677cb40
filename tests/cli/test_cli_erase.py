"""`python -m cli erase` (and `python -m runner erase`, its alias): the erase command on a stack's outputs."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from cli.__main__ import main
from cli.erase import using_endpoint
from runner.__main__ import main as runner_main
from runner.pipeline import LocalPipeline
from shared.adapters.object_archive import ObjectArchive

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)


def profile(user: str) -> dict[str, object]:
    return {
        "schema_version": 1,
        "event_id": f"p-{user}",
        "user_id": user,
        "timestamp": T0.isoformat(),
        "type": "profile",
        "consent": False,
        "timezone": "UTC",
    }


def test_erase_removes_the_user_through_the_shared_service(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with LocalPipeline(
        ROOT / "template.yaml", stack_name="nudge-cli", functions=["IngestFunction", "FeaturesFunction"]
    ) as pipe:
        pipe.put_events([profile("u-a"), profile("u-b"), profile("u-c")], partition_key="user_id")
        assert pipe.pump().quiescent
        ready = tmp_path / "ready.json"
        ready.write_text(json.dumps(pipe.describe()))
        capsys.readouterr()  # the handlers' own output (metrics) so far
        assert main(["erase", "--user", "u-a", "--ready-file", str(ready)]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["users"] == 1 and report["user_states"] == 1 and report["lines_removed"] == 1
        # The runner's alias runs the same command.
        assert runner_main(["erase", "--user", "u-b", "--ready-file", str(ready)]) == 0
        assert json.loads(capsys.readouterr().out)["user_states"] == 1
        table = boto3.resource("dynamodb", region_name=pipe.region).Table(pipe.outputs["UserStateTableName"])
        assert sorted(i["user_id"] for i in table.scan()["Items"]) == ["u-c", "u-c#profile"]
        archive = ObjectArchive(pipe.client("s3"), pipe.outputs["ArchiveBucketName"])
        lines = [line for key in archive.keys("archive/") for line in archive.read_lines(key)]
        assert [line["event"]["user_id"] for line in lines] == ["u-c"]


def test_a_local_endpoint_gets_dummy_credentials_and_a_deployed_stack_the_callers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "caller-key")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "caller-token")
    monkeypatch.setenv("AWS_PROFILE", "caller-profile")
    with using_endpoint("http://127.0.0.1:4566", "us-east-1"):
        assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
        assert os.environ["AWS_ACCESS_KEY_ID"] == "local" and os.environ["AWS_SECRET_ACCESS_KEY"] == "local"
        assert "AWS_SESSION_TOKEN" not in os.environ and "AWS_PROFILE" not in os.environ
    for endpoint in (None, "https://vpce-1.dynamodb.eu-west-1.vpce.amazonaws.com"):
        with using_endpoint(endpoint, "eu-west-1"):
            assert os.environ["AWS_ACCESS_KEY_ID"] == "caller-key" and os.environ["AWS_PROFILE"] == "caller-profile"
    # Nothing leaks out of the command.
    assert (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SESSION_TOKEN"]) == ("caller-key", "caller-token")
    assert "AWS_ENDPOINT_URL" not in os.environ
