"""`python -m runner erase`: the erase CLI against a stack's outputs (a ready file here)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from runner.__main__ import main
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


def test_erase_cli_removes_the_user_through_the_shared_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with LocalPipeline(
        ROOT / "template.yaml", stack_name="nudge-cli", functions=["IngestFunction", "FeaturesFunction"]
    ) as pipe:
        pipe.put_events([profile("u-a"), profile("u-b")], partition_key="user_id")
        assert pipe.pump().quiescent
        ready = tmp_path / "ready.json"
        ready.write_text(json.dumps(pipe.describe()))
        capsys.readouterr()  # the handlers' own output (metrics) so far
        assert main(["erase", "--user", "u-a", "--ready-file", str(ready)]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["users"] == 1 and report["user_states"] == 1 and report["lines_removed"] == 1
        table = boto3.resource("dynamodb", region_name=pipe.region).Table(pipe.outputs["UserStateTableName"])
        assert [i["user_id"] for i in table.scan()["Items"]] == ["u-b"]
        archive = ObjectArchive(pipe.client("s3"), pipe.outputs["ArchiveBucketName"])
        lines = [line for key in archive.keys("archive/") for line in archive.read_lines(key)]
        assert [line["event"]["user_id"] for line in lines] == ["u-b"]
