"""layers/bytecode/compile_bytecode.py writes bytecode Lambda will use as is, for the right Python only.

`make build` runs it under CPython 3.12 (native or Pyodide); here it runs under this interpreter with
its target version patched, which exercises the same compile and checks.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "compile_bytecode", ROOT / "layers" / "bytecode" / "compile_bytecode.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_refuses_any_python_but_the_runtime_s(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    compile_bytecode = _load()
    if sys.version_info[:2] == compile_bytecode.TARGET:
        pytest.skip("this interpreter is the target version")
    assert compile_bytecode.main([str(tmp_path)]) == 2
    assert "needs Python 3.12" in capsys.readouterr().out
    assert not list(tmp_path.rglob("*.pyc"))


def test_writes_unchecked_hash_bytecode_beside_every_source(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    compile_bytecode = _load()
    monkeypatch.setattr(compile_bytecode, "TARGET", sys.version_info[:2])
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 41\n")
    (package / "sub" / "mod.py").write_text("def answer() -> int:\n    return 42\n")
    (package / "py2.py").write_text("print 'left over'\n")  # does not compile: left as source

    assert compile_bytecode.main([str(tmp_path)]) == 0
    assert "2 of 3 modules compiled" in capsys.readouterr().out
    tag = sys.implementation.cache_tag
    for source in (package / "__init__.py", package / "sub" / "mod.py"):
        pyc = (source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc").read_bytes()
        assert pyc[:4] == importlib.util.MAGIC_NUMBER
        # PEP 552 flags: hash-based (bit 0) and not checked against the source (bit 1 clear).
        assert struct.unpack("<I", pyc[4:8])[0] == 0b01

    # A changed source is not re-read: the layer is immutable, so bytecode is trusted as built.
    (package / "__init__.py").write_text("VALUE = 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    sys.modules.pop("pkg", None)
    try:
        assert importlib.import_module("pkg").VALUE == 41
    finally:
        sys.modules.pop("pkg", None)


def test_counts_bytecode_of_another_python(tmp_path: Path) -> None:
    compile_bytecode = _load()
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "mod.cpython-39.pyc").write_bytes(b"\x61\x0d\x0d\x0a" + bytes(12))
    assert compile_bytecode.check_bytecode(tmp_path) == 1
