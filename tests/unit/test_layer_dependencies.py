"""The dependencies layer carries every third-party package the deployed functions import.

Nothing else would catch a gap before deployment: the tests run in a venv that has everything,
moto runs no Lambda code, and the layer's aarch64 wheels cannot be imported here. So this reads
every import statement in shared/ and functions/ and resolves it against the requirement closure
of layers/dependencies/requirements.txt, using the installed distributions' own metadata.
"""

from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LAYER_REQUIREMENTS = ROOT / "layers" / "dependencies" / "requirements.txt"
# The python3.12 Lambda runtime ships these; the layer build deletes them so the runtime's copies win.
RUNTIME_PROVIDED = {"boto3", "botocore", "snapshot_restore_py"}
# Imports that need a distribution although the module itself is in the standard library.
STDLIB_NEEDING = {"zoneinfo": "tzdata"}
# Packages that only one function's own layer will carry, never the dependencies layer every function
# gets: module -> the only files allowed to import it. tokenizers (and huggingface-hub, its declared
# dependency) is for the catalog function's encoder layer (issue 12); Decide never loads the encoder.
OWN_LAYER_IMPORTS = {"tokenizers": {"shared/adapters/text_encoder.py"}}
OWN_LAYER_REQUIREMENTS = {"tokenizers": ROOT / "layers" / "encoder" / "requirements.txt"}


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _deployed_imports() -> dict[str, set[str]]:
    """Top-level module -> the files importing it, over everything the functions deploy."""
    found: dict[str, set[str]] = {}
    for path in [*sorted((ROOT / "shared").rglob("*.py")), *sorted((ROOT / "functions").glob("*/app.py"))]:
        for name in _top_level_imports(path):
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def _layer_requirements() -> list[Requirement]:
    lines = (line.split("#")[0].strip() for line in LAYER_REQUIREMENTS.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def _closure(requirements: list[Requirement]) -> set[str]:
    """Canonical names of the requirements and everything they pull in (extras and markers applied)."""
    seen: set[str] = set()
    pending = [(req, frozenset(req.extras)) for req in requirements]
    while pending:
        req, extras = pending.pop()
        name = canonicalize_name(req.name)
        if name in seen and not extras:
            continue
        seen.add(name)
        for spec in metadata.requires(req.name) or []:
            child = Requirement(spec)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(env) for env in environments):
                pending.append((child, frozenset(child.extras)))
    return seen


def test_every_third_party_import_is_in_the_layer() -> None:
    closure = _closure(_layer_requirements())
    providers = metadata.packages_distributions()
    missing: dict[str, str] = {}
    for module, files in sorted(_deployed_imports().items()):
        if module in STDLIB_NEEDING:
            if canonicalize_name(STDLIB_NEEDING[module]) not in closure:
                missing[module] = f"needs {STDLIB_NEEDING[module]} (imported by {sorted(files)})"
            continue
        if module in sys.stdlib_module_names or module == "shared" or module in RUNTIME_PROVIDED:
            continue
        if module in OWN_LAYER_IMPORTS:
            if files - OWN_LAYER_IMPORTS[module]:
                missing[module] = f"only {sorted(OWN_LAYER_IMPORTS[module])} may import it (also {sorted(files)})"
            continue
        distributions = {canonicalize_name(d) for d in providers.get(module, [])}
        if not distributions:
            missing[module] = f"no installed distribution provides it (imported by {sorted(files)})"
        elif not distributions & closure:
            missing[module] = f"from {sorted(distributions)}, not in the layer (imported by {sorted(files)})"
    assert not missing, missing


def test_own_layer_packages_are_in_their_layer_with_the_developers_pin() -> None:
    """The encoder layer (CatalogFunction's) installs tokenizers at the version the tests run with."""
    developer = {Requirement(r).name: r for r in _requirements_of(ROOT / "requirements" / "dev.txt")}
    for module, requirements in OWN_LAYER_REQUIREMENTS.items():
        layer = {Requirement(r).name: r for r in _requirements_of(requirements)}
        assert module in layer and layer[module] == developer[module]
        assert canonicalize_name(module) not in _closure(_layer_requirements())


def test_the_check_sees_a_missing_package() -> None:
    # Without pydantic-settings (the gap this test was written for) shared/plumbing/config.py is uncovered.
    without = [req for req in _layer_requirements() if canonicalize_name(req.name) != "pydantic-settings"]
    closure = _closure(without)
    assert "pydantic-settings" not in closure
    assert {"pydantic", "pydantic-core", "numpy", "onnxruntime", "aws-xray-sdk", "tzdata"} <= closure
    assert "pydantic_settings" in _deployed_imports()


def _requirements_of(path: Path) -> set[str]:
    """Every requirement a pip requirements file asks for, following its ``-r`` includes."""
    out: set[str] = set()
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r"):
            out |= _requirements_of((path.parent / line[2:].strip()).resolve())
        elif line:
            out.add(str(Requirement(line)))
    return out


def test_developer_requirements_install_exactly_the_layer_and_nothing_of_their_own() -> None:
    # requirements/runtime.txt must be the layer's list, not a copy that can drift from it.
    layer = {str(req) for req in _layer_requirements()}
    assert _requirements_of(ROOT / "requirements" / "runtime.txt") == layer
    assert layer <= _requirements_of(ROOT / "requirements" / "dev.txt")
