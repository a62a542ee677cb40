"""How big each user's state items are, attribute by attribute, for the cost replay's users.

    python -m bench.state_size [--users 12] [--days 2] [--events-per-day 30] [--genres]

The users are the cost replay's (testkit/traffic.py ``app_sessions``, as bench/cost_model.py sends
them), their events folded with the fold the features function runs (``apply_event``, each event at
its own stream position, one save per event as Lambda's 1-second window delivers them) and saved
through the items' codec, so the sizes are the stored ones without a stack. Sizes follow DynamoDB's
rules (bench/cost_meter.py ``item_size``: attribute names plus values), and a write is billed 1 unit
per started KB of the item. ``--genres`` gives every item two of the MovieLens genres (the replay's
catalog has none), which adds the genre affinities a real catalog brings.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.cost_meter import attribute_size, item_size, typed
from shared.adapters.user_state_codec import encode_hot, encode_profile, tail_is_full
from shared.domain.admission import StreamPosition
from shared.domain.contract import FeedbackEvent, ProfileEvent
from shared.domain.fold import apply_event
from shared.domain.user_state import UserState
from testkit import traffic
from testkit.text import table

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 23, 0, tzinfo=UTC)  # bench/cost_model.py's start
GENRES = [
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
KB = 1024


def write_units(size: int) -> int:
    return max(1, math.ceil(size / KB))


def attribute_bytes(item: dict[str, object]) -> dict[str, int]:
    """Each attribute's share of the item's size: its name plus its value."""
    return {name: len(name.encode()) + attribute_size(value) for name, value in typed(item).items()}


@dataclass
class Sizes:
    """The items as the last save left them, and what the saves wrote."""

    hot: list[dict[str, object]] = field(default_factory=list)
    profile: list[dict[str, object]] = field(default_factory=list)
    saves: int = 0
    profile_writes: int = 0
    write_units: int = 0

    def mean(self, items: Sequence[dict[str, object]]) -> float:
        return sum(item_size(typed(i)) for i in items) / max(1, len(items))

    def by_attribute(self, items: Sequence[dict[str, object]]) -> dict[str, float]:
        total: defaultdict[str, int] = defaultdict(int)
        for item in items:
            for name, size in attribute_bytes(item).items():
                total[name] += size
        return {name: size / max(1, len(items)) for name, size in sorted(total.items(), key=lambda kv: -kv[1])}


def fold_users(
    users: int = 12, days: int = 2, per_day: int = 30, genres: bool = False, items: Sequence[str] | None = None
) -> Sizes:
    """Fold the cost replay's events one save each, as bench/cost_model.py's replay delivers them."""
    vocab = list(items) if items is not None else _model_items()

    def two_genres(item_id: str) -> list[str]:
        code = zlib.crc32(item_id.encode())  # fixed per item, unlike hash() across processes
        return [GENRES[code % len(GENRES)], GENRES[(code // 7) % len(GENRES)]]

    genres_of: Callable[[str], list[str]] = two_genres if genres else (lambda i: [])
    states: dict[str, UserState] = {}
    out = Sizes()
    stored: dict[str, tuple[int, int]] = {}  # user -> (hot size, profile size) as stored
    for n, event in enumerate(traffic.app_sessions(users, days, per_day, vocab, T0)):
        if isinstance(event, FeedbackEvent):  # the replay's feedback answers pushes; none here
            continue
        state = states.setdefault(event.user_id, UserState(user_id=event.user_id))
        apply_event(state, event, genres_of, StreamPosition("shardId-000000000000", str(10**20 + n)))
        state.version += 1
        state.last_writer, state.asks_decision, state.decision_asked_at = "features", True, event.epoch_seconds
        hot_before, profile_before = stored.get(state.user_id, (0, 0))
        # The store's rule (UserStateStore.save): the profile item goes when a profile event came, when
        # the user has none yet, and when the consumed items riding in the hot item are due to move.
        if isinstance(event, ProfileEvent) or state.profile_version == 0 or tail_is_full(state):
            state.profile_version += 1
            profile = item_size(typed(encode_profile(state, state.profile_version, "features")))
            state.consumed_flushed = len(state.consumed)
            out.profile_writes += 1
            out.write_units += write_units(max(profile, profile_before))
            profile_before = profile
        hot = item_size(typed(encode_hot(state)))
        out.write_units += write_units(max(hot, hot_before))
        out.saves += 1
        stored[state.user_id] = (hot, profile_before)
    out.hot = [encode_hot(s) for s in states.values()]
    out.profile = [encode_profile(s, s.profile_version, "features") for s in states.values()]
    return out


def _model_items() -> list[str]:
    manifest = json.loads((ROOT / "layers" / "model" / "manifest.json").read_text())
    return [str(i) for i in manifest["item_vocab"] if not str(i).startswith("<")][:400]


def report(sizes: Sizes) -> str:
    hot, profile = sizes.mean(sizes.hot), sizes.mean(sizes.profile)
    largest = max(item_size(typed(i)) for i in sizes.hot)
    lines = [
        f"hot item: {hot:,.0f} bytes on average, {largest:,} at most ({write_units(largest)} write unit(s))",
        f"profile item: {profile:,.0f} bytes on average",
        f"{sizes.saves:,} saves wrote the profile item {sizes.profile_writes:,} times; "
        f"{sizes.write_units / sizes.saves:.2f} write units per event",
        "",
    ]
    for name, items in (("hot", sizes.hot), ("profile", sizes.profile)):
        lines.append(
            table([f"{name} attribute", "bytes"], [[k, f"{v:.0f}"] for k, v in sizes.by_attribute(items).items()])
        )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--events-per-day", type=int, default=30)
    parser.add_argument("--genres", action="store_true", help="two MovieLens genres per item")
    args = parser.parse_args(argv)
    print(report(fold_users(args.users, args.days, args.events_per_day, args.genres)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
