"""The harness's layout: nothing outside tests/ imports tests/, and the generic runner imports no Nudge kit."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = {
    ".venv",
    ".venv-sam",
    ".venv-checkov",
    ".venv-py312",
    ".venv-obp",
    ".venv-encoder",
    ".aws-sam",
    "out",
    ".git",
    "tests",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def sources(top: Path) -> list[Path]:
    return [p for p in top.rglob("*.py") if not SKIP & set(p.relative_to(ROOT).parts)]


def importers_of(package: str, files: list[Path]) -> list[str]:
    return sorted(
        str(p.relative_to(ROOT))
        for p in files
        if any(m == package or m.startswith(f"{package}.") for m in imported_modules(p))
    )


def test_nothing_outside_tests_imports_tests() -> None:
    files = sources(ROOT)
    assert any(p.parts[-2] == "testkit" for p in files) and len(files) > 50
    assert importers_of("tests", files) == []


def test_the_runner_imports_no_nudge_kit() -> None:
    runner = sources(ROOT / "runner")
    assert importers_of("testkit", runner) == []
    assert importers_of("shared", runner) == []


def test_the_probe_finds_imports() -> None:
    assert importers_of("testkit", sources(ROOT / "demo")) != []
