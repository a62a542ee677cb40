"""Deploy a SAM template through CloudFormation (moto's, or any endpoint), as `sam deploy` would.

`sam package` + `sam deploy` minus the CLI: artifacts in S3 (stubs for the runner, which runs handlers
from source; tests/deploy/packaging.py uploads the real ones), aws-sam-translator, CloudFormation.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

ARTIFACT_KEYS = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}
TERMINAL_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE"}
# One bucket of identical stub objects serves every stack in a moto, so the expanded template does
# not depend on the stack name and one transform serves them all (lru_cache below).
STUB_BUCKET = "local-runner-artifacts"


class TemplateError(ValueError):
    """The template, or what the caller asked of it, cannot be deployed or run locally."""


def _construct_tag(loader: Any, tag_suffix: str, node: Any) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    tag = tag_suffix.lstrip("!")
    if tag == "GetAtt" and isinstance(value, str):
        return {"Fn::GetAtt": value.split(".", 1)}
    return {tag if tag in ("Ref", "Condition") else f"Fn::{tag}": value}


# A loader of our own: samtranslator.yaml_helper registers its tag constructor on yaml.SafeLoader
# itself, for the whole process. On libyaml where present (10x faster than pure-Python PyYAML).
# Built with type() so mypy does not see a subclass of Any.
_CfnLoader: Any = type("_CfnLoader", (getattr(yaml, "CSafeLoader", yaml.SafeLoader),), {})
_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_yaml(path: Path) -> dict[str, Any]:
    """A CloudFormation/SAM template with its short tags (!Ref, !Sub ...) in long form."""
    with path.open(encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=_CfnLoader)
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: not a template")
    return data


def artifacts(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str, Any]]:
    """(logical id, properties, property name, uri) of every function's code and layer's content."""
    globals_uri = ((template.get("Globals") or {}).get("Function") or {}).get("CodeUri")
    for logical_id, resource in (template.get("Resources") or {}).items():
        key = ARTIFACT_KEYS.get(str(resource.get("Type")))
        if key is None:
            continue
        props = resource.setdefault("Properties", {})
        uri = props.get(key, globals_uri if key == "CodeUri" else None)
        if uri is not None and "InlineCode" not in props:
            yield logical_id, props, key, uri


def artifact_sources(template: Mapping[str, Any], root: Path) -> dict[str, Path]:
    """The local directory of each function's code and each layer's content, by logical id."""
    return {
        lid: (root / uri).resolve()
        for lid, _, _, uri in artifacts(copy.deepcopy(dict(template)))
        if isinstance(uri, str) and not uri.startswith("s3://")
    }


def package_stubs(template: Mapping[str, Any], s3: Any = None) -> dict[str, Any]:
    """Point every artifact at a tiny stub object `<LogicalId>.zip` (uploaded when s3 is given).

    The key names the source: the expanded template keeps it where it renames things (SAM
    suffixes layer logical ids with a hash), so `stub_owner` maps code and layers back.
    """
    packaged = copy.deepcopy(dict(template))
    stub = io.BytesIO()
    with zipfile.ZipFile(stub, "w") as archive:
        archive.writestr("LOCAL", "the local runner runs this artifact from its source directory\n")
    if s3 is not None:
        region = s3.meta.region_name
        location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=STUB_BUCKET, **location)
    for logical_id, props, key_name, _ in artifacts(packaged):
        if s3 is not None:
            s3.put_object(Bucket=STUB_BUCKET, Key=f"{logical_id}.zip", Body=stub.getvalue())
        props[key_name] = f"s3://{STUB_BUCKET}/{logical_id}.zip"
    return packaged


def stub_owner(location: Any) -> str | None:
    """The logical id a stub artifact ({S3Bucket, S3Key} of a function's Code or layer's Content) stands for."""
    if isinstance(location, dict) and location.get("S3Bucket") == STUB_BUCKET:
        return str(location.get("S3Key", "")).removesuffix(".zip") or None
    return None


def check_parameters(template: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, str]:
    """What CloudFormation checks before it creates anything and moto's does not: names and AllowedValues."""
    declared: dict[str, Any] = template.get("Parameters") or {}
    unknown = set(overrides) - set(declared)
    if unknown:
        raise TemplateError(f"unknown parameter override(s): {sorted(unknown)}")
    values = {name: scalar_str(value) for name, value in overrides.items()}
    for name, value in values.items():
        allowed = (declared[name] or {}).get("AllowedValues")
        if allowed is not None and value not in [scalar_str(a) for a in allowed]:
            raise TemplateError(f"parameter {name}={value!r} not in AllowedValues {allowed}")
    return values


