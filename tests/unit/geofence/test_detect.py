"""Golden scenarios: scripted fixes and the exact transitions they must produce.

Places are metres north/east of ORIGIN.  A step is a fix ``(ts, north, east, acc)``,
``("tick", now)`` or ``("swap", fn)`` replacing the index mid-drive.  Expected
transitions are ``(fence_id, transition, ts, dwell_s)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from geofence.detect import DetectorConfig, Presence, Transition, detect, tick
from geofence.index import FenceIndex
from geofence.shapes import Fence, circle_fence, fence_from_geojson
from tests.unit.geofence.places import offset, square

CFG = DetectorConfig()
Step = tuple[object, ...]
Expected = tuple[str, str, float, float | None]


def site(fid: str, north: float, east: float, radius: float, **kw: object) -> Fence:
    return circle_fence(fid, *offset(north, east), radius, **kw)  # type: ignore[arg-type]


def run(
    index: FenceIndex,
    steps: list[Step],
    cfg: DetectorConfig = CFG,
    technician: str | None = None,
) -> list[Expected]:
    presence = Presence.empty()
    out: list[Transition] = []
    for step in steps:
        if step[0] == "swap":
            swap: Callable[[FenceIndex], FenceIndex] = step[1]  # type: ignore[assignment]
            index = swap(index)
            continue
        if step[0] == "tick":
            presence, found = tick(index, presence, float(step[1]), cfg)  # type: ignore[arg-type]
        else:
            ts, north, east, acc = step
            lat, lon = offset(float(north), float(east))  # type: ignore[arg-type]
            presence, found = detect(index, presence, float(ts), lat, lon, acc, cfg, technician)  # type: ignore[arg-type]
        out.extend(found)
    return [(t.fence_id, t.transition, t.ts, t.dwell_s) for t in out]


SITE = site("s1", 0, 0, 100, dwell_s=3_600)


def test_walk_in_and_out() -> None:
    steps: list[Step] = [
        (0, -300, 0, 10),
        (60, -150, 0, 10),
        (120, -50, 0, 10),  # inside: enter
        (180, 0, 0, 10),
        (240, 150, 0, 10),  # 50 m out > max(20, 0.1 * 200 m) + 10 m: exit
        (300, 300, 0, 10),
    ]
    assert run(FenceIndex.build([SITE]), steps) == [
        ("s1", "enter", 120.0, None),
        ("s1", "exit", 240.0, 120.0),
    ]


def test_boundary_jitter_gives_one_enter_and_one_exit() -> None:
    """15 m accuracy, wandering 95-110 m from the centre of a 100 m site for ten minutes."""
    radii = [110, 95, 104, 97, 112, 99, 108, 93, 115, 101, 96, 109, 98, 113, 94, 107]
    steps: list[Step] = [(40 * i, r, 0, 15) for i, r in enumerate(radii)]
    steps += [(700, 200, 0, 15), (740, 210, 0, 15)]  # 100 m out > 20 + 15: exit
    assert run(FenceIndex.build([SITE]), steps) == [
        ("s1", "enter", 40.0, None),
        ("s1", "exit", 700.0, 660.0),
    ]


def test_gap_drive_through_a_small_fence_is_one_cross() -> None:
    small = site("gate", 0, 0, 30, kind="zone")
    steps: list[Step] = [
        (0, -1_200, 0, 8),
        (60, 0 - 600, 0, 8),
        (120, 600, 0, 8),
        (180, 1_800, 0, 8),
    ]
    assert run(FenceIndex.build([small]), steps) == [("gate", "cross", 120.0, None)]
    missed: list[Step] = [(0, -600, 60, 8), (60, 600, 60, 8)]  # passes 60 m east: no cross
    assert run(FenceIndex.build([small]), missed) == []


def test_no_cross_after_a_long_gap_or_a_short_hop() -> None:
    small = site("gate", 0, 0, 30)
    long_gap: list[Step] = [(0, -600, 0, 8), (1_000, 600, 0, 8)]
    assert run(FenceIndex.build([small]), long_gap) == []
    cfg = replace(CFG, cross_min_gap_m=2_000.0)
    assert run(FenceIndex.build([small]), [(0, -600, 0, 8), (60, 600, 0, 8)], cfg) == []


def test_polygon_hole_is_outside() -> None:
    # 400 m square with a 200 m hole: the hole's centre is 100 m from the ring.
    yard = fence_from_geojson("yard", {"type": "Feature", "properties": {"dwell_s": 3_600},
        "geometry": {"type": "Polygon", "coordinates": [square(200), square(100)]}})  # fmt: skip
    steps: list[Step] = [
        (0, 0, -400, 5),
        (60, 0, -150, 5),  # in the ring: enter
        (120, 0, 0, 5),  # hole centre, 100 m from the ring > 39 m buffer + 5: exit
        (180, 0, 150, 5),  # ring again: enter
    ]
    assert run(FenceIndex.build([yard]), steps) == [
        ("yard", "enter", 60.0, None),
        ("yard", "exit", 120.0, 60.0),
        ("yard", "enter", 180.0, None),
    ]


def test_corridor() -> None:
    (lat1, lon1), (lat2, lon2) = offset(0, 0), offset(0, 1_000)
    geometry = {"type": "LineString", "coordinates": [[lon1, lat1], [lon2, lat2]]}
    props = {"width_m": 40, "dwell_s": 3_600}
    road = fence_from_geojson(
        "road", {"type": "Feature", "properties": props, "geometry": geometry}
    )
    steps: list[Step] = [
        (0, -100, 100, 5),
        (30, 0, 200, 5),  # on the line: enter
        (60, 15, 400, 5),  # 15 m off, width 40 m: still inside
        (90, 60, 600, 5),  # 40 m outside <= 20 m buffer + 5 m? no: exit
    ]
    assert run(FenceIndex.build([road]), steps) == [
        ("road", "enter", 30.0, None),
        ("road", "exit", 90.0, 60.0),
    ]


def test_dwell_fires_once_per_visit() -> None:
    cafe = site("cafe", 0, 0, 100, dwell_s=120)
    steps: list[Step] = [
        (0, 0, 0, 5),  # enter
        (60, 10, 0, 5),
        (130, 0, 10, 5),  # 130 s inside: dwell
        (200, 0, 0, 5),
        ("tick", 400),
        (500, 400, 0, 5),  # exit
        (600, 0, 0, 5),  # a new visit
        ("tick", 700),
        ("tick", 720),  # 120 s: dwell again, from tick
        ("tick", 900),
    ]
    assert run(FenceIndex.build([cafe]), steps) == [
        ("cafe", "enter", 0.0, None),
        ("cafe", "dwell", 130.0, 130.0),
        ("cafe", "exit", 500.0, 500.0),
        ("cafe", "enter", 600.0, None),
        ("cafe", "dwell", 720.0, 120.0),
    ]


def test_default_dwell_applies_without_fence_dwell() -> None:
    plain = site("p", 0, 0, 100)
    steps: list[Step] = [(0, 0, 0, 5), (119, 0, 0, 5), (120, 0, 0, 5)]
    assert run(FenceIndex.build([plain]), steps) == [
        ("p", "enter", 0.0, None),
        ("p", "dwell", 120.0, 120.0),
    ]


def test_late_fix_changes_nothing() -> None:
    index = FenceIndex.build([SITE])
    first, entered = detect(index, Presence.empty(), 100.0, *offset(0, 0), 5.0, CFG)
    assert [t.transition for t in entered] == ["enter"]
    for ts in (50.0, 100.0):  # older, and the same time again
        again, found = detect(index, first, ts, *offset(900, 0), 5.0, CFG)
        assert again is first and found == []


def test_poor_accuracy() -> None:
    steps: list[Step] = [
        (0, 0, 0, 60),  # inside but 60 m > 50 m: no enter
        (10, 0, 0, 150),  # 150 m > 100 m: ignored entirely
        (20, 0, 0, 20),  # enter
        (30, 800, 0, 150),  # far away but ignored: no exit
        (40, 800, 0, 80),  # usable for exits: 700 m out > 20 + 80
    ]
    assert run(FenceIndex.build([SITE]), steps) == [
        ("s1", "enter", 20.0, None),
        ("s1", "exit", 40.0, 20.0),
    ]
    # acc=None (unknown) is trusted; NaN is not.
    assert run(FenceIndex.build([SITE]), [(0, 0, 0, float("nan"))]) == []
    assert run(FenceIndex.build([SITE]), [(0, 0, 0, None)]) == [("s1", "enter", 0.0, None)]


def test_big_inaccuracy_delays_the_exit() -> None:
    steps: list[Step] = [(0, 0, 0, 5), (60, 160, 0, 45), (120, 160, 0, 5)]
    # 60 m out: not > 20 + 45, then > 20 + 5.
    assert run(FenceIndex.build([SITE]), steps) == [
        ("s1", "enter", 0.0, None),
        ("s1", "exit", 120.0, 120.0),
    ]


def test_technician_fences_only_apply_to_their_technicians() -> None:
    job = site("job-1", 0, 0, 100, technician_ids=frozenset({"t1"}), dwell_s=3_600)
    steps: list[Step] = [(0, 0, 0, 5), (60, 400, 0, 5)]
    index = FenceIndex.build([job, SITE])
    assert run(index, steps, technician="t1") == [
        ("job-1", "enter", 0.0, None),
        ("s1", "enter", 0.0, None),
        ("job-1", "exit", 60.0, 60.0),
        ("s1", "exit", 60.0, 60.0),
    ]
    assert run(index, steps, technician="t2") == [
        ("s1", "enter", 0.0, None),
        ("s1", "exit", 60.0, 60.0),
    ]


def test_fence_updated_and_removed_mid_drive() -> None:
    """Driving north; zone z is moved onto the road ahead, later deleted while inside."""
    zone = site("z", 0, 1_000, 150, kind="restricted", dwell_s=3_600)
    moved = site("z", 1_000, 0, 150, kind="restricted", dwell_s=3_600)
    steps: list[Step] = [
        (0, 0, 0, 5),
        (30, 300, 0, 5),
        ("swap", lambda ix: ix.with_fence(moved)),
        (60, 600, 0, 5),
        (90, 900, 0, 5),  # inside the moved zone: enter
        (120, 1_000, 0, 5),
        ("swap", lambda ix: ix.without("z")),
        (150, 1_050, 0, 5),  # the zone is gone: exit
        (180, 1_100, 0, 5),
    ]
    assert run(FenceIndex.build([zone]), steps) == [
        ("z", "enter", 90.0, None),
        ("z", "exit", 150.0, 60.0),
    ]


def test_removed_fence_exits_on_tick() -> None:
    steps: list[Step] = [(0, 0, 0, 5), ("swap", lambda ix: ix.without("s1")), ("tick", 30)]
    assert run(FenceIndex.build([SITE]), steps) == [
        ("s1", "enter", 0.0, None),
        ("s1", "exit", 30.0, 30.0),
    ]


def test_order_is_exits_crosses_enters_dwells() -> None:
    fences = [
        site("a-old", 0, 0, 50, dwell_s=3_600),
        site("b-gate", 500, 0, 20),
        site("d-new", 1_000, 0, 50, dwell_s=0),
        site("c-new", 1_000, 20, 60, dwell_s=0),
    ]
    steps: list[Step] = [(0, 0, 0, 5), (60, 1_000, 0, 5)]
    assert run(FenceIndex.build(fences), steps) == [
        ("a-old", "enter", 0.0, None),
        ("a-old", "exit", 60.0, 60.0),
        ("b-gate", "cross", 60.0, None),
        ("c-new", "enter", 60.0, None),
        ("d-new", "enter", 60.0, None),
        ("c-new", "dwell", 60.0, 0.0),
        ("d-new", "dwell", 60.0, 0.0),
    ]


def test_transitions_carry_the_fence_kind() -> None:
    depot = site("d", 0, 0, 100, kind="depot")
    presence, found = detect(
        FenceIndex.build([depot]), Presence.EMPTY, 0.0, *offset(0, 0), 5.0, CFG
    )
    assert found == [Transition("d", "depot", "enter", 0.0, None)]
    assert dict(presence.inside) == {"d": 0.0}
    assert presence.last == (0.0, *offset(0, 0))


@pytest.mark.parametrize("bad", [(91.0, 0.0), (0.0, float("nan"))])
def test_unusable_coordinates_are_ignored(bad: tuple[float, float]) -> None:
    index = FenceIndex.build([SITE])
    presence, found = detect(index, Presence.EMPTY, 0.0, *bad, 5.0, CFG)
    assert presence is Presence.EMPTY and found == []
