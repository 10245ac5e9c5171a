"""MemoryStore: dedupe, late fixes, history windows and bounds, technicians and jobs."""

from __future__ import annotations

import pytest

from gateway.model import Fix, Job, Site, Technician, Window
from gateway.store import MemoryStore, Verdict

T0 = 1_700_000_000.0
N, L, D = Verdict.NEWEST, Verdict.LATE, Verdict.DUPLICATE


def f(ts: float, device_id: str = "d1", lat: float = 60.0) -> Fix:
    return Fix(device_id, T0 + ts, lat, 24.0)


# (stamps offered in order, verdicts, latest stamp, history stamps)
RECORDING: list[tuple[str, list[float], list[Verdict], float, list[float]]] = [
    ("in order", [1, 2, 3], [N, N, N], 3, [1, 2, 3]),
    ("repeat of newest", [1, 2, 2], [N, N, D], 2, [1, 2]),
    ("repeat of an older one", [1, 2, 3, 1], [N, N, N, D], 3, [1, 2, 3]),
    ("late fix", [1, 5, 3], [N, N, L], 5, [1, 3, 5]),
    ("late, then its repeat", [5, 3, 3], [N, L, D], 5, [3, 5]),
    ("older than everything", [5, 6, 0], [N, N, L], 6, [0, 5, 6]),
    ("repeat inside a batch", [1, 1, 1], [N, D, D], 1, [1]),
]


@pytest.mark.parametrize(
    ("stamps", "verdicts", "latest", "history"),
    [r[1:] for r in RECORDING],
    ids=[r[0] for r in RECORDING],
)
async def test_record_fixes(
    stamps: list[float], verdicts: list[Verdict], latest: float, history: list[float]
) -> None:
    store = MemoryStore()
    assert await store.record_fixes([f(s) for s in stamps]) == verdicts
    assert await store.latest("d1") == f(latest)
    assert [x.ts - T0 for x in await store.history("d1", None, None, 100)] == history


async def test_one_call_per_fix_gives_the_same_verdicts() -> None:
    store = MemoryStore()
    got = [(await store.record_fixes([f(s)]))[0] for s in (1, 5, 3, 5, 3)]
    assert got == [N, N, L, D, D]


async def test_duplicate_keeps_the_first_fix() -> None:
    store = MemoryStore()
    await store.record_fixes([f(1, lat=10.0), f(1, lat=20.0)])
    assert await store.history("d1", None, None, 10) == [f(1, lat=10.0)]
    assert await store.latest("d1") == f(1, lat=10.0)


async def test_devices_are_separate() -> None:
    store = MemoryStore()
    assert await store.record_fixes([f(1, "a"), f(1, "b"), f(2, "a")]) == [N, N, N]
    assert await store.latest("a") == f(2, "a")
    assert await store.latest("b") == f(1, "b")
    assert await store.latest("c") is None
    assert await store.history("c", None, None, 10) == []
    assert store.device_count == 2


WINDOWS: list[tuple[float | None, float | None, int, list[float]]] = [
    (None, None, 100, [10, 20, 30, 40, 50]),
    (20, None, 100, [20, 30, 40, 50]),  # since is inclusive
    (None, 40, 100, [10, 20, 30, 40]),  # until is inclusive
    (15, 45, 100, [20, 30, 40]),
    (20, 40, 2, [20, 30]),  # limit keeps the oldest first
    (None, None, 1, [10]),
    (51, None, 100, []),
    (None, 9, 100, []),
    (40, 20, 100, []),
]


@pytest.mark.parametrize(("since", "until", "limit", "expected"), WINDOWS)
async def test_history_window(
    since: float | None, until: float | None, limit: int, expected: list[float]
) -> None:
    store = MemoryStore()
    await store.record_fixes([f(s) for s in (30, 10, 50, 20, 40)])
    got = await store.history(
        "d1", None if since is None else T0 + since, None if until is None else T0 + until, limit
    )
    assert [x.ts - T0 for x in got] == expected


