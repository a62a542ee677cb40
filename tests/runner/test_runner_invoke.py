"""Function containers (cold start, environment, isolation, logs), schedules and the invoke CLI."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runner.__main__ import main
from runner.clock import SimulatedClock
from runner.schedules import parse_rate
from tests.runner.runner_testlib import TOY_TEMPLATE

Invocations = Callable[..., list[dict[str, Any]]]


def test_schedule_fires_when_due_on_simulated_clock(toy: Any, read_invocations: Invocations) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    clock = SimulatedClock(start)
    p = toy("TickFunction", clock=clock)
    assert p.tick(start + timedelta(minutes=4)) == 0
    assert p.tick(start + timedelta(minutes=5)) == 1
    assert p.tick(start + timedelta(minutes=20)) == 3
    assert p.tick() == 0
    assert clock.now() == (start + timedelta(minutes=20)).timestamp()

    invs = read_invocations("TickFunction")
    assert [i["event"]["time"] for i in invs] == [
        "2024-01-01T00:05:00Z",
        "2024-01-01T00:10:00Z",
        "2024-01-01T00:15:00Z",
        "2024-01-01T00:20:00Z",
    ]
    event = invs[0]["event"]
    assert set(event) == {
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    }
    assert (event["detail-type"], event["source"], event["detail"]) == ("Scheduled Event", "aws.events", {})
    assert (event["account"], event["region"]) == ("123456789012", "us-east-1")
    # The rule CloudFormation created for the function's Schedule event.
    assert event["resources"] == [p.resources["TickFunctionSweep"].arn]
    assert p.resources["TickFunctionSweep"].type == "AWS::Events::Rule"
    stats = p.stats().mappings["TickFunction.Sweep"]
    assert (stats.schedules_fired, stats.invocations, stats.function_errors) == (4, 4, 0)


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(2 hours)", 7200), ("rate(1 day)", 86400)],
)
def test_parse_rate(expression: str, seconds: float) -> None:
    assert parse_rate(expression) == seconds


@pytest.mark.parametrize("expression", ["rate(1 minutes)", "rate(5 minute)", "rate(0 minutes)", "cron(0 * * * ? *)"])
def test_parse_rate_rejects(expression: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(expression)


def test_cold_start_once_env_only_during_invocation_and_isolated_modules(toy: Any) -> None:
    p = toy("BatchFunction", "TableFunction")
    assert "GREETING" not in os.environ
    first = p.invoke("BatchFunction", {"hello": 1})
    second = p.invoke("BatchFunction", {"hello": 2})
    assert first.ok and second.ok
    assert first.response == {"service": "batch", "greeting": "hello"}
    assert first.request_id != second.request_id
    assert p.stats().functions["BatchFunction"].cold_starts == 1
    # Each function imported its own copy of the project module (read its own env at import).
    assert p.invoke("TableFunction", {}).response == {"service": "table", "greeting": "hello"}
    assert "GREETING" not in os.environ
    assert "toylib" not in sys.modules


def test_handler_error_payload(toy: Any) -> None:
    p = toy("BatchFunction")
    data = base64.b64encode(json.dumps({"id": 9, "action": "raise"}).encode()).decode()
    event = {"Records": [{"kinesis": {"data": data, "sequenceNumber": "1"}}]}
    result = p.invoke("BatchFunction", event)
    assert not result.ok
    payload = result.error_payload()
    assert (payload["errorType"], payload["errorMessage"]) == ("RuntimeError", "poison record 9")
    assert payload["stackTrace"] and all("runner/lambda_invoke.py" not in frame for frame in payload["stackTrace"])
    assert any("recorder/app.py" in frame for frame in payload["stackTrace"])
    assert p.stats().functions["BatchFunction"].errors == 1


def test_import_error_is_a_function_error_and_stays_cold(toy: Any) -> None:
    p = toy("BrokenFunction")
    for _ in range(2):
        result = p.invoke("BrokenFunction", {})
        assert not result.ok
        assert result.error_type is not None and result.error_type.startswith("Runtime.ImportModuleError")
        assert "cannot be imported" in (result.error_message or "")
    assert not p.containers["BrokenFunction"].warm


def test_handler_output_goes_to_per_function_log(toy: Any, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    p = toy("BatchFunction", log_dir=logs)
    p.invoke("BatchFunction", {})
    p.invoke("BatchFunction", {})
    text = (logs / "BatchFunction.log").read_text()
    assert text.count("START RequestId:") == 2 and text.count("END RequestId:") == 2
    assert text.count('"message": "handled"') == 2
    reports = [line for line in text.splitlines() if line.startswith("REPORT")]
    assert len(reports) == 2 and "Init Duration" in reports[0] and "Init Duration" not in reports[1]
    assert "Memory Size: 128 MB" in reports[0]


def test_cli_invoke_prints_response(tmp_path: Path, record_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps({"ping": True}))
    common = ["--template", str(TOY_TEMPLATE), "--stack-name", "cli", "--env", f"RECORD_FILE={record_file}"]
    code = main(["invoke", "BatchFunction", "--event", str(event_file), *common, "--param", "Greeting=hi"])
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {"service": "batch", "greeting": "hi"}
    code = main(["invoke", "TableFunction", "-e", str(event_file), *common, "--env", "TableFunction.GREETING=yo"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["greeting"] == "yo"
    assert json.loads(record_file.read_text().splitlines()[0])["event"] == {"ping": True}
    assert main(["invoke", "BrokenFunction", "--event", str(event_file), *common]) == 1
    assert json.loads(capsys.readouterr().out)["errorType"].startswith("Runtime.ImportModuleError")


def test_schedule_clock_jump_fires_latest_only(toy: Any, read_invocations: Invocations) -> None:
    clock = SimulatedClock(0.0)
    p = toy("TickFunction", clock=clock)
    assert p.tick(datetime(2024, 1, 1, tzinfo=UTC)) == 1
    (inv,) = read_invocations("TickFunction")
    assert inv["event"]["time"] == "2024-01-01T00:00:00Z"
    assert p.stats().mappings["TickFunction.Sweep"].schedules_skipped > 1000


def test_loggers_from_an_earlier_pipeline_write_to_the_current_log(toy: Any, tmp_path: Path) -> None:
    first = toy("BatchFunction", log_dir=tmp_path / "first")
    first.invoke("BatchFunction", {})
    first.close()
    second = toy("BatchFunction", log_dir=tmp_path / "second", stack_name="toy2")
    second.invoke("BatchFunction", {})
    line = "logged through a handler bound at import"
    assert (tmp_path / "first" / "BatchFunction.log").read_text().count(line) == 1
    assert (tmp_path / "second" / "BatchFunction.log").read_text().count(line) == 1
