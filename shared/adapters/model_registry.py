"""The model registry in S3 and its serving pointer in SSM, and loading a model with its calibration.

Layout (docs/operations.md): ``s3://<bucket>/<prefix><version id>/`` holds ``model.onnx``,
``manifest.json``, ``calibration.json`` and ``evaluation.json``; the pointer is a String parameter
holding a ``ModelPointer`` as JSON. Decide only reads (GetObject on the prefix, GetParameter on the
pointer); publishing, listing and moving the pointer are the operator CLI's (cli/models.py).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import ClientError
from pydantic import ValidationError

from shared.adapters.aws_errors import error_code, translated
from shared.adapters.calibration_file import load_calibration
from shared.domain.engagement import CALIBRATION_FILE
from shared.domain.errors import PermanentStorageError
from shared.domain.model_registry import (
    EVALUATION_FILE,
    MANIFEST_FILE,
    SERVED_FILES,
    ModelPointer,
    ModelRegistryError,
    file_digest,
    graph_version_of,
    version_id_for,
)
from shared.domain.recommendation import ServedModel
from shared.model import ModelLoadError, ModelManifest, OnnxRecommender, read_manifest

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


def load_served_model(
    model_dir: str | Path, version: str | None = None, *, calibration_required: bool = False
) -> ServedModel:
    """The model in ``model_dir`` with the calibration shipped beside it, checked to belong to it.

    A calibration fitted for another graph would turn this model's scores into meaningless probabilities,
    so it refuses to load (ModelLoadError) rather than serve without, or with the wrong one.
    ``version`` is what the ledger will record (a registry version id); by default the manifest's.
    """
    recommender = OnnxRecommender.from_dir(model_dir)
    graph = recommender.manifest.version
    calibration = load_calibration(model_dir)
    if calibration is None and calibration_required:
        raise ModelLoadError(f"{model_dir}: no {CALIBRATION_FILE}; a registry version carries its calibration")
    if calibration is not None and calibration.model_version != graph:
        raise ModelLoadError(
            f"{model_dir}: {CALIBRATION_FILE} was fitted for {calibration.model_version!r}, the graph is {graph!r}"
        )
    if version is not None and graph_version_of(version) != graph:
        raise ModelLoadError(f"{model_dir}: version {version!r} does not name the graph {graph!r}")
    return ServedModel(recommender, calibration, version or graph)


def local_version_id(model_dir: str | Path) -> str:
    """The registry id the files in ``model_dir`` would get (what ``publish`` uploads them under)."""
    model_dir = Path(model_dir)
    digests: dict[str, str] = {}
    for name in SERVED_FILES:
        path = model_dir / name
        if not path.is_file():
            raise ModelRegistryError(f"{model_dir}: no {name} (a registry version holds {', '.join(SERVED_FILES)})")
        digests[name] = file_digest(path.read_bytes())
    return version_id_for(read_manifest(model_dir).version, digests)


@dataclass(frozen=True)
class RegistryVersion:
    version: str
    manifest: ModelManifest
    evaluation: dict[str, Any] | None


class S3ModelRegistry:
    """Versions under ``s3://bucket/prefix``: one folder each, named by its content-derived id."""

    def __init__(self, s3: Any, bucket: str, prefix: str) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix if prefix.endswith("/") else prefix + "/"

    @classmethod
    def at(cls, s3: Any, uri: str) -> S3ModelRegistry:
        """The registry at ``s3://bucket/prefix/`` (a stack's ModelRegistryUri output)."""
        parsed = urlparse(uri)
        return cls(s3, parsed.netloc, parsed.path.lstrip("/"))

    @property
    def uri(self) -> str:
        return f"s3://{self._bucket}/{self._prefix}"

    def _key(self, version: str, name: str) -> str:
        return f"{self._prefix}{version}/{name}"

    def download(self, version: str, dest_root: str | Path) -> Path:
        """The served files of ``version`` in ``dest_root/<version>/``, checked against the id's digest.

        Files land in a scratch folder that is renamed into place once complete and verified, so a
        crash mid-download, or a folder whose files changed after publishing, is never loaded.
        """
        final = Path(dest_root) / version
        if final.is_dir():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{version}."))
        try:
            digests = {}
            for name in SERVED_FILES:
                body = self._get(version, name)
                if body is None:
                    raise ModelRegistryError(f"{self.uri}{version}/ has no {name}")
                (scratch / name).write_bytes(body)
                digests[name] = file_digest(body)
            actual = version_id_for(graph_version_of(version), digests)
            if actual != version:
                raise ModelRegistryError(f"{self.uri}{version}/: its files hash to {actual}; refusing to load them")
            try:
                os.replace(scratch, final)
            except OSError:
                if not final.is_dir():  # else another loader finished the same version first
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return final

    @staticmethod
    def prune(dest_root: str | Path, keep: str) -> None:
        """Delete downloaded versions other than ``keep`` (a loaded session no longer reads its files), so
        /tmp does not fill up over many promotions."""
        for path in Path(dest_root).iterdir() if Path(dest_root).is_dir() else ():
            if path.name != keep and not path.name.startswith("."):
                shutil.rmtree(path, ignore_errors=True)

    def load(self, version: str, dest_root: str | Path) -> ServedModel:
        """Download, verify and load ``version`` with its calibration (ModelLoadError / ModelRegistryError)."""
        return load_served_model(self.download(version, dest_root), version, calibration_required=True)

    def publish(self, model_dir: str | Path, evaluation: dict[str, Any] | None = None) -> str:
        """Upload a model folder as a new version (idempotent: the same files give the same id).

        The folder must load, with its calibration, before anything is written; the manifest goes last,
        so a version that ``versions()`` lists has all its files.
        """
        model_dir = Path(model_dir)
        load_served_model(model_dir, calibration_required=True)
        version = local_version_id(model_dir)
        report = evaluation
        if report is None and (model_dir / EVALUATION_FILE).is_file():
            report = json.loads((model_dir / EVALUATION_FILE).read_text())
        uploads = [(name, (model_dir / name).read_bytes()) for name in SERVED_FILES if name != MANIFEST_FILE]
        if report is not None:
            uploads.append((EVALUATION_FILE, (json.dumps(report, indent=2, sort_keys=True) + "\n").encode()))
        uploads.append((MANIFEST_FILE, (model_dir / MANIFEST_FILE).read_bytes()))
        for name, body in uploads:
            with translated("model_registry.publish"):
                self._s3.put_object(Bucket=self._bucket, Key=self._key(version, name), Body=body)
        return version

    def exists(self, version: str) -> bool:
        return self._get(version, MANIFEST_FILE) is not None

    def describe(self, version: str) -> RegistryVersion:
        manifest = self._get(version, MANIFEST_FILE)
        if manifest is None:
            raise ModelRegistryError(f"no version {version} in {self.uri}")
        evaluation = self._get(version, EVALUATION_FILE)
        try:
            parsed = ModelManifest.model_validate_json(manifest)
        except ValidationError as exc:
            raise ModelRegistryError(f"{self.uri}{version}/{MANIFEST_FILE}: invalid manifest") from exc
        return RegistryVersion(version, parsed, json.loads(evaluation) if evaluation is not None else None)

    def versions(self) -> list[str]:
        """Every published version (a folder with a manifest), oldest first by upload time."""
        found: list[tuple[str, str]] = []
        for obj in self._objects():
            rest = obj["Key"][len(self._prefix) :]
            version, _, name = rest.partition("/")
            if name == MANIFEST_FILE:
                found.append((str(obj["LastModified"].isoformat()), version))
        return [version for _, version in sorted(found)]

    def _objects(self) -> Iterator[dict[str, Any]]:
        paginator = self._s3.get_paginator("list_objects_v2")
        with translated("model_registry.list"):
            for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix):
                yield from page.get("Contents", [])

    def _get(self, version: str, name: str) -> bytes | None:
        try:
            with translated("model_registry.get"):
                try:
                    return bytes(self._s3.get_object(Bucket=self._bucket, Key=self._key(version, name))["Body"].read())
                except ClientError as exc:
                    if error_code(exc) in _MISSING:
                        return None
                    raise
        except PermanentStorageError as exc:
            raise ModelRegistryError(f"{self.uri}{version}/{name}: {exc}") from exc


class SsmModelPointer:
    """The pointer as a String parameter; a missing parameter means no version was promoted yet."""

    def __init__(self, ssm: Any, name: str) -> None:
        self._ssm = ssm
        self.name = name

    def read(self) -> ModelPointer | None:
        try:
            with translated("model_pointer.get"):
                try:
                    value = self._ssm.get_parameter(Name=self.name)["Parameter"]["Value"]
                except ClientError as exc:
                    if error_code(exc) == "ParameterNotFound":
                        return None
                    raise
        except PermanentStorageError as exc:
            raise ModelRegistryError(f"pointer {self.name}: {exc}") from exc
        try:
            return ModelPointer.model_validate_json(value)
        except ValidationError as exc:
            raise ModelRegistryError(f"pointer {self.name} holds no valid pointer: {exc}") from exc

    def write(self, pointer: ModelPointer) -> None:
        """Overwrite the pointer (SSM keeps every earlier value in the parameter's history)."""
        with translated("model_pointer.put"):
            self._ssm.put_parameter(
                Name=self.name,
                Value=pointer.model_dump_json(exclude_defaults=False),
                Type="String",
                Overwrite=True,
                Description="Nudge: the model versions decide serves (nudge models promote|rollback)",
            )
