"""`sam package` for the deploy test: every function's and layer's directory zipped into S3.

The local runner deploys stub artifacts (it runs handlers from their source directories); this
test deploys the real ones, from the source or from `sam build`'s output.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from runner.deploy import artifacts, load_yaml


def zip_dir(directory: Path) -> bytes:
    """Zip a directory's files with paths relative to it (as Lambda unpacks code and layers)."""
    buffer = io.BytesIO()
    # Stored, not deflated: moto does not care and the 130 MB dependencies layer zips in ~1 s.
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def package(
    template_path: Path, s3: Any, bucket: str, *, build_dir: Path | None = None, prefix: str = "artifacts"
) -> dict[str, Any]:
    """Upload each function's and layer's directory and point the template at the S3 objects.

    With build_dir (`.aws-sam/build`), the artifact of a resource is the directory `sam build`
    made for it (named after its logical id), as `sam package` would upload; resources without
    one, or no build_dir, fall back to the CodeUri/ContentUri directory next to the template.
    """
    packaged = load_yaml(template_path)
    for logical_id, props, key_name, uri in artifacts(packaged):
        if not isinstance(uri, str) or uri.startswith("s3://"):
            continue
        built = build_dir / logical_id if build_dir is not None else None
        directory = built if built is not None and built.is_dir() else (template_path.parent / uri).resolve()
        if not directory.is_dir():
            raise FileNotFoundError(f"{logical_id}: {key_name} {uri} is not a directory")
        key = f"{prefix}/{logical_id}.zip"
        s3.put_object(Bucket=bucket, Key=key, Body=zip_dir(directory))
        props[key_name] = f"s3://{bucket}/{key}"
    return packaged
