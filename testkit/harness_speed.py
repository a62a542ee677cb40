"""What makes a scenario cheaper to run in one process without changing what it runs.

- botocore's parsed service models are shared by every simulated container. The runner makes a cold
  start by importing a function's own modules afresh; the new boto3 session then builds a new data
  loader, which would parse botocore's JSON models again: 1.7 s of a 46-second MovieLens replay, 11 of
  the 38 seconds of a fault scenario full of crashes. The models are static data, like the
  site-packages modules the runner does not re-import either, so every data loader built meanwhile
  (botocore's own, or the project's ServiceLoader, a new class at each cold start) shares one cache
  of parsed models per loader class name and search path.
- The cyclic garbage collector runs less often. moto's backends are large graphs of objects in
  reference cycles; at the default threshold (every 700 allocations) the collector keeps walking them:
  deploying the template took 0.69 s, 0.42 s with a threshold of 50,000.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

import botocore.loaders

GC_THRESHOLD = (50_000, 20, 20)


@contextlib.contextmanager
def shared_service_models() -> Iterator[None]:
    saved = botocore.loaders.Loader.__init__
    caches: dict[tuple[str, tuple[str, ...]], dict[Any, Any]] = {}

    def init(loader: Any, *args: Any, **kwargs: Any) -> None:
        saved(loader, *args, **kwargs)
        loader._cache = caches.setdefault((type(loader).__qualname__, tuple(loader.search_paths)), loader._cache)

    botocore.loaders.Loader.__init__ = init
    try:
        yield
    finally:
        botocore.loaders.Loader.__init__ = saved


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*saved)


@contextlib.contextmanager
def faster_harness() -> Iterator[None]:
    with fewer_collections(), shared_service_models():
        yield
