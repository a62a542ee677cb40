"""The send-once records Powertools idempotency keeps in the idempotency table, by decision id.

shared/plumbing/bootstrap.py send_once makes the records with ``key_prefix=SEND_KEY_PREFIX`` and
``event_key_jmespath="decision_id"``, so a record's key is the prefix and the hash Powertools
takes of the JSON-encoded decision id (md5, IdempotencyConfig's default hash_function).
tests/integration/test_erasure.py checks this against records the real decorator wrote.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from shared.adapters.aws_errors import translated

SEND_KEY_PREFIX = "nudge-send"
KEY_ATTRIBUTE = "id"  # DynamoDBPersistenceLayer's default key attribute


def send_record_key(decision_id: str) -> str:
    digest = hashlib.md5(json.dumps(decision_id, sort_keys=True).encode(), usedforsecurity=False).hexdigest()
    return f"{SEND_KEY_PREFIX}#{digest}"


class IdempotencyRecords:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._table = dynamodb.Table(table_name)

    def forget_sends(self, decision_ids: Iterable[str]) -> int:
        """Delete the send records of these decisions (erasure); absent ones are a no-op."""
        keys = sorted({send_record_key(d) for d in decision_ids})
        with translated("idempotency.forget"), self._table.batch_writer() as batch:
            for key in keys:
                batch.delete_item(Key={KEY_ATTRIBUTE: key})
        return len(keys)
