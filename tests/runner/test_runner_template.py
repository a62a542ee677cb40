"""Template reading and resolution, against the real template.yaml and the toy one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from runner.pipeline import LocalPipeline
from runner.template import TemplateError, load_template, load_yaml, merge_globals
from tests.runner.runner_testlib import REAL_TEMPLATE, REPO_ROOT, TOY_TEMPLATE

REAL_FUNCTIONS = {
    "IngestFunction": "functions/ingest",
    "FeaturesFunction": "functions/features",
    "DecideFunction": "functions/decide",
    "FeedbackFunction": "functions/feedback",
}


def test_short_tags_become_long_form(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "A: !Ref Thing\n"
        "B: !GetAtt Table.StreamArn\n"
        "C: !Sub '${AWS::StackName}-x'\n"
        "D: !If [Cond, !Ref X, !Ref AWS::NoValue]\n"
        "E: !Join ['-', [a, !Ref Y]]\n"
        "F: !GetAtt [Res, Arn]\n"
    )
    data = load_yaml(path)
    assert data["A"] == {"Ref": "Thing"}
    assert data["B"] == {"Fn::GetAtt": ["Table", "StreamArn"]}
    assert data["C"] == {"Fn::Sub": "${AWS::StackName}-x"}
    assert data["D"] == {"Fn::If": ["Cond", {"Ref": "X"}, {"Ref": "AWS::NoValue"}]}
    assert data["E"] == {"Fn::Join": ["-", ["a", {"Ref": "Y"}]]}
    assert data["F"] == {"Fn::GetAtt": ["Res", "Arn"]}


def test_globals_merge_like_sam() -> None:
    merged = merge_globals(
        {"Timeout": 60, "Layers": ["A"], "Environment": {"Variables": {"X": "1", "Y": "1"}}},
        {"Timeout": 5, "Layers": ["B"], "Environment": {"Variables": {"Y": "2"}}},
    )
    assert merged == {"Timeout": 5, "Layers": ["A", "B"], "Environment": {"Variables": {"X": "1", "Y": "2"}}}


def test_real_template_functions_and_event_sources() -> None:
    template = load_template(REAL_TEMPLATE)
    # Erase has no event source: it is invoked (asynchronously) with the users to erase.
    assert set(template.functions) == {*REAL_FUNCTIONS, "EraseFunction"}
    erase = template.functions["EraseFunction"]
    assert erase.events == () or list(erase.events) == []
    assert erase.code_dir == (REPO_ROOT / "functions/erase").resolve() and erase.timeout_s == 900
    for fid, code in REAL_FUNCTIONS.items():
        spec = template.functions[fid]
        assert spec.handler == "app.lambda_handler"
        assert spec.handler_module == "app" and spec.handler_function == "lambda_handler"
        assert spec.code_dir == (REPO_ROOT / code).resolve()
        assert spec.handler_file == spec.code_dir / "app.py"
        assert spec.runtime == "python3.12"
        assert spec.timeout_s == 60
        # Globals environment is merged under each function's own.
        assert spec.environment["POWERTOOLS_METRICS_NAMESPACE"] == "Nudge"
        assert spec.environment["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
        assert "POWERTOOLS_SERVICE_NAME" in spec.environment
        streams = [e for e in spec.events if e.kind in ("kinesis", "dynamodb")]
        assert streams, f"{fid} has no stream event source"
        for event in streams:
            assert event.batch_size == 100
            # The push path (features, decide) waits 1 s; archive and feedback batch for 30 s (docs/cost.md).
            assert event.batching_window_s == (30.0 if fid in ("IngestFunction", "FeedbackFunction") else 1.0)
            assert event.starting_position == "TRIM_HORIZON"
            assert event.bisect_on_error is True
            assert event.max_retries == 5
            assert event.reports_item_failures
            assert event.on_failure_logical_id is not None
            assert event.on_failure_logical_id.endswith("DeadLetterQueue")
    assert template.functions["DecideFunction"].memory_mb == 1024
    assert template.functions["IngestFunction"].memory_mb == 512

    ingest = template.functions["IngestFunction"].events[0]
    assert (ingest.kind, ingest.source_logical_id, ingest.max_record_age_s) == (
        "kinesis",
        "EventsStream",
        86400,
    )
    assert ingest.filter_patterns == ()

    # Every stream consumer reads every record (each claims every event id, shared/admission.py).
    assert all(template.functions[f].events[0].filter_patterns == () for f in ("FeaturesFunction", "FeedbackFunction"))

    decide = {e.name: e for e in template.functions["DecideFunction"].events}
    assert decide["UserStateChanged"].kind == "dynamodb"
    assert decide["UserStateChanged"].source_logical_id == "UserStateTable"
    assert decide["UserStateChanged"].max_record_age_s == 3600
    pattern = decide["UserStateChanged"].filter_patterns[0]
    assert pattern["eventName"] == ["INSERT", "MODIFY"]
    assert decide["DueSweep"].kind == "schedule"
    assert decide["DueSweep"].schedule_expression == "rate(5 minutes)"


def test_real_template_parameters_and_overrides() -> None:
    defaults = load_template(REAL_TEMPLATE).parameters
    assert defaults["ShardCount"] == "2"
    assert defaults["LogLevel"] == "INFO"
    assert defaults["ModelS3Uri"] == ""
    overridden = load_template(REAL_TEMPLATE, {"ShardCount": 3, "LogLevel": "DEBUG"}).parameters
    assert overridden["ShardCount"] == "3" and overridden["LogLevel"] == "DEBUG"
    with pytest.raises(TemplateError, match="AllowedValues"):
        load_template(REAL_TEMPLATE, {"LogLevel": "LOUD"})
    with pytest.raises(TemplateError, match="unknown parameter"):
        load_template(REAL_TEMPLATE, {"NoSuchParameter": 1})


def test_real_template_resources_env_and_outputs() -> None:
    with LocalPipeline(REAL_TEMPLATE, stack_name="nudge-test", parameter_overrides={"ShardCount": 3}) as p:
        res = p.resources
        kinesis = p.client("kinesis")
        summary = kinesis.describe_stream_summary(StreamName=res["EventsStream"].ref)["StreamDescriptionSummary"]
        assert summary["OpenShardCount"] == 3
        assert summary["StreamARN"] == res["EventsStream"].arn

        ddb = p.client("dynamodb")
        user_state = ddb.describe_table(TableName="nudge-test-UserStateTable")["Table"]
        assert user_state["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
        assert user_state["GlobalSecondaryIndexes"][0]["IndexName"] == "due-index"
        assert res["UserStateTable"].attributes["StreamArn"] == user_state["LatestStreamArn"]
        ttl = ddb.describe_time_to_live(TableName=res["LedgerTable"].ref)["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}

        bucket = res["ArchiveBucket"].ref
        assert bucket == "nudge-test-archivebucket"
        assert p.client("s3").get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"

        topics = p.client("sns").list_topics()["Topics"]
        assert {"TopicArn": res["PushTopic"].ref} in topics
        assert res["PushTopic"].attributes["TopicName"] == "nudge-test-PushTopic"

        sqs = p.client("sqs")
        for name in ("Ingest", "Features", "Decide", "Feedback"):
            url = res[f"{name}DeadLetterQueue"].ref
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            assert attrs["MessageRetentionPeriod"] == "1209600"
            assert p.outputs[f"{name}DeadLetterQueueUrl"] == url

        # Every template Output resolved to a plain string.
        assert set(p.stack.outputs) == set(p.template.outputs)
        assert p.outputs["EventsStreamName"] == "nudge-test-EventsStream"
        assert p.outputs["EventsStreamArn"] == res["EventsStream"].arn
        assert p.outputs["PushTopicArn"] == res["PushTopic"].ref

        # Every function's environment is fully resolved to strings (nothing left as an intrinsic).
        for fid, container in p.containers.items():
            env = container.environment
            assert all(v is None or isinstance(v, str) for v in env.values()), fid
            assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
            assert env["AWS_LAMBDA_FUNCTION_NAME"] == f"nudge-test-{fid}"
            assert env["AWS_ACCOUNT_ID_ENDPOINT_MODE"] == "disabled"
            assert env["POWERTOOLS_TRACE_DISABLED"] == "true"
        assert p.containers["IngestFunction"].environment["ARCHIVE_BUCKET"] == bucket
        decide = p.containers["DecideFunction"].environment
        assert decide["USER_STATE_TABLE"] == "nudge-test-UserStateTable"
        assert decide["PUSH_TOPIC_ARN"] == res["PushTopic"].ref
        assert decide["DAILY_PUSH_CAP"] == "3"
        assert decide["SCORE_THRESHOLD"] == "0.0"
        # The transformer is served by default; the parameter picks another artifact of the layer.
        assert decide["MODEL_DIR"] == "/opt/model/sasrec/int8"

        # Mappings wired to the physical sources and destinations; nothing imported yet.
        assert set(p.stream_mappings) == {
            "IngestFunction.Stream",
            "FeaturesFunction.Stream",
            "FeedbackFunction.Stream",
            "DecideFunction.UserStateChanged",
        }
        assert set(p.schedules) == {"DecideFunction.DueSweep"}
        assert p.stream_mappings["DecideFunction.UserStateChanged"].source_arn == user_state["LatestStreamArn"]
        ingest_dest = p.stream_mappings["IngestFunction.Stream"].destination
        assert ingest_dest is not None and ingest_dest.arn == res["IngestDeadLetterQueue"].arn
        assert not any(c.warm for c in p.containers.values())


@pytest.mark.parametrize(("served", "model_dir"), [("cooccurrence", "/opt/model"), ("sasrec", "/opt/model/sasrec")])
def test_served_model_parameter_picks_the_layer_artifact(served: str, model_dir: str) -> None:
    with LocalPipeline(REAL_TEMPLATE, stack_name="nudge-test", parameter_overrides={"ServedModel": served}) as p:
        assert p.containers["DecideFunction"].environment["MODEL_DIR"] == model_dir


def test_model_dir_override_and_unknown_function() -> None:
    overrides = {"DecideFunction": {"MODEL_DIR": "/tmp/model"}, "*": {"EXTRA": "1"}}
    with LocalPipeline(REAL_TEMPLATE, env_overrides=overrides) as p:
        assert p.containers["DecideFunction"].environment["MODEL_DIR"] == "/tmp/model"
        assert p.containers["IngestFunction"].environment["EXTRA"] == "1"
    with pytest.raises(TemplateError, match="unknown function"):
        LocalPipeline(REAL_TEMPLATE, env_overrides={"NopeFunction": {"X": "1"}})


def test_toy_conditions_sub_and_works_inside_callers_mock(record_file: Path) -> None:
    env: Any = {"*": {"RECORD_FILE": str(record_file)}}
    with mock_aws():
        # The caller's own moto state stays visible: the pipeline nests inside the active mock.
        boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="callers-queue")
        with LocalPipeline(TOY_TEMPLATE, stack_name="toy", functions=["BatchFunction"], env_overrides=env) as p:
            assert any("callers-queue" in url for url in p.client("sqs").list_queues()["QueueUrls"])
            subbed = p.containers["BatchFunction"].environment["SUBBED"]
            assert subbed == f"toy/toy-ToyTable/{p.resources['ToyStream'].arn}/${{Literal}}"
            assert p.outputs["TopicArn"] == p.resources["ToyTopic"].ref
        # Closing the nested pipeline did not tear down the caller's mock.
        assert boto3.client("sqs", region_name="us-east-1").list_queues()["QueueUrls"]
    with LocalPipeline(TOY_TEMPLATE, parameter_overrides={"UseTopic": "no"}, functions=["TableFunction"]) as p:
        assert "ToyTopic" in p.stack.skipped
        assert "TopicArn" not in p.stack.outputs
