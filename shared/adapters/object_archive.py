"""Append-only JSON Lines archives in S3 (events, quarantine, feedback).

Keys are derived from the batch (shard and first sequence number), so a retried batch
overwrites its own object instead of adding a second copy.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from typing import Any

from shared.adapters.aws_errors import translated
from shared.domain.ports import ObjectVersion


def jsonl_gz(records: Iterable[Mapping[str, Any]]) -> bytes:
    lines = "".join(json.dumps(r, separators=(",", ":"), sort_keys=True) + "\n" for r in records)
    # mtime=0 keeps the bytes identical across retries (same ETag, easy to verify).
    return gzip.compress(lines.encode("utf-8"), mtime=0)


def read_jsonl_gz(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(body).decode("utf-8").splitlines() if line]


class ObjectArchive:
    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    def put_lines(self, key: str, records: Iterable[Mapping[str, Any]]) -> str | None:
        """Write the object; returns its new version id (None when the bucket is not versioned)."""
        with translated("archive.put"):
            response = self._s3.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=jsonl_gz(records),
                ContentType="application/x-ndjson",
                ContentEncoding="gzip",
            )
        version = response.get("VersionId")
        return None if version in (None, "null") else str(version)

    def read_lines(self, key: str) -> list[dict[str, Any]]:
        with translated("archive.get"):
            body = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        return read_jsonl_gz(body)

    def versions(self, prefix: str) -> list[ObjectVersion]:
        """Every stored version under ``prefix`` (current and noncurrent; delete markers hold no data).

        An unversioned bucket lists each object once, with version id "null".
        """
        out: list[ObjectVersion] = []
        with translated("archive.list_versions"):
            for page in self._s3.get_paginator("list_object_versions").paginate(Bucket=self._bucket, Prefix=prefix):
                out.extend(
                    ObjectVersion(v["Key"], str(v.get("VersionId") or "null"), bool(v.get("IsLatest")))
                    for v in page.get("Versions", [])
                )
        return out

    def read_version(self, key: str, version_id: str) -> list[dict[str, Any]]:
        with translated("archive.get_version"):
            body = self._s3.get_object(Bucket=self._bucket, Key=key, VersionId=version_id)["Body"].read()
        return read_jsonl_gz(body)

    def delete_version(self, key: str, version_id: str) -> None:
        """Permanently remove one version (no delete marker is left behind)."""
        with translated("archive.delete_version"):
            self._s3.delete_object(Bucket=self._bucket, Key=key, VersionId=version_id)

    def keys(self, prefix: str) -> list[str]:
        out: list[str] = []
        with translated("archive.list"):
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix):
                out.extend(obj["Key"] for obj in page.get("Contents", []))
        return out
