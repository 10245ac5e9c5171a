"""Prometheus text rendering of the gateway's counters, gauges and histogram."""

from __future__ import annotations

import pytest

from gateway.metrics import Counter, Gauge, Histogram, Metrics

CONTRACT_NAMES = [
    "fieldtrack_positions_total",
    "fieldtrack_rejected_total",
    "fieldtrack_duplicates_total",
    "fieldtrack_events_total",
    "fieldtrack_pipeline_seconds",
    "fieldtrack_sse_clients",
]


def samples(text: str) -> dict[str, str]:
    """Sample lines as name{labels} -> value text."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = value
    return out


def test_every_contract_metric_is_declared() -> None:
    text = Metrics().render()
    for name in CONTRACT_NAMES:
        assert f"# HELP {name} " in text
        assert f"# TYPE {name} " in text
    assert text.endswith("\n")


def test_fresh_metrics_render_zeros() -> None:
    got = samples(Metrics().render())
    assert got["fieldtrack_positions_total"] == "0"
    assert got["fieldtrack_duplicates_total"] == "0"
    assert got["fieldtrack_sse_clients"] == "0"
    assert got["fieldtrack_pipeline_seconds_count"] == "0"
    assert not any(k.startswith("fieldtrack_rejected_total") for k in got)


def test_counters_with_labels() -> None:
    m = Metrics()
    m.positions.inc(3)
    m.reject("bad_ts")
    m.reject("bad_ts")
    m.reject("null_island")
    m.events.inc(1.0, "position")
    got = samples(m.render())
    assert got["fieldtrack_positions_total"] == "3"
    assert got['fieldtrack_rejected_total{reason="bad_ts"}'] == "2"
    assert got['fieldtrack_rejected_total{reason="null_island"}'] == "1"
    assert got['fieldtrack_events_total{type="position"}'] == "1"
    assert m.rejected.get("bad_ts") == 2.0
    assert m.rejected.get("missing_field") == 0.0


@pytest.mark.parametrize(
    ("amount", "text"),
    [(1_234_567, "1234567"), (10**12 + 1, "1000000000001"), (0.5, "0.5"), (2.25, "2.25")],
)
def test_large_counts_are_rendered_exactly(amount: float, text: str) -> None:
    c = Counter("c_total", "c")
    c.inc(amount)
    assert samples("\n".join(c.render())) == {"c_total": text}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3, "3"),
        (0.25, "0.25"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
    ],
)
def test_gauge_values_use_prometheus_spelling(value: float, text: str) -> None:
    assert list(Gauge("g", "g", lambda: value).render())[-1] == f"g {text}"


def test_label_values_are_escaped() -> None:
    c = Counter("c_total", "c", ("reason",))
    c.inc(1.0, 'a"b\\c\nd')
    assert list(c.render())[-1] == 'c_total{reason="a\\"b\\\\c\\nd"} 1'


def test_gauge_reads_its_source() -> None:
    value = [2.0]
    g = Gauge("g", "a gauge", lambda: value[0])
    assert list(g.render()) == ["# HELP g a gauge", "# TYPE g gauge", "g 2"]
    value[0] = 7.0
    assert list(g.render())[-1] == "g 7"


def test_histogram_buckets_are_cumulative_and_le_inclusive() -> None:
    h = Histogram("h_seconds", "h", buckets=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 3.0):
        h.observe(value)
    assert list(h.render()) == [
        "# HELP h_seconds h",
        "# TYPE h_seconds histogram",
        'h_seconds_bucket{le="0.1"} 2',
        'h_seconds_bucket{le="1"} 4',
        'h_seconds_bucket{le="+Inf"} 5',
        "h_seconds_sum 4.650000",
        "h_seconds_count 5",
    ]


def test_pipeline_histogram_default_buckets() -> None:
    m = Metrics()
    m.pipeline.observe(0.0007)
    got = samples(m.render())
    assert got['fieldtrack_pipeline_seconds_bucket{le="0.0005"}'] == "0"
    assert got['fieldtrack_pipeline_seconds_bucket{le="0.001"}'] == "1"
    assert got['fieldtrack_pipeline_seconds_bucket{le="10"}'] == "1"
    assert got['fieldtrack_pipeline_seconds_bucket{le="+Inf"}'] == "1"


def test_extra_metrics_are_rendered() -> None:
    m = Metrics()
    m.extra.append(Counter("fieldtrack_geofence_checks_total", "checks"))
    assert samples(m.render())["fieldtrack_geofence_checks_total"] == "0"
