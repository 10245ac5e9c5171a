"""``codec``: µs per decoded fix, ours against stdlib json + hand validation (the naive way)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import msgpack

from gateway import codec

NOW = time.time()
FIX = {"ts": NOW - 5, "lat": 60.17, "lon": 24.94, "spd": 8.3, "hdg": 91.0, "acc": 6.0, "bat": 80}


def _per_op_us(fn: Callable[[], object], n: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def _naive(payload: bytes) -> object:
    obj = json.loads(payload)
    for name in ("ts", "lat", "lon"):
        if not isinstance(obj.get(name), int | float):
            raise ValueError(name)
    return obj


def run(quick: bool) -> dict[str, Any]:
    n = 50_000 if quick else 500_000
    one_json = json.dumps(FIX).encode()
    one_pack = msgpack.packb(FIX)
    batch = [dict(FIX, ts=NOW - 100 + i) for i in range(50)]
    batch_json = json.dumps(batch).encode()
    owntracks = json.dumps(
        {"_type": "location", "tst": int(NOW), "lat": "60.17", "lon": "24.94", "vel": "-1",
         "cog": 90, "acc": 5, "batt": 77}
    ).encode()  # fmt: skip
    bad = json.dumps(dict(FIX, lat=123.0)).encode()
    json_us = _per_op_us(lambda: codec.decode_positions("d", one_json, NOW), n)
    naive_us = _per_op_us(lambda: _naive(one_json), n)
    return {
        "json_fix_us": round(json_us, 3),
        "msgpack_fix_us": round(
            _per_op_us(lambda: codec.decode_positions("d", one_pack, NOW), n), 3
        ),
        "json_batch50_us_per_fix": round(
            _per_op_us(lambda: codec.decode_positions("d", batch_json, NOW), n // 50) / 50, 3
        ),
        "owntracks_us": round(
            _per_op_us(lambda: codec.decode_owntracks("u:d", owntracks, NOW), n), 3
        ),
        "rejected_fix_us": round(_per_op_us(lambda: codec.decode_positions("d", bad, NOW), n), 3),
        "baseline_stdlib_json_us": round(naive_us, 3),
        "speedup_vs_stdlib": round(naive_us / json_us, 2),
    }
