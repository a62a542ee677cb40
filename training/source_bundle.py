"""The retraining jobs' source bundle: sourcedir.tar.gz for SageMaker script mode (`make retrain-bundle`).

It holds the packages the jobs import (shared/, training/), the bootstrap model the gate falls back to
when the stack has no champion yet (layers/model/sasrec/int8), and a requirements.txt that the training
toolkit (and the gate's entrypoint) installs over AWS's PyTorch container: the Lambda layer's pins, which
the trainer's ONNX export and the gate's scoring share with decide, plus onnx. Never torch (the
container's own build serves), never a virtualenv, caches or out/.

    python -m training.source_bundle --out out/retrain/sourcedir.tar.gz
    aws s3 cp out/retrain/sourcedir.tar.gz "$(stack output RetrainCodeS3Uri)"
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shared", "training")
BOOTSTRAP_MODEL = "layers/model/sasrec/int8"
LAYER_REQUIREMENTS = "layers/dependencies/requirements.txt"
DEV_REQUIREMENTS = "requirements/dev.txt"
# What the trainer needs beyond the layer: the ONNX graph writer (onnxruntime quantizes, but needs onnx).
EXTRA_PINS = ("onnx",)
SKIPPED_PARTS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
SKIPPED_SUFFIXES = (".pyc", ".pyo")


def _pin(requirements: str, name: str) -> str:
    found = re.search(rf"^{re.escape(name)}==\S+", requirements, flags=re.MULTILINE)
    if found is None:
        raise ValueError(f"{name} is not pinned in {DEV_REQUIREMENTS}")
    return found.group(0)


def requirements_text(root: Path = ROOT) -> str:
    layer = [
        line.strip()
        for line in (root / LAYER_REQUIREMENTS).read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    dev = (root / DEV_REQUIREMENTS).read_text(encoding="utf-8")
    lines = [
        "# Installed by SageMaker's training toolkit (and the gate's entrypoint) over the PyTorch container.",
        f"# {LAYER_REQUIREMENTS} plus the trainer's ONNX writer; torch is the container's.",
        *layer,
        *(_pin(dev, name) for name in EXTRA_PINS),
    ]
    return "\n".join(lines) + "\n"


def members(root: Path = ROOT) -> Iterator[tuple[str, Path]]:
    """(name in the bundle, file) of every packaged file, sorted, so a rebuild is byte-identical."""
    for top in (*PACKAGES, BOOTSTRAP_MODEL):
        for path in sorted((root / top).rglob("*")):
            relative = path.relative_to(root)
            if path.is_file() and not SKIPPED_PARTS & set(relative.parts) and not path.name.endswith(SKIPPED_SUFFIXES):
                yield relative.as_posix(), path


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    archive.addfile(info, io.BytesIO(data))


def build(out: Path, root: Path = ROOT) -> list[str]:
    """Write the bundle; returns the names it holds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    buffer = io.BytesIO()
    # mtime 0 in the gzip header and every member: the same sources give the same bytes (and ETag).
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=9) as archive:
        for name, path in members(root):
            _add(archive, name, path.read_bytes())
            names.append(name)
        _add(archive, "requirements.txt", requirements_text(root).encode("utf-8"))
        names.append("requirements.txt")
    out.write_bytes(_zero_gzip_mtime(buffer.getvalue()))
    return names


def _zero_gzip_mtime(data: bytes) -> bytes:
    # tarfile stamps the gzip header with the current time (bytes 4-7); zeroed, as gzip -n does.
    return data[:4] + b"\0\0\0\0" + data[8:]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.source_bundle", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/retrain/sourcedir.tar.gz"))
    args = p.parse_args(argv)
    names = build(args.out)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({len(names)} files, {size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
