"""Driving `python -m runner serve` from a test: wait for its ready file, talk to its endpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest


def clean_env() -> dict[str, str]:
    """The environment of a new shell without AWS settings: no credentials, region or endpoint."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def daytime_zone(now: datetime) -> str:
    """A time zone where it is day now, so default quiet hours do not defer the push."""
    for zone in ("UTC", "Asia/Tokyo", "America/New_York", "Asia/Kolkata", "America/Los_Angeles", "Europe/Berlin"):
        if 9 <= now.astimezone(ZoneInfo(zone)).hour < 20:
            return zone
    raise AssertionError("some zone is always in daytime")


def start_serve(
    template: Path, stack_name: str, workdir: Path, cwd: Path, *extra: str
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """``python -m runner serve`` on a free port in a child process (no AWS_* env leaks in).

    Returns the process, its ready file and its stderr file; stdout goes to ``serve.out``.
    """
    ready, out, err = workdir / "ready.json", workdir / "serve.out", workdir / "serve.err"
    cmd = [sys.executable, "-m", "runner", "serve", "--port", "0", "--template", str(template)]
    cmd += ["--stack-name", stack_name, "--ready-file", str(ready), "--log-dir", str(workdir / "logs"), *extra]
    env = clean_env()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
    return proc, ready, err


def wait_ready(proc: subprocess.Popen[bytes], ready: Path, stderr: Path, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"runner serve exited with {proc.returncode}:\n{stderr.read_text()[-3000:]}")
        if ready.exists():
            data: dict[str, Any] = json.loads(ready.read_text())
            return data
        time.sleep(0.1)
    pytest.fail(f"runner serve not ready after {timeout_s}s:\n{stderr.read_text()[-3000:]}")


def endpoint_client(service: str, info: dict[str, Any]) -> Any:
    return boto3.client(
        service,
        endpoint_url=info["endpoint_url"],
        region_name=info["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then kill if it does not stop: a test never leaves a server behind."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
