"""Paths and helpers shared by the runner's tests (a uniquely named module, not conftest)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOY_TEMPLATE = FIXTURES / "toy_template.yaml"
SERVE_TEMPLATE = FIXTURES / "serve_template.yaml"
REAL_TEMPLATE = REPO_ROOT / "template.yaml"


def kinesis_payloads(invocation: dict[str, Any]) -> list[Any]:
    """The decoded data of every Kinesis record one recorded invocation received."""
    out: list[Any] = []
    for record in invocation["event"]["Records"]:
        raw = base64.b64decode(record["kinesis"]["data"])
        try:
            out.append(json.loads(raw))
        except ValueError:
            out.append(raw.decode())
    return out


def ids(invocation: dict[str, Any]) -> list[Any]:
    return [p["id"] if isinstance(p, dict) else p for p in kinesis_payloads(invocation)]
