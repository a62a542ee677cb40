"""Erase users from a stack (a deployed one, or `python -m runner serve`'s).

By default the erasure runs here, through the same service the Erase function runs
(shared.plumbing.bootstrap.build_erase_service, shared/services/erasure.py); `--via-function` instead invokes the
stack's EraseFunction asynchronously (failures then land in its dead-letter queue). Table and
bucket names come from the stack's outputs: CloudFormation's (`--stack-name`) or a ready file (cli/stack.py).

Credentials: a deployed stack is reached with the caller's credential chain. A local endpoint
(a moto server on loopback, as `runner serve` runs) checks no signature, so dummy credentials
are used there, whatever the environment holds: none are needed and real ones are not sent.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from unittest import mock
from urllib.parse import urlparse

import boto3

OUTPUTS = {
    "user_state_table": "UserStateTableName",
    "ledger_table": "LedgerTableName",
    "idempotency_table": "IdempotencyTableName",
    "push_counters_table": "PushCountersTableName",
    "archive_bucket": "ArchiveBucketName",
}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
# Would take precedence over, or be sent along with, the dummy credentials.
CREDENTIAL_SOURCES = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")


@contextlib.contextmanager
def using_endpoint(endpoint_url: str | None, region: str) -> Iterator[str | None]:
    """Every AWS client made inside (shared.plumbing.bootstrap's too) goes to endpoint_url, if given."""
    from shared.plumbing import bootstrap

    values = {"AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", region)}
    if endpoint_url:
        values["AWS_ENDPOINT_URL"] = endpoint_url
    local = endpoint_url is not None and urlparse(endpoint_url).hostname in LOOPBACK_HOSTS
    if local:
        values.update(DUMMY_CREDENTIALS)
    with mock.patch.dict(os.environ, values):
        for name in CREDENTIAL_SOURCES if local else ():
            os.environ.pop(name, None)
        bootstrap.reset()  # clients are made from the environment: none cached from before
        try:
            yield endpoint_url
        finally:
            bootstrap.reset()


def erase(
    users: Sequence[str],
    outputs: Mapping[str, str],
    *,
    pseudonym_key_parameter: str = "",
    region: str,
    endpoint_url: str | None = None,
    via_function: bool = False,
) -> dict[str, Any]:
    from cli.stack import pseudonymizer
    from shared.plumbing import bootstrap
    from shared.plumbing.config import EraseSettings
    from shared.services.erasure import EraseRequest

    request = EraseRequest(user_ids=list(users))
    with using_endpoint(endpoint_url, region):
        if via_function:
            response = boto3.client("lambda", region_name=region).invoke(
                FunctionName=outputs["EraseFunctionName"],
                InvocationType="Event",
                Payload=request.model_dump_json().encode(),
            )
            return {"invoked": outputs["EraseFunctionName"], "status": response["StatusCode"], "users": len(users)}
        settings = EraseSettings.model_validate({field: outputs[name] for field, name in OUTPUTS.items()})
        pseudonymize = pseudonymizer(bootstrap.client("ssm"), pseudonym_key_parameter)
        return bootstrap.build_erase_service(settings, pseudonymize).erase(request.user_ids).as_dict()