@pytest.mark.parametrize("limit", [1, 8, 100])
async def test_history_is_bounded_and_keeps_the_newest(limit: int) -> None:
    store = MemoryStore(history_per_device=limit)
    for i in range(5 * limit):
        await store.record_fixes([f(i)])
        kept = await store.history("d1", None, None, 10 * limit)
        assert limit <= len(kept) or len(kept) == i + 1
        assert len(kept) <= limit + limit // 8
        assert [x.ts - T0 for x in kept] == list(range(i + 1 - len(kept), i + 1))
    assert await store.latest("d1") == f(5 * limit - 1)


async def test_late_fix_after_trimming_does_not_move_latest() -> None:
    store = MemoryStore(history_per_device=4)
    await store.record_fixes([f(i) for i in range(10, 20)])
    assert await store.record_fixes([f(1)]) == [L]
    assert await store.latest("d1") == f(19)
    kept = [x.ts - T0 for x in await store.history("d1", None, None, 100)]
    assert kept[-4:] == [16, 17, 18, 19]


async def test_technicians_and_device_owners() -> None:
    store = MemoryStore()
    alice = Technician("alice", "Alice", ("d1", "d2"), ("gas",))
    assert await store.put_technician(alice) is None
    await store.put_technician(Technician("bob", "Bob", ("d3",)))
    assert [await store.technician_of(d) for d in ("d1", "d2", "d3", "d4")] == [
        "alice", "alice", "bob", None,
    ]  # fmt: skip
    moved = Technician("alice", "Alice B.", ("d2", "d4"))
    assert await store.put_technician(moved) == alice
    assert [await store.technician_of(d) for d in ("d1", "d2", "d4")] == [None, "alice", "alice"]
    assert await store.get_technician("alice") == moved
    assert await store.get_technician("nobody") is None
    assert [t.technician_id for t in await store.list_technicians()] == ["alice", "bob"]


async def test_re_registering_does_not_steal_back_a_handed_over_device() -> None:
    store = MemoryStore()
    await store.put_technician(Technician("alice", "Alice", ("d1",)))
    await store.put_technician(Technician("bob", "Bob", ("d1",)))  # the phone changed hands
    assert await store.technician_of("d1") == "bob"
    await store.put_technician(Technician("alice", "Alice", ("d2",)))  # alice's new phone
    assert await store.technician_of("d1") == "bob"
    assert await store.technician_of("d2") == "alice"


def job(job_id: str, tech: str | None, sequence: int, start: float | None = None) -> Job:
    window = None if start is None else Window(start, start + 3600)
    return Job(job_id, tech, Site(60.0, 24.0), window, sequence=sequence)


async def test_jobs() -> None:
    store = MemoryStore()
    jobs = [
        job("j-c", "alice", 2),
        job("j-a", "alice", 3),
        job("j-b", "alice", 1, start=T0 + 100),
        job("j-d", "alice", 1, start=T0),
        job("j-e", "bob", 0),
        job("j-f", None, 0),
        job("j-g", "alice", 1, start=T0),
    ]
    for j in jobs:
        await store.put_job(j)
    assert [j.job_id for j in await store.jobs_of("alice")] == ["j-d", "j-g", "j-b", "j-c", "j-a"]
    assert [j.job_id for j in await store.jobs_of("bob")] == ["j-e"]
    assert await store.jobs_of("carol") == []
    assert [j.job_id for j in await store.list_jobs()] == [
        "j-a", "j-b", "j-c", "j-d", "j-e", "j-f", "j-g",
    ]  # fmt: skip
    assert await store.get_job("j-e") == jobs[4]
    assert await store.get_job("j-x") is None
    await store.put_job(job("j-e", "alice", 9))
    assert [j.job_id for j in await store.jobs_of("alice")][-1] == "j-e"
    assert await store.jobs_of("bob") == []


async def test_ping_and_close() -> None:
    store = MemoryStore()
    assert await store.ping() is True
    await store.close()
    assert await store.ping() is True  # closing memory is a no-op
