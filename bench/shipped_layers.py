"""The dependencies and shared layers laid out as Lambda loads them, for the interpreter given.

bench/cold_start.py --shipped measures init against these trees instead of the developer venv,
whose every module has cached bytecode. Two variants of the same files:

- ``source``: what `sam build` alone produces (pip --no-compile, shared/ copied as source). Lambda
  cannot write bytecode under /opt, so every imported module is compiled at every cold start.
- ``bytecode``: the same, plus hash-based unchecked bytecode for this interpreter, which is what
  `make build` adds for python3.12 (layers/bytecode/compile.sh).

The packages are this machine's platform wheels for the given interpreter (the layer's own are
aarch64 and cannot load here), installed from layers/dependencies/requirements.txt, so versions
match the layer. boto3/botocore come from the interpreter's environment, as the runtime provides.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "layers" / "dependencies" / "requirements.txt"
VARIANTS = ("source", "bytecode")


def _tag(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import sys; print(sys.implementation.cache_tag)"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def build(python: str, cache: Path) -> dict[str, list[Path]]:
    """Variant -> the PYTHONPATH entries (shared layer, dependencies layer).

    The dependencies are installed once per interpreter; ``shared/`` is copied from the checkout
    (and compiled for the bytecode variant) at every call, so the numbers follow the code measured.
    """
    base = cache / _tag(python)
    source = base / "source"
    if not (source / ".complete").is_file():
        shutil.rmtree(base, ignore_errors=True)
        subprocess.run(
            [
                python,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-compile",
                "--target",
                str(source / "deps"),
                "-r",
                str(REQUIREMENTS),
            ],
            check=True,
        )
        for runtime_provided in ("boto3", "botocore", "s3transfer"):
            for path in (source / "deps").glob(f"{runtime_provided}*"):
                shutil.rmtree(path)
        (source / ".complete").touch()
    bytecode = base / "bytecode"
    if not (bytecode / ".complete").is_file():
        shutil.rmtree(bytecode, ignore_errors=True)
        shutil.copytree(source / "deps", bytecode / "deps")
        _compile(python, bytecode / "deps")
        (bytecode / ".complete").touch()
    for variant in VARIANTS:
        tree = base / variant / "shared"
        shutil.rmtree(tree, ignore_errors=True)
        shutil.copytree(
            ROOT / "shared", tree / "shared", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "Makefile")
        )
    _compile(python, bytecode / "shared")
    return {name: [base / name / "shared", base / name / "deps"] for name in VARIANTS}


def _compile(python: str, tree: Path) -> None:
    """Hash-based unchecked bytecode, as layers/bytecode/compile.sh writes it."""
    subprocess.run(
        [python, "-m", "compileall", "-q", "-q", "--invalidation-mode", "unchecked-hash", str(tree)], check=False
    )
