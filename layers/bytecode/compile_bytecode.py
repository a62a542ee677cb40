"""Compile a built layer's Python sources to bytecode for the Lambda runtime's Python (3.12).

The layers are built with pip's --no-compile because the build machine's Python (3.11 here) would
write bytecode for the wrong version. Without bytecode, Lambda compiles every imported module at
every cold start (/opt is read-only, so nothing is cached): about 300 ms per init in
bench/cold_start.py. This writes __pycache__/*.cpython-312.pyc beside each source, hash-based and
unchecked (PEP 552): the layer never changes after the build, and zip archives keep timestamps too
coarsely for timestamp-based bytecode to validate.

Runs under CPython 3.12 itself: a python3.12 on the build machine, or CPython 3.12 compiled to
WebAssembly (Pyodide, pinned in package.json) under Node.js when there is none; compile.sh picks.

    python3.12 compile_bytecode.py DIR [DIR ...]
"""

from __future__ import annotations

import compileall
import importlib.util
import py_compile
import sys
from pathlib import Path

TARGET = (3, 12)


def compile_tree(root: Path) -> tuple[int, int]:
    """Compile every .py under root; returns (sources, sources left without bytecode)."""
    compileall.compile_dir(
        str(root),
        quiet=2,
        workers=1,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    sources = [p for p in root.rglob("*.py") if "__pycache__" not in p.parts]
    tag = sys.implementation.cache_tag
    left = [p for p in sources if not (p.parent / "__pycache__" / f"{p.stem}.{tag}.pyc").is_file()]
    # A module that does not compile (a Python 2 leftover in some package) is simply left as source:
    # it fails the same way at import either way.
    return len(sources), len(left)


def check_bytecode(root: Path) -> int:
    """Count the .pyc files whose header is not this interpreter's magic number (should be 0)."""
    magic = importlib.util.MAGIC_NUMBER
    return sum(1 for pyc in root.rglob("*.pyc") if pyc.read_bytes()[:4] != magic)


def main(argv: list[str]) -> int:
    if sys.version_info[:2] != TARGET:
        print(f"compile_bytecode: needs Python {TARGET[0]}.{TARGET[1]}, this is {sys.version.split()[0]}")
        return 2
    status = 0
    for arg in argv:
        root = Path(arg)
        sources, left = compile_tree(root)
        foreign = check_bytecode(root)
        tag = sys.implementation.cache_tag
        print(
            f"{arg}: {sources - left} of {sources} modules compiled for {tag}"
            f" ({left} left as source, {foreign} foreign .pyc)"
        )
        status |= 1 if foreign else 0
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
