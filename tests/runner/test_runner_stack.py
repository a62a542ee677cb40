"""The stack: deployed through aws-sam-translator and moto's CloudFormation, functions read back from it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from runner.deploy import TemplateError, load_yaml
from runner.pipeline import LocalPipeline
from runner.specs import mount_layers
from tests.runner.runner_testlib import REAL_TEMPLATE, REPO_ROOT, TOY_TEMPLATE

REAL_FUNCTIONS = {
    "IngestFunction": "functions/ingest",
    "FeaturesFunction": "functions/features",
    "DecideFunction": "functions/decide",
    "FeedbackFunction": "functions/feedback",
    "CatalogFunction": "functions/catalog",
}
# Seconds each stream consumer waits to fill a batch: the push path (features, decide) 1 s, archive and
# feedback 30 s (docs/cost.md), catalog 5 s (new items are not on the push path, but soon wanted).
BATCHING_WINDOW_S = {"IngestFunction": 30.0, "FeedbackFunction": 30.0, "CatalogFunction": 5.0}
MODEL_LAYER = REPO_ROOT / "layers" / "model"


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


def test_real_template_functions_and_event_sources_as_deployed() -> None:
    with LocalPipeline(REAL_TEMPLATE, stack_name="nudge-test") as p:
        # Erase has no event source: it is invoked (asynchronously) with the users to erase.
        assert set(p.functions) == {*REAL_FUNCTIONS, "EraseFunction"}
        erase = p.functions["EraseFunction"]
        assert erase.events == () and erase.code_dir == REPO_ROOT / "functions/erase" and erase.timeout_s == 900
        for fid, code in REAL_FUNCTIONS.items():
            spec = p.functions[fid]
            assert spec.handler == "app.lambda_handler" and spec.handler_file == REPO_ROOT / code / "app.py"
            assert (spec.runtime, spec.timeout_s) == ("python3.12", 60)
            # Globals were merged by the SAM transform: the environment and the two shared layers.
            assert spec.environment["POWERTOOLS_METRICS_NAMESPACE"] == "Nudge"
            assert spec.environment["POWERTOOLS_LOG_LEVEL"] == "INFO"
            assert spec.layer_dirs[:2] == (REPO_ROOT / "layers/dependencies", REPO_ROOT / "shared")
            streams = [e for e in spec.events if e.kind in ("kinesis", "dynamodb")]
            assert streams, f"{fid} has no stream event source"
            for event in streams:
                assert event.batch_size == 100
                assert event.batching_window_s == BATCHING_WINDOW_S.get(fid, 1.0)
                assert (event.starting_position, event.bisect_on_error, event.max_retries) == ("TRIM_HORIZON", True, 5)
                assert event.reports_item_failures
                dlq = p.resources[fid.removesuffix("Function") + "DeadLetterQueue"]
                assert event.on_failure_arn == dlq.arn
        assert (p.functions["DecideFunction"].memory_mb, p.functions["IngestFunction"].memory_mb) == (1024, 512)
        assert p.functions["DecideFunction"].layer_dirs[-1] == MODEL_LAYER
        # The encoder layer is the catalog function's alone (decide never loads the encoder).
        encoder = REPO_ROOT / "layers" / "encoder"
        assert [fid for fid, spec in p.functions.items() if encoder in spec.layer_dirs] == ["CatalogFunction"]
        assert p.functions["CatalogFunction"].layer_dirs[-1] == encoder

        ingest = p.stream_mappings["IngestFunction.Stream"].spec
        assert (ingest.kind, ingest.source_arn, ingest.max_record_age_s) == (
            "kinesis",
            p.resources["EventsStream"].arn,
            86400,
        )
        # Every stream consumer reads every record (each claims every event id); decide filters, and the
        # catalog function reads catalog events only.
        assert all(
            p.stream_mappings[f"{f}.Stream"].spec.filter_patterns == ()
            for f in ("IngestFunction", "FeaturesFunction", "FeedbackFunction")
        )
        assert p.stream_mappings["CatalogFunction.Stream"].spec.filter_patterns == ('{"data": {"type": ["catalog"]}}',)
        decide = p.stream_mappings["DecideFunction.UserStateChanged"].spec
        assert decide.kind == "dynamodb" and decide.max_record_age_s == 3600
        assert decide.source_arn == p.resources["UserStateTable"].attributes["StreamArn"]
        assert '"eventName": ["INSERT", "MODIFY"]' in decide.filter_patterns[0]
        sweep = p.schedules["DecideFunction.DueSweep"].spec
        assert sweep.schedule_expression == "rate(5 minutes)"
        assert sweep.rule_arn == p.client("events").list_rules()["Rules"][0]["Arn"]
        assert not any(c.warm for c in p.containers.values())


def test_parameters_reach_the_stack_and_bad_ones_are_refused() -> None:
    with LocalPipeline(REAL_TEMPLATE, stack_name="nudge-test", parameter_overrides={"ShardCount": 3}) as p:
        kinesis = p.client("kinesis")
        summary = kinesis.describe_stream_summary(StreamName=p.outputs["EventsStreamName"])["StreamDescriptionSummary"]
        assert summary["OpenShardCount"] == 3
        assert p.stack.parameters["ShardCount"] == "3" and p.stack.parameters["LogLevel"] == "INFO"
    with pytest.raises(TemplateError, match="AllowedValues"):
        LocalPipeline(REAL_TEMPLATE, parameter_overrides={"LogLevel": "LOUD"})
    with pytest.raises(TemplateError, match="unknown parameter"):
        LocalPipeline(REAL_TEMPLATE, parameter_overrides={"NoSuchParameter": 1})


def test_real_template_resources_env_and_outputs() -> None:
    with LocalPipeline(REAL_TEMPLATE, stack_name="nudge-test") as p:
        res, out = p.resources, p.outputs
        ddb = p.client("dynamodb")
        user_state = ddb.describe_table(TableName=out["UserStateTableName"])["Table"]
        assert user_state["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
        assert user_state["GlobalSecondaryIndexes"][0]["IndexName"] == "due-index"
        # Applied by the runner where moto's CloudFormation drops them (see stack.apply_dropped_properties).
        ttl = ddb.describe_time_to_live(TableName=res["LedgerTable"].ref)["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
        # Names as CloudFormation makes them: stack, logical id, a random suffix.
        assert re.fullmatch(r"nudge-test-UserStateTable-[A-Z0-9]+", out["UserStateTableName"])
        assert re.fullmatch(r"nudge-test-archivebucket-[a-z0-9]+", out["ArchiveBucketName"])
        assert p.client("s3").get_bucket_versioning(Bucket=out["ArchiveBucketName"])["Status"] == "Enabled"
        assert {"TopicArn": out["PushTopicArn"]} in p.client("sns").list_topics()["Topics"]
        for name in ("Ingest", "Features", "Decide", "Feedback"):
            url = out[f"{name}DeadLetterQueueUrl"]
            attrs = p.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            assert attrs["MessageRetentionPeriod"] == "1209600" and res[f"{name}DeadLetterQueue"].ref == url
        assert set(p.stack.outputs) == set(load_yaml(REAL_TEMPLATE)["Outputs"])
        # What moto's CloudFormation does not create is reported, not hidden.
        assert any(r.startswith("ModelLayer") for r in p.stack.skipped)

        # Every function's environment is what the stack gave it, strings only.
        for fid, container in p.containers.items():
            env = container.environment
            assert all(v is None or isinstance(v, str) for v in env.values()), fid
            assert env["AWS_LAMBDA_FUNCTION_NAME"] == res[fid].ref and re.match(f"nudge-test-{fid}-", res[fid].ref)
            assert env["AWS_ACCOUNT_ID_ENDPOINT_MODE"] == "disabled" and env["POWERTOOLS_TRACE_DISABLED"] == "true"
        assert p.containers["IngestFunction"].environment["ARCHIVE_BUCKET"] == out["ArchiveBucketName"]
        decide = p.containers["DecideFunction"].environment
        assert (
            decide["USER_STATE_TABLE"] == out["UserStateTableName"] and decide["PUSH_TOPIC_ARN"] == out["PushTopicArn"]
        )
        assert (decide["DAILY_PUSH_CAP"], decide["SCORE_THRESHOLD"]) == ("3", "0.0")


@pytest.mark.parametrize(
    ("served", "model_dir"),
    [("sasrec/int8", MODEL_LAYER / "sasrec/int8"), ("cooccurrence", MODEL_LAYER), ("sasrec", MODEL_LAYER / "sasrec")],
)
def test_served_model_is_found_in_the_model_layer_source(served: str, model_dir: Path) -> None:
    # The template says /opt/model[/...]: Lambda's mount of the model layer, here its source directory.
    with LocalPipeline(REAL_TEMPLATE, parameter_overrides={"ServedModel": served}, functions=["DecideFunction"]) as p:
        assert p.containers["DecideFunction"].environment["MODEL_DIR"] == str(model_dir)
        assert (model_dir / "manifest.json").is_file()


def test_layer_mount_paths_map_to_layer_sources(tmp_path: Path) -> None:
    laid_out, named = tmp_path / "deps", tmp_path / "model"
    (laid_out / "python" / "lib").mkdir(parents=True)
    (named / "v2").mkdir(parents=True)
    (tmp_path / "later" / "model" / "v2").mkdir(parents=True)
    env = {
        "LIB": "/opt/python/lib",  # the source is laid out as the archive: python/ ...
        "MODEL": "/opt/model/v2",  # the build copies the source directory under its own name
        "MISSING": "/opt/model/v3",  # no layer holds it: left as Lambda would see it
        "OTHER": "/tmp/x",
    }
    mounted = mount_layers("F", env, [laid_out, named])
    assert mounted == {**env, "LIB": str(laid_out / "python/lib"), "MODEL": str(named / "v2")}
    # Layers are extracted in order, so a later one holding the path wins.
    assert mount_layers("F", env, [named, tmp_path / "later"])["MODEL"] == str(tmp_path / "later/model/v2")


def test_env_overrides_win_and_unknown_functions_are_refused() -> None:
    overrides = {"DecideFunction": {"MODEL_DIR": "/tmp/model"}, "*": {"EXTRA": "1"}}
    with LocalPipeline(REAL_TEMPLATE, env_overrides=overrides, functions=["DecideFunction", "IngestFunction"]) as p:
        assert p.containers["DecideFunction"].environment["MODEL_DIR"] == "/tmp/model"
        assert p.containers["IngestFunction"].environment["EXTRA"] == "1"
    with pytest.raises(TemplateError, match="unknown function"):
        LocalPipeline(REAL_TEMPLATE, env_overrides={"NopeFunction": {"X": "1"}})
    with pytest.raises(TemplateError, match="no such function"):
        LocalPipeline(REAL_TEMPLATE, functions=["NopeFunction"])


def test_toy_conditions_sub_and_works_inside_callers_mock(record_file: Path) -> None:
    env: Any = {"*": {"RECORD_FILE": str(record_file)}}
    with mock_aws():
        # The caller's own moto state stays visible: the pipeline nests inside the active mock.
        boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="callers-queue")
        with LocalPipeline(TOY_TEMPLATE, stack_name="toy", functions=["BatchFunction"], env_overrides=env) as p:
            assert any("callers-queue" in url for url in p.client("sqs").list_queues()["QueueUrls"])
            subbed = p.containers["BatchFunction"].environment["SUBBED"]
            assert subbed == f"toy/{p.resources['ToyTable'].ref}/{p.resources['ToyStream'].arn}/${{Literal}}"
            assert p.outputs["TopicArn"] == p.resources["ToyTopic"].ref
            # Code and handler came from Globals (CodeUri, Handler), merged by the SAM transform.
            assert p.functions["BatchFunction"].code_dir == TOY_TEMPLATE.parent / "recorder"
        # Closing the nested pipeline did not tear down the caller's mock.
        assert boto3.client("sqs", region_name="us-east-1").list_queues()["QueueUrls"]
    with LocalPipeline(TOY_TEMPLATE, parameter_overrides={"UseTopic": "no"}, functions=["TableFunction"]) as p:
        assert "ToyTopic" not in p.resources and "TopicArn" not in p.stack.outputs
