"""Token bucket per client: bursts, refill, independence of clients, bounded memory."""

from __future__ import annotations

import pytest

from dispatcher_feed.ratelimit import RateLimiter


def test_burst_then_wait_then_refill() -> None:
    limiter = RateLimiter(rate_per_s=2.0, burst=3)
    assert [limiter.take("a", 0.0) for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]
    assert limiter.take("a", 0.25) == 0.25  # half a token back, half to go
    assert limiter.take("a", 0.5) == 0.0
    assert limiter.take("a", 0.5) == 0.5
    # A long pause refills to the burst, never beyond.
    assert [limiter.take("a", 100.0) for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]


def test_clients_are_independent() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1)
    assert [limiter.take("a", 0.0), limiter.take("b", 0.0), limiter.take("a", 0.0)] == [
        0.0,
        0.0,
        1.0,
    ]


def test_memory_is_bounded_and_forgets_the_least_recent() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1, max_clients=2)
    limiter.take("a", 0.0)
    limiter.take("b", 0.0)
    limiter.take("a", 0.0)  # a is now the most recent
    limiter.take("c", 0.0)  # b goes
    assert len(limiter) == 2
    assert limiter.take("b", 0.0) == 0.0  # forgotten: a fresh bucket
    assert limiter.take("c", 0.0) == 1.0


def test_clock_going_back_does_not_mint_tokens() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1)
    assert limiter.take("a", 10.0) == 0.0
    assert limiter.take("a", 5.0) == 1.0


@pytest.mark.parametrize(("rate", "burst", "clients"), [(0.0, 1, 1), (1.0, 0, 1), (1.0, 1, 0)])
def test_bad_parameters(rate: float, burst: float, clients: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate, burst, clients)
