"""Bad input: the nasty corpus, hypothesis strategies, and a counted fuzz run of contract and ingest.

``fuzz_contract`` drives ``decode_event`` with arbitrary bytes, arbitrary JSON and near-valid
events (hypothesis, run programmatically so every input is counted) and checks each verdict is a
valid event or a documented quarantine reason. ``fuzz_through_ingest`` puts the corpus and a
sample of generated inputs on the stream of a local stack, between valid events, and reads back
from S3 that every record is archived or quarantined with its reason and the batch went on.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.contract import ContractViolation, QuarantineReason, decode_event

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
VALID: dict[str, Any] = {
    "schema_version": 1,
    "event_id": "e-1",
    "user_id": "u-1",
    "type": "rate",
    "item_id": "242",
    "value": 4,
    "timestamp": NOW.isoformat(),
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
near_valid_values = json_values | st.text() | st.integers(min_value=-(10**30), max_value=10**30)


def _event(**fields: Any) -> bytes:
    return json.dumps({**VALID, **fields}).encode()


def nasty_inputs() -> dict[str, bytes]:
    """Producer mistakes and hostile payloads; every one must be refused with a reason."""
    return {
        "invalid utf-8": b'{"schema_version": 1, "user_id": "\xff\xfe"}',
        "overlong utf-8 slash": b'{"schema_version": 1, "user_id": "\xc0\xaf"}',
        "lone surrogate escape": _event(user_id="\ud800"),
        "deep nesting": b"[" * 10_000 + b"]" * 10_000,
        "deep nesting under the size limit": b"[" * 4000 + b"]" * 4000,
        "deep object": ('{"a":' * 3000 + "1" + "}" * 3000).encode(),
        "huge number": _event(value=10**400),
        "huge float literal": _event().replace(b'"value": 4', b'"value": 1e999'),
        "negative huge float": _event().replace(b'"value": 4', b'"value": -1e999'),
        "NaN": _event().replace(b'"value": 4', b'"value": NaN'),
        "Infinity": _event().replace(b'"value": 4', b'"value": Infinity'),
        "1 MB payload": _event(item_id="x" * 1_000_000),
        "just over 10 KB": _event(item_id="x" * 10_300),
        "odd unicode id": _event(user_id="u\u202eevil\u0000"),
        "zero-width id": _event(user_id="u\u200b1"),
        "homoglyph id": _event(user_id="\u0430dmin"),
        "emoji id": _event(item_id="🍿"),
        "NUL in id": _event(event_id="e\x001"),
        "129-char id": _event(event_id="e" * 129),
        "sql injection": _event(user_id="1'; DROP TABLE users;--"),
        "script injection": _event(item_id="<script>alert(1)</script>"),
        "nosql operator": _event(user_id={"$ne": None}),
        "path traversal timezone": json.dumps(
            {**VALID, "type": "profile", "timezone": "../../etc/passwd", "item_id": None, "value": None}
        ).encode(),
        "prototype pollution": _event(__proto__={"admin": True}),
        "wrong schema version": _event(schema_version=2),
        "schema version 0": _event(schema_version=0),
        "schema version as string": _event(schema_version="1"),
        "schema version as float": _event(schema_version=1.0),
        "schema version as bool": _event(schema_version=True),
        "bool for value": _event(value=True),
        "rating out of range": _event(value=6),
        "type as list": _event(type=["rate"]),
        "unknown type": _event(type="like"),
        "extra field": _event(admin=True),
        "duplicate keys": b'{"schema_version": 1, "schema_version": 2, "event_id": "e", "user_id": "u"}',
        "naive timestamp": _event(timestamp="2026-11-27T12:00:00"),
        "timestamp in 2099": _event(timestamp="2099-01-01T00:00:00Z"),
        "timestamp in 1970": _event(timestamp="1970-01-01T00:00:00Z"),
        "timestamp as number": _event(timestamp=1_800_000_000),
        "empty object": b"{}",
        "array of events": json.dumps([VALID]).encode(),
        "null": b"null",
        "a string": b'"rate"',
        "empty": b"",
        "whitespace": b"   \n\t",
        "BOM then JSON": b"\xef\xbb\xbf" + _event(),
        "UTF-16 JSON": json.dumps(VALID).encode("utf-16"),
        "gzip of a valid event": b"\x1f\x8b\x08\x00" + _event()[:20],
        "CSV line": b"rating,196,242,3",
        "truncated JSON": _event()[:-5],
    }


def verdict(raw: bytes, now: datetime = NOW) -> str:
    """ "valid", or the quarantine reason; anything else escaping is a bug (raised)."""
    try:
        decode_event(raw, now)
    except ContractViolation as violation:
        if violation.reason not in QuarantineReason:
            raise AssertionError(f"undocumented reason {violation.reason!r}") from violation
        return violation.reason.value
    return "valid"


def fuzz_contract(examples: int = 300, seed: int = 0) -> dict[str, Any]:
    """Hypothesis over decode_event: returns how many inputs were tried and the verdicts."""
    verdicts: Counter[str] = Counter()
    tried: Counter[str] = Counter()
    config = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )

    def record(kind: str, raw: bytes) -> str:
        tried[kind] += 1
        result = verdict(raw)
        verdicts[result] += 1
        return result

    @config
    @given(st.binary(max_size=2048))
    def arbitrary_bytes(raw: bytes) -> None:
        record("arbitrary_bytes", raw)

    @config
    @given(json_values)
    def arbitrary_json(value: Any) -> None:
        result = record("arbitrary_json", json.dumps(value).encode())
        assert result != "valid" or isinstance(value, dict)

    @config
    @given(st.sampled_from(sorted(VALID)), near_valid_values)
    def near_valid(field: str, value: Any) -> None:
        record("near_valid", json.dumps({**VALID, field: value}).encode())

    started = time.perf_counter()
    for test in (arbitrary_bytes, arbitrary_json, near_valid):
        test()
    for name, raw in nasty_inputs().items():
        result = record("corpus", raw)
        if result == "valid":
            raise AssertionError(f"nasty input accepted: {name}")
    return {
        "inputs_tried": sum(tried.values()),
        "by_strategy": dict(tried),
        "verdicts": dict(verdicts),
        "seed": seed,
        "wall_s": round(time.perf_counter() - started, 3),
    }


def generated_sample(count: int, seed: int = 0) -> list[bytes]:
    """Cheap random bad payloads for the pipeline run (hypothesis shrinking is not needed there)."""
    rng = random.Random(seed)
    keys = sorted(VALID)
    out: list[bytes] = []
    for n in range(count):
        if n % 3 == 0:
            out.append(rng.randbytes(rng.randint(0, 200)))
        elif n % 3 == 1:
            out.append(
                json.dumps({**VALID, rng.choice(keys): rng.choice([None, [], {}, -1, 1e308, "", "x" * 200])}).encode()
            )
        else:
            body = bytearray(_event(event_id=f"mut-{n}"))
            body[rng.randrange(len(body))] = rng.randrange(256)
            out.append(bytes(body))
    return out


def fuzz_through_ingest(generated: int = 200, seed: int = 0, log_dir: Path | None = None) -> dict[str, Any]:
    """The corpus and generated inputs through the real stream and ingest handler (moto).

    Every bad record must end as a quarantine line carrying its reason; the valid events put
    before and after each bad one must be archived (the batch goes on).
    """
    from reliability.audit import archived_lines
    from runner.clock import SimulatedClock
    from runner.pipeline import LocalPipeline

    started = time.perf_counter()
    bad = [*nasty_inputs().values(), *generated_sample(generated, seed)]
    records: list[bytes] = []
    good_ids: list[str] = []
    for n, raw in enumerate(bad):
        good_ids.append(f"good-{n}")
        records.append(_event(event_id=f"good-{n}", user_id=f"u-{n % 7}"))
        records.append(raw)
    logging.getLogger("runner").setLevel(logging.ERROR)
    with LocalPipeline(
        ROOT / "template.yaml",
        stack_name="nudge-fuzz",
        clock=SimulatedClock(NOW),
        functions=["IngestFunction"],
        env_overrides={"IngestFunction": {"POWERTOOLS_LOG_LEVEL": "ERROR"}},
        log_dir=log_dir,
    ) as pipe:
        key_of = {id(r): f"p{n // 2 % 16}" for n, r in enumerate(records)}
        pipe.put_events(records, partition_key=lambda r: key_of[id(r)])
        quiescent = pipe.pump().quiescent
        archive = archived_lines(pipe, "archive/")
        quarantine = archived_lines(pipe, "quarantine/")
        put = {pos: records[i] for i, pos in enumerate(pipe.positions)}
        archived_ids = Counter(str(line["event"]["event_id"]) for line in archive)
        quarantined = {(str(line["shard_id"]), str(line["sequence_number"])): line for line in quarantine}
        bad_positions = [pos for i, pos in enumerate(pipe.positions) if i % 2 == 1]
        dead = sum(len(pipe.receive_json(url)) for o, url in pipe.outputs.items() if o == "IngestDeadLetterQueueUrl")
    missing_bad = [pos for pos in bad_positions if pos not in quarantined]
    accepted_bad = [p for p in missing_bad if verdict(put[p], NOW) == "valid"]
    without_reason = [
        p for p, line in quarantined.items() if line.get("reason") not in {r.value for r in QuarantineReason}
    ]
    return {
        "records_put": len(records),
        "bad_records_put": len(bad),
        "bad_quarantined_with_reason": len(bad_positions) - len(missing_bad),
        "generated_that_were_valid": len(accepted_bad),
        "bad_lost": len(missing_bad) - len(accepted_bad),
        "good_archived": sum(1 for i in good_ids if archived_ids[i] >= 1),
        "good_lost": sum(1 for i in good_ids if archived_ids[i] == 0),
        "quarantine_lines_without_reason": len(without_reason),
        "quarantine_reasons": dict(Counter(str(line["reason"]) for line in quarantined.values())),
        "dead_letter_messages": dead,
        "quiescent": quiescent,
        "wall_s": round(time.perf_counter() - started, 3),
    }
