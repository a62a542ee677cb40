"""`python -m runner erase --user U ...`: erase users from a stack (a deployed one, or `runner serve`'s).

By default the erasure runs here, with the caller's credentials, through the same service the
Erase function runs (shared/erasure.py); `--via-function` instead invokes the stack's
EraseFunction asynchronously (failures then land in its dead-letter queue). Table and bucket
names come from the stack's outputs: CloudFormation's (`--stack-name`) or a ready file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3

OUTPUTS = {
    "user_state_table": "UserStateTableName",
    "ledger_table": "LedgerTableName",
    "idempotency_table": "IdempotencyTableName",
    "push_counters_table": "PushCountersTableName",
    "archive_bucket": "ArchiveBucketName",
}


def stack_facts(
    *, stack_name: str | None, ready_file: str | None, region: str, endpoint_url: str | None
) -> tuple[dict[str, str], dict[str, str], str | None]:
    """(outputs, parameters, endpoint) of the stack to erase from."""
    if ready_file is not None:
        ready = json.loads(Path(ready_file).read_text(encoding="utf-8"))
        return dict(ready["outputs"]), {}, endpoint_url or ready.get("endpoint_url")
    if stack_name is None:
        raise SystemExit("erase needs --stack-name or --ready-file")
    cloudformation = boto3.client("cloudformation", region_name=region, endpoint_url=endpoint_url)
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    return outputs, parameters, endpoint_url


def erase(
    users: Sequence[str],
    outputs: Mapping[str, str],
    *,
    pseudonym_key_parameter: str = "",
    region: str,
    endpoint_url: str | None = None,
    via_function: bool = False,
) -> dict[str, Any]:
    from shared.services.erasure import EraseRequest

    request = EraseRequest(user_ids=list(users))
    if via_function:
        client = boto3.client("lambda", region_name=region, endpoint_url=endpoint_url)
        response = client.invoke(
            FunctionName=outputs["EraseFunctionName"],
            InvocationType="Event",
            Payload=request.model_dump_json().encode(),
        )
        return {"invoked": outputs["EraseFunctionName"], "status": response["StatusCode"], "users": len(users)}
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    from shared.adapters.pseudonym_key import read_pseudonym_key
    from shared.domain.pseudonym import Pseudonymizer
    from shared.plumbing import bootstrap
    from shared.plumbing.config import EraseSettings

    settings = EraseSettings.model_validate({field: outputs[name] for field, name in OUTPUTS.items()})
    pseudonymize = None
    if pseudonym_key_parameter:
        pseudonymize = Pseudonymizer(read_pseudonym_key(bootstrap.client("ssm"), pseudonym_key_parameter))
    return bootstrap.build_erase_service(settings, pseudonymize).erase(request.user_ids).as_dict()
