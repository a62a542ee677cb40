"""Lambda SnapStart runtime hooks (template parameter SnapStart=PublishedVersions).

With SnapStart, Lambda runs a version's init once, when the version is published, snapshots the
execution environment's memory, and resumes every new environment of that version from the snapshot.
Each handler module calls ``register(<its service factory>)`` at import; the hooks then:

- before the snapshot, build the function's service (settings validated, model loaded, boto3 clients
  created), so the snapshot holds that work instead of every environment's first invocation; a
  misconfigured deployment fails when the version is published, with the settings' own error;
- after each restore, re-seed ``random`` (its state in the snapshot is shared by every environment
  restored from it: botocore's retry jitter, Powertools' log sampling) and forget the session, its
  clients and the services holding them (bootstrap.forget_connections): the snapshot's sockets and
  credentials belong to the environment that took it. They are rebuilt on first use from the parsed
  service models the snapshot keeps, with the settings, the ONNX session and the policy.

The hooks come from ``snapshot_restore_py``, which the Python 3.12+ managed runtimes provide. Anywhere
else (tests, the local runner, the benchmarks) it is absent and nothing is registered. With SnapStart
off the runtime never calls the hooks, so init and the first invocation are exactly as without them.
Nudge's own randomness (exploration) is derived from decision ids, not from ``random``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from shared.plumbing import bootstrap


def before_snapshot(warm: Callable[[], Any]) -> None:
    warm()


def after_restore() -> None:
    random.seed()
    bootstrap.forget_connections()


def register(warm: Callable[[], Any]) -> bool:
    """Register the hooks with the runtime; False where there is no runtime to register with."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(before_snapshot, warm)
    register_after_restore(after_restore)
    return True