def scalar_str(value: Any) -> str:
    """CloudFormation hands parameter and environment values over as strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(scalar_str(v) for v in value)
    return str(value)


def transform(template: Mapping[str, Any], parameters: Mapping[str, str], region: str) -> dict[str, Any]:
    """Expand AWS::Serverless-2016-10-31 into plain CloudFormation, as the service would."""
    text = json.dumps(template, sort_keys=True)
    expanded: dict[str, Any] = json.loads(_transform(text, tuple(sorted(parameters.items())), region))
    return expanded


@lru_cache(maxsize=32)
def _transform(template_json: str, parameters: tuple[tuple[str, str], ...], region: str) -> str:
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.public.exceptions import InvalidDocumentException
    from samtranslator.translator.translator import Translator

    # The translator warns about its own unpublished usage metrics when it is collected.
    logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)
    # managed_policy_map=None: the translator's bundled table of AWS managed policy ARNs.
    translator = Translator(
        managed_policy_map=None, sam_parser=Parser(), boto_session=boto3.session.Session(region_name=region)
    )
    try:
        result = translator.translate(sam_template=json.loads(template_json), parameter_values=dict(parameters))
    except InvalidDocumentException as exc:
        raise TemplateError(f"SAM transform failed: {'; '.join(str(c) for c in exc.causes)}") from exc
    return json.dumps(result)


def without_aliases(template: Mapping[str, Any]) -> dict[str, Any]:
    """moto has no AWS::Lambda::Alias: each alias (AutoPublishAlias) is dropped and what referred to it
    refers to its function instead, as the runner emulates. A real deployment creates the aliases."""
    resources = dict(template.get("Resources") or {})
    aliases = [lid for lid, spec in resources.items() if spec.get("Type") == "AWS::Lambda::Alias"]
    functions = {lid: resources.pop(lid)["Properties"]["FunctionName"]["Ref"] for lid in aliases}

    def repoint(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Ref"} and node["Ref"] in functions:
                return {"Fn::GetAtt": [functions[node["Ref"]], "Arn"]}
            return {k: repoint(v) for k, v in node.items()}
        if isinstance(node, list):
            return [repoint(v) for v in node if not (isinstance(v, str) and v in functions)]
        return node

    out: dict[str, Any] = repoint({**template, "Resources": resources})
    for spec in out["Resources"].values():
        if isinstance(spec.get("DependsOn"), str) and spec["DependsOn"] in functions:
            del spec["DependsOn"]
    return out


def create_stack(
    cloudformation: Any, stack_name: str, template: Mapping[str, Any], parameters: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Create the stack and wait for a terminal state; raises unless it is CREATE_COMPLETE."""
    # moto tries YAML first (pure-Python PyYAML, ~0.5 s for this template) and falls back to JSON
    # on a scanner error; a leading tab, which JSON allows and YAML rejects at once, skips that.
    body = "\t" + json.dumps(template)
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=body,
        Parameters=[{"ParameterKey": k, "ParameterValue": str(v)} for k, v in (parameters or {}).items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    cloudformation.get_waiter("stack_create_complete").wait(
        StackName=stack_name, WaiterConfig={"Delay": 1, "MaxAttempts": 600}
    )
    stack: dict[str, Any] = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    if stack["StackStatus"] not in TERMINAL_OK:
        raise RuntimeError(f"{stack_name}: {stack['StackStatus']} {stack.get('StackStatusReason', '')}")
    return stack


@contextlib.contextmanager
def unemulated_quiet() -> Iterator[None]:
    """Mute moto's log line and warning for each resource it does not emulate (alarms, bucket
    policies), on creating and on every listing; Stack.skipped reports them. The logger filter is
    process-wide, so a moto server thread is quiet too."""

    def emulated(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No Moto CloudFormation support")

    moto_log = logging.getLogger("moto")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Tried to parse")
        moto_log.addFilter(emulated)
        try:
            yield
        finally:
            moto_log.removeFilter(emulated)
