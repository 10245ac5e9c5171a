"""Tours: arrival and pause times from a job's history, stops, order, and the tour book."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest

from eta.estimate import TourStop, service_day
from gateway.model import Job, Site, StatusChange, Window
from gateway.tours import TourBook, arrived_at, pauses, tour_key, tour_stop

T = 1_700_000_000.0
# 2023-11-15 06:00 UTC: a morning, so a day's windows stay within the day.
MORNING = datetime(2023, 11, 15, 6, tzinfo=UTC).timestamp()
HOUR, DAY = 3600.0, 86400.0

# A history as (seconds after T, status, previous, source).
History = list[tuple[float, str, str, str]]


def job_with(history: History, **fields: object) -> Job:
    changes = tuple(StatusChange(T + at, s, p, src) for at, s, p, src in history)
    state = changes[-1].status if changes else "planned"
    job = Job("j1", "t1", Site(60.0, 25.0, 80.0), history=changes, state=state)
    return msgspec.structs.replace(job, **fields)


EN_ROUTE = (0.0, "en_route", "planned", "device")
ON_SITE = (100.0, "on_site", "en_route", "device")
INFERRED = (90.0, "on_site", "en_route", "geofence")
WITHDRAWN = (95.0, "en_route", "on_site", "device")


@pytest.mark.parametrize(
    ("history", "arrived"),
    [
        ([], None),
        ([EN_ROUTE], None),
        ([EN_ROUTE, ON_SITE], 100.0),
        ([(50.0, "on_site", "planned", "api")], 50.0),
        # The technician's confirmation keeps the geofence's arrival time.
        ([EN_ROUTE, INFERRED, (95.0, "on_site", "on_site", "device")], 90.0),
        # A pause on site and back to work: still the first arrival.
        ([EN_ROUTE, ON_SITE, (200.0, "paused", "on_site", "device"),
          (300.0, "resumed", "paused", "device"), (310.0, "on_site", "resumed", "device")], 100.0),
        # A pause on the way: the arrival is when they got there.
        ([EN_ROUTE, (20.0, "paused", "en_route", "device"), (60.0, "resumed", "paused", "device"),
          (130.0, "on_site", "resumed", "device")], 130.0),
        # A geofence arrival the technician withdrew (still en route) is no arrival.
        ([EN_ROUTE, INFERRED, WITHDRAWN], None),
        ([EN_ROUTE, INFERRED, WITHDRAWN, (400.0, "on_site", "en_route", "device")], 400.0),
    ],
)  # fmt: skip
def test_arrived_at(history: History, arrived: float | None) -> None:
    assert arrived_at(job_with(history)) == (None if arrived is None else T + arrived)


@pytest.mark.parametrize(
    ("history", "paused_s", "since"),
    [
        ([], 0.0, None),
        ([EN_ROUTE, ON_SITE], 0.0, None),
        ([EN_ROUTE, ON_SITE, (200.0, "paused", "on_site", "device")], 0.0, 200.0),
        ([EN_ROUTE, ON_SITE, (200.0, "paused", "on_site", "device"),
          (260.0, "resumed", "paused", "device")], 60.0, None),
        ([EN_ROUTE, ON_SITE, (200.0, "paused", "on_site", "device"),
          (260.0, "resumed", "paused", "device"), (300.0, "paused", "resumed", "device")],
         60.0, 300.0),
        ([EN_ROUTE, ON_SITE, (200.0, "paused", "on_site", "device"),
          (260.0, "resumed", "paused", "device"), (300.0, "paused", "resumed", "device"),
          (330.0, "cancelled", "paused", "api")], 90.0, None),
        # A break on the way to the site is not time off the job's work.
        ([EN_ROUTE, (20.0, "paused", "en_route", "device"), (60.0, "resumed", "paused", "device"),
          (130.0, "on_site", "resumed", "device")], 0.0, None),
        ([EN_ROUTE, (20.0, "paused", "en_route", "device")], 0.0, None),
    ],
)  # fmt: skip
def test_pauses(history: History, paused_s: float, since: float | None) -> None:
    assert pauses(job_with(history)) == (paused_s, None if since is None else T + since)


def test_tour_stop_of_a_paused_job() -> None:
    history: History = [
        EN_ROUTE, ON_SITE, (200.0, "paused", "on_site", "device"),
        (260.0, "resumed", "paused", "device"), (300.0, "paused", "resumed", "device"),
    ]  # fmt: skip
    job = job_with(history, window=Window(T, T + 3600), planned_duration_s=900.0)
    assert tour_stop(job) == TourStop(
        job_id="j1", lat=60.0, lon=25.0, window_start=T, window_end=T + 3600,
        planned_duration_s=900.0, state="paused", arrived_at=T + 100, paused_s=60.0,
        paused_since=T + 300,
    )  # fmt: skip


def test_tour_stop_without_window_and_not_paused() -> None:
    history: History = [
        EN_ROUTE, ON_SITE, (200.0, "paused", "on_site", "device"),
        (260.0, "resumed", "paused", "device"),
    ]  # fmt: skip
    stop = tour_stop(job_with(history))
    assert (stop.window_start, stop.window_end, stop.state) == (None, None, "resumed")
    assert (stop.arrived_at, stop.paused_s, stop.paused_since) == (T + 100, 60.0, None)


def job(
    job_id: str, tech: str | None, seq: int = 0, start: float | None = None, state: str = "planned"
) -> Job:
    window = Window(start, start + 3600) if start is not None else None
    return Job(job_id, tech, Site(60.0, 25.0), window=window, sequence=seq, state=state)


def test_tour_order_within_a_day_is_sequence_then_window_start_then_id() -> None:
    jobs = [
        job("e", "t1", 2),
        job("d", "t1", 1, start=MORNING + 500),
        job("c", "t1", 1, start=MORNING + 100),
        job("b", "t1", 1),  # no window sorts as start 0
        job("a", "t1", 1, start=MORNING + 100),
    ]
    book = TourBook()
    book.load(jobs)
    assert [j.job_id for j in book.tour("t1")] == ["b", "a", "c", "d", "e"]
    day = service_day(MORNING, ZoneInfo("UTC"))
    assert tour_key(jobs[1], day) == (day, 1, MORNING + 500, "d")
    assert book.day("d") == day and book.day("b") is None and book.day("zz") is None


def test_tomorrows_tour_booked_today_comes_after_todays() -> None:
    # Each day numbered from 1, as dispatchers do: sequence alone would interleave them.
    book = TourBook()
    book.load([
        job("today-1", "t1", 1, start=MORNING + 2 * HOUR, state="done"),
        job("today-2", "t1", 2, start=MORNING + 4 * HOUR, state="en_route"),
        job("today-3", "t1", 3, start=MORNING + 6 * HOUR),
        job("tomorrow-2", "t1", 2, start=MORNING + DAY + 3 * HOUR),
        job("tomorrow-1", "t1", 1, start=MORNING + DAY + 1 * HOUR),
        job("yesterday-1", "t1", 1, start=MORNING - DAY + 1 * HOUR, state="done"),
    ])  # fmt: skip
    assert [j.job_id for j in book.tour("t1")] == [
        "yesterday-1", "today-1", "today-2", "today-3", "tomorrow-1", "tomorrow-2",
    ]  # fmt: skip
    today = service_day(MORNING, book.tz)
    assert [d for _, d in book.tour_days("t1")] == [today - 1, today, today, today,
                                                    today + 1, today + 1]  # fmt: skip


def test_service_days_are_local_dates() -> None:
    # 23:30 UTC on the 15th and 00:30 UTC on the 16th: two days in UTC, but both the
    # small hours of the 16th in Helsinki (UTC+2 in November), one tour there.
    late = MORNING + 17.5 * HOUR
    early = MORNING + 18.5 * HOUR
    for tz, expected in ((None, ["late-2", "early-1"]), ("Europe/Helsinki", ["early-1", "late-2"])):
        book = TourBook(ZoneInfo(tz) if tz else None)
        book.load([job("early-1", "t1", 1, start=early), job("late-2", "t1", 2, start=late)])
        assert [j.job_id for j in book.tour("t1")] == expected, tz


def test_a_job_without_window_goes_with_the_earliest_open_day() -> None:
    book = TourBook()
    book.load([
        job("today-1", "t1", 1, start=MORNING + HOUR, state="done"),
        job("today-3", "t1", 3, start=MORNING + 3 * HOUR),
        job("tomorrow-1", "t1", 1, start=MORNING + DAY + HOUR),
        job("anytime-2", "t1", 2),
    ])  # fmt: skip
    assert [j.job_id for j in book.tour("t1")] == ["today-1", "anytime-2", "today-3", "tomorrow-1"]
    # Today's tour over: it moves on with the next open day.
    book.put(job("today-3", "t1", 3, start=MORNING + 3 * HOUR, state="done"))
    assert [j.job_id for j in book.tour("t1")] == ["today-1", "today-3", "tomorrow-1", "anytime-2"]


def test_tour_book_files_and_refiles_jobs() -> None:
    book = TourBook()
    assert book.put(job("a", "t1", 1)) is None
    assert book.put(job("b", "t1", 2)) is None
    assert book.put(job("c", "t2", 1)) is None
    assert book.technicians() == ["t1", "t2"]
    # Re-filed with another technician: returns the previous version, leaves the old tour.
    moved = job("a", "t2", 0)
    previous = book.put(moved)
    assert previous == job("a", "t1", 1)
    assert [j.job_id for j in book.tour("t1")] == ["b"]
    assert [j.job_id for j in book.tour("t2")] == ["a", "c"]
    assert book.get("a") == moved
    # The last job leaving a tour removes the technician.
    book.put(job("b", "t2", 5))
    assert book.technicians() == ["t2"]
    assert book.tour("t1") == []
    # Unassigned: out of every tour, not found.
    assert book.put(job("c", None)) == job("c", "t2", 1)
    assert book.get("c") is None
    assert [j.job_id for j in book.tour("t2")] == ["a", "b"]
    # ...and filed again once assigned; an unknown job is simply None.
    assert book.put(job("c", "t3")) is None
    assert book.technicians() == ["t2", "t3"]
    assert book.get("zz") is None


def test_tour_book_update_in_place_keeps_one_copy() -> None:
    book = TourBook()
    book.put(job("a", "t1", 1))
    updated = msgspec.structs.replace(job("a", "t1", 1), state="en_route")
    assert book.put(updated) == job("a", "t1", 1)
    assert book.tour("t1") == [updated]


def closed(job_id: str, seq: int, start: float, at: float | None, state: str = "done") -> Job:
    history = (StatusChange(at, state, "on_site", "device"),) if at is not None else ()
    return msgspec.structs.replace(
        job(job_id, "t1", seq, start=start), state=state, history=history
    )


def test_retire_forgets_jobs_closed_long_enough_ago() -> None:
    book = TourBook()
    book.load([
        closed("old", 1, MORNING - DAY, at=MORNING - DAY + HOUR),
        closed("old-cancelled", 2, MORNING - DAY, at=MORNING - DAY + 2 * HOUR, state="cancelled"),
        closed("recent", 1, MORNING, at=MORNING + HOUR),
        closed("no-history", 3, MORNING - 2 * DAY, at=None),  # closed without a change: window
        job("open", "t1", 2, start=MORNING - 3 * DAY),  # never closed: never retired
        Job("floating", "t1", Site(60.0, 25.0), state="done"),  # no change, no window: kept
        job("other", "t2", 1, start=MORNING - 3 * DAY),
    ])  # fmt: skip
    gone = book.retire("t1", before=MORNING)
    assert sorted(j.job_id for j in gone) == ["no-history", "old", "old-cancelled"]
    assert [j.job_id for j in book.tour("t1")] == ["floating", "open", "recent"]
    assert book.get("old") is None and book.day("old") is None
    # Filed anew when it changes again: a new job to the book.
    assert book.put(closed("old", 1, MORNING - DAY, at=MORNING + 2 * HOUR)) is None
    assert book.retire("t2", before=MORNING) == []
    # A tour left empty removes its technician.
    book.put(msgspec.structs.replace(closed("t3-only", 1, MORNING, at=MORNING), technician_id="t3"))
    assert len(book.retire("t3", before=MORNING + 1)) == 1 and "t3" not in book.technicians()


def test_a_job_that_cannot_be_filed_leaves_the_book_as_it_was() -> None:
    book = TourBook()
    good = job_with([], window=Window(MORNING, MORNING + HOUR))
    book.put(good)
    # A window past year 9999 has no calendar day: refused before anything moves.
    beyond = msgspec.structs.replace(good, window=Window(1e300, 1e300))
    with pytest.raises((OverflowError, ValueError)):
        book.put(beyond)
    assert book.get("j1") == good
    assert book.tour_days("t1") == [(good, service_day(MORNING, UTC))]
