"""Topic routing in and topic names out, for the default and a custom prefix."""

from __future__ import annotations

import pytest

from gateway.topics import Route, TopicScheme

DEFAULT = TopicScheme()
CUSTOM = TopicScheme(prefix="acme/fleet", owntracks="ot")

ROUTES: list[tuple[TopicScheme, str, Route]] = [
    (DEFAULT, "fleet/van-7/pos", Route("pos", "van-7")),
    (DEFAULT, "fleet/van-7/status", Route("status", "van-7")),
    (DEFAULT, "fleet/a.B_c:d-9/pos", Route("pos", "a.B_c:d-9")),
    (DEFAULT, "owntracks/alice/phone", Route("owntracks", "alice:phone")),
    (DEFAULT, "fleet/deadletter/van-7", Route("own", "deadletter")),
    (DEFAULT, "fleet/out/eta", Route("own", "out")),
    (DEFAULT, "fleet/van-7/other", Route("bad", "van-7", "unknown topic 'fleet/van-7/other'")),
    (DEFAULT, "fleet/van-7/pos/x", Route("bad", "van-7", "unknown topic 'fleet/van-7/pos/x'")),
    (DEFAULT, "fleet/van 7/pos",
     Route("bad", "van 7", "device id must be 1-64 chars of [A-Za-z0-9_.:-]")),
    (DEFAULT, f"fleet/{'x' * 65}/pos",
     Route("bad", "x" * 65, "device id must be 1-64 chars of [A-Za-z0-9_.:-]")),
    (DEFAULT, "fleet//pos", Route("bad", "", "device id must be 1-64 chars of [A-Za-z0-9_.:-]")),
    (DEFAULT, "owntracks/alice", Route("bad", "", "OwnTracks topic must be owntracks/user/device")),
    (DEFAULT, "owntracks/a/b/c", Route("bad", "", "OwnTracks topic must be owntracks/user/device")),
    (DEFAULT, "owntracks/al ice/phone",
     Route("bad", "al ice:phone", "user:device must be 1-64 chars of [A-Za-z0-9_.:-]")),
    (DEFAULT, "fleetx/van-7/pos", Route("bad", "", "unknown topic 'fleetx/van-7/pos'")),
    (DEFAULT, "other/van-7/pos", Route("bad", "", "unknown topic 'other/van-7/pos'")),
    (CUSTOM, "acme/fleet/van-7/pos", Route("pos", "van-7")),
    (CUSTOM, "ot/bob/car", Route("owntracks", "bob:car")),
    (CUSTOM, "fleet/van-7/pos", Route("bad", "", "unknown topic 'fleet/van-7/pos'")),
    (CUSTOM, "acme/fleet/out/geofence", Route("own", "out")),
]  # fmt: skip


@pytest.mark.parametrize(("scheme", "topic", "expected"), ROUTES, ids=[r[1] for r in ROUTES])
def test_route(scheme: TopicScheme, topic: str, expected: Route) -> None:
    assert scheme.route(topic) == expected


def test_subscriptions() -> None:
    assert DEFAULT.subscriptions() == ["fleet/+/pos", "fleet/+/status", "owntracks/+/+"]
    assert CUSTOM.subscriptions() == ["acme/fleet/+/pos", "acme/fleet/+/status", "ot/+/+"]


def test_shared_subscriptions() -> None:
    assert TopicScheme(share_group="gw").subscriptions() == [
        "$share/gw/fleet/+/pos",
        "$share/gw/fleet/+/status",
        "$share/gw/owntracks/+/+",
    ]


def test_outbound_names() -> None:
    assert DEFAULT.dead_letter("van-7") == "fleet/deadletter/van-7"
    assert [DEFAULT.outbound(t) for t in ("geofence", "eta", "alert", "reoptimize", "notify")] == [
        "fleet/out/geofence",
        "fleet/out/eta",
        "fleet/out/alert",
        "fleet/out/reoptimize",
        "fleet/out/notify",
    ]
    assert CUSTOM.dead_letter("van-7") == "acme/fleet/deadletter/van-7"
