"""The layout's promise: the domain and the services import neither botocore nor onnxruntime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("botocore", "boto3", "onnxruntime", "numpy")


def loaded_by(modules: list[str]) -> list[str]:
    probe = f"import json, sys\nfor m in {modules!r}: __import__(m)\n"
    probe += f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_the_domain_and_the_services_load_no_aws_sdk_and_no_model_runtime() -> None:
    pure = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for package in ("shared/domain", "shared/services")
        for path in (ROOT / package).glob("*.py")
    )
    assert "shared.domain.policy" in pure and "shared.services.decide" in pure
    assert loaded_by(pure) == []


def test_the_probe_sees_an_adapters_imports() -> None:
    assert loaded_by(["shared.adapters.aws_errors"]) == ["botocore"]
    assert "onnxruntime" in loaded_by(["shared.model"])
