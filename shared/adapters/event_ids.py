"""The event-id registry table: one small item per event id, written once, first claim wins.

The key is a hash of the event id (ids may embed user data; the registry then holds none), the
item the claim's digest and stream position, and it expires after ``ttl_seconds`` (longer than the
stream keeps records and than the contract accepts late events), so the table stays the size of a
week of traffic.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from shared.adapters.aws_errors import translated
from shared.adapters.dynamo_batch import batch_get
from shared.domain.admission import Claim
from shared.domain.errors import TransientStorageError, VersionConflict

KEY = "id"


def registry_key(event_id: str) -> str:
    return hashlib.blake2b(event_id.encode(), digest_size=16).hexdigest()


class DynamoEventIdRegistry:
    def __init__(
        self, dynamodb: Any, table_name: str, ttl_seconds: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._dynamodb = dynamodb
        self._table_name = table_name
        self._table = dynamodb.Table(table_name)
        self._ttl = ttl_seconds
        self._clock = clock

    def claim(self, claims: Sequence[Claim]) -> dict[str, Claim]:
        by_key = {registry_key(c.event_id): c for c in claims}
        # Eventually consistent: a stale miss only sends us to the conditional put below, which is
        # the arbiter; a hit is final (claims are never changed).
        stored = {str(i[KEY]): i for i in batch_get(self._dynamodb, self._table_name, KEY, list(by_key))}
        holders: dict[str, Claim] = {}
        for key, claim in by_key.items():
            item = stored.get(key) or self._put_first(key, claim)
            holders[claim.event_id] = Claim(claim.event_id, str(item["digest"]), str(item["position"]))
        return holders

    def _put_first(self, key: str, claim: Claim) -> dict[str, Any]:
        item = {
            KEY: key,
            "digest": claim.digest,
            "position": claim.position,
            "expires_at": int(self._clock()) + self._ttl,
        }
        try:
            with translated("event_ids.claim"):
                self._table.put_item(
                    Item=item, ConditionExpression="attribute_not_exists(#k)", ExpressionAttributeNames={"#k": KEY}
                )
            return item
        except VersionConflict:
            with translated("event_ids.get"):
                held = self._table.get_item(Key={KEY: key}, ConsistentRead=True).get("Item")
            if held is None:  # removed by TTL between the two calls: try the batch again
                raise TransientStorageError("event_ids.claim: claim vanished") from None
            return dict(held)
