"""Road networks for the simulated fleet: a directed graph with travel-time shortest paths.

Nodes are WGS84 points; each directed edge has a length, a road class and a free-flow
speed (the speed limit). The graph loads from a compact gzip'd JSON file (see
``simulators/data/``), or comes from :func:`simulators.citygen.synthetic_city`.
Standard library only, so ``scripts/convert_osm.py`` can use it from another venv.
"""

from __future__ import annotations

import gzip
import heapq
import json
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulators.geo import haversine_m, offset, to_local

FORMAT = "fieldtrack-roads/1"
ROAD_CLASSES = ("arterial", "secondary", "residential")
FREE_FLOW_KMH = {"arterial": 70.0, "secondary": 50.0, "residential": 30.0}
DATA_DIR = Path(__file__).resolve().parent / "data"
_GRID_CELL_M = 200.0


class NoRouteError(LookupError):
    """No directed path joins the two nodes."""


@dataclass(frozen=True, slots=True)
class Edge:
    """One direction of a road segment; `speed_mps` is the free-flow speed (the limit)."""

    edge_id: int
    u: int
    v: int
    length_m: float
    road_class: str
    speed_mps: float
    tunnel: bool = False

    @property
    def free_flow_s(self) -> float:
        return self.length_m / self.speed_mps


@dataclass(frozen=True, slots=True)
class Route:
    """A path as node and edge sequences; `cost` is in the unit of the weight used (s)."""

    nodes: tuple[int, ...]
    edges: tuple[int, ...]
    cost: float


Weight = Callable[[Edge], float]


class RoadGraph:
    """A directed road graph with shortest paths, nearest-node snapping and file I/O."""

    def __init__(
        self,
        name: str,
        coords: Sequence[tuple[float, float]],
        edges: Iterable[tuple[int, int, float, str, float, bool]],
        attribution: str = "",
    ) -> None:
        self.name = name
        self.attribution = attribution
        self.coords: tuple[tuple[float, float], ...] = tuple(coords)
        self.edges: tuple[Edge, ...] = tuple(
            Edge(i, u, v, length, cls, speed, tunnel)
            for i, (u, v, length, cls, speed, tunnel) in enumerate(edges)
        )
        out: list[list[int]] = [[] for _ in self.coords]
        for e in self.edges:
            out[e.u].append(e.edge_id)
        self._out = tuple(tuple(ids) for ids in out)
        self._ref = self._centre()
        self._grid = self._build_grid()

    def __repr__(self) -> str:
        return f"RoadGraph({self.name!r}, nodes={len(self.coords)}, edges={len(self.edges)})"

    @property
    def node_count(self) -> int:
        return len(self.coords)

    def out_edges(self, node: int) -> tuple[int, ...]:
        return self._out[node]

    def bounds(self) -> tuple[float, float, float, float]:
        """(min_lat, min_lon, max_lat, max_lon)."""
        lats = [c[0] for c in self.coords]
        lons = [c[1] for c in self.coords]
        return min(lats), min(lons), max(lats), max(lons)

    def shortest_path(self, src: int, dst: int, weight: Weight | None = None) -> Route:
        """Dijkstra from `src` to `dst`; the default weight is free-flow travel time."""
        cost_of = weight or _free_flow
        dist = {src: 0.0}
        via: dict[int, int] = {}
        heap = [(0.0, src)]
        while heap:
            d, node = heapq.heappop(heap)
            if node == dst:
                return self._unwind(src, dst, via, d)
            if d > dist[node]:
                continue
            for eid in self._out[node]:
                e = self.edges[eid]
                nd = d + cost_of(e)
                if nd < dist.get(e.v, math.inf):
                    dist[e.v] = nd
                    via[e.v] = eid
                    heapq.heappush(heap, (nd, e.v))
        raise NoRouteError(f"no route from node {src} to node {dst} in {self.name}")

    def _unwind(self, src: int, dst: int, via: dict[int, int], cost: float) -> Route:
        edges: list[int] = []
        node = dst
        while node != src:
            eid = via[node]
            edges.append(eid)
            node = self.edges[eid].u
        edges.reverse()
        nodes = (src, *(self.edges[eid].v for eid in edges))
        return Route(nodes, tuple(edges), cost)

    def nearest_node(self, lat: float, lon: float) -> int:
        """The node closest to a point (snapping)."""
        x, y = to_local(lat, lon, *self._ref)
        cx, cy = math.floor(x / _GRID_CELL_M), math.floor(y / _GRID_CELL_M)
        best, best_d = -1, math.inf
        ring = 0
        # Widen the search ring until nothing outside it can beat the best so far.
        while best < 0 or (ring - 1) * _GRID_CELL_M < best_d:
            for node in self._ring(cx, cy, ring):
                d = haversine_m(lat, lon, *self.coords[node])
                if d < best_d:
                    best, best_d = node, d
            ring += 1
            if ring > self._max_ring:
                break
        return best

    def _ring(self, cx: int, cy: int, r: int) -> Iterable[int]:
        for i in range(cx - r, cx + r + 1):
            for j in range(cy - r, cy + r + 1):
                if max(abs(i - cx), abs(j - cy)) == r:
                    yield from self._grid.get((i, j), ())

    def random_node(self, rng: random.Random) -> int:
        return rng.randrange(len(self.coords))

    def snap_random_point(self, rng: random.Random) -> int:
        """Snap a uniformly random point of the bounding box to the network."""
        lat0, lon0, lat1, lon1 = self.bounds()
        return self.nearest_node(rng.uniform(lat0, lat1), rng.uniform(lon0, lon1))

    def _centre(self) -> tuple[float, float]:
        lat0, lon0, lat1, lon1 = self.bounds()
        return (lat0 + lat1) / 2, (lon0 + lon1) / 2

    def _build_grid(self) -> dict[tuple[int, int], list[int]]:
        grid: dict[tuple[int, int], list[int]] = {}
        for node, (lat, lon) in enumerate(self.coords):
            x, y = to_local(lat, lon, *self._ref)
            key = (math.floor(x / _GRID_CELL_M), math.floor(y / _GRID_CELL_M))
            grid.setdefault(key, []).append(node)
        span = max((max(abs(i), abs(j)) for i, j in grid), default=0)
        self._max_ring = 2 * span + 2
        return grid

    def largest_strongly_connected(self) -> RoadGraph:
        """The subgraph on the largest strongly connected component, renumbered.

        Routing between random sites needs every node reachable from every other.
        """
        keep = max(strongly_connected_components(self), key=len)
        index = {old: new for new, old in enumerate(sorted(keep))}
        coords = [self.coords[old] for old in sorted(keep)]
        edges = [
            (index[e.u], index[e.v], e.length_m, e.road_class, e.speed_mps, e.tunnel)
            for e in self.edges
            if e.u in index and e.v in index
        ]
        return RoadGraph(self.name, coords, edges, self.attribution)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "attribution": self.attribution,
            "classes": list(ROAD_CLASSES),
            "nodes": [[round(lat, 7), round(lon, 7)] for lat, lon in self.coords],
            "edges": [
                [
                    e.u,
                    e.v,
                    round(e.length_m, 1),
                    ROAD_CLASSES.index(e.road_class),
                    round(e.speed_mps * 3.6, 1),
                    int(e.tunnel),
                ]
                for e in self.edges
            ],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RoadGraph:
        if doc.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} graph: {doc.get('format')!r}")
        classes: list[str] = doc["classes"]
        edges = [
            (int(u), int(v), float(length), classes[c], float(kmh) / 3.6, bool(tunnel))
            for u, v, length, c, kmh, tunnel in doc["edges"]
        ]
        coords = [(float(lat), float(lon)) for lat, lon in doc["nodes"]]
        return cls(doc["name"], coords, edges, doc.get("attribution", ""))

    def save(self, path: Path) -> None:
        """Write gzip'd compact JSON; mtime 0 so the same graph gives the same bytes."""
        raw = json.dumps(self.to_dict(), separators=(",", ":")).encode()
        with path.open("wb") as f, gzip.GzipFile(filename="", fileobj=f, mode="wb", mtime=0) as gz:
            gz.write(raw)

    @classmethod
    def load(cls, path: Path) -> RoadGraph:
        with gzip.open(path, "rb") as f:
            doc = json.loads(f.read())
        return cls.from_dict(doc)


def _free_flow(edge: Edge) -> float:
    return edge.length_m / edge.speed_mps


def strongly_connected_components(graph: RoadGraph) -> list[set[int]]:
    """Kosaraju's algorithm, iterative (city graphs are deeper than Python's recursion limit)."""
    n = graph.node_count
    order: list[int] = []
    seen = [False] * n
    for root in range(n):
        if seen[root]:
            continue
        seen[root] = True
        stack = [(root, iter(graph.out_edges(root)))]
        while stack:
            node, it = stack[-1]
            nxt = next((graph.edges[e].v for e in it if not seen[graph.edges[e].v]), None)
            if nxt is None:
                stack.pop()
                order.append(node)
            else:
                seen[nxt] = True
                stack.append((nxt, iter(graph.out_edges(nxt))))
    incoming: list[list[int]] = [[] for _ in range(n)]
    for e in graph.edges:
        incoming[e.v].append(e.u)
    comp = [-1] * n
    components: list[set[int]] = []
    for root in reversed(order):
        if comp[root] >= 0:
            continue
        members = {root}
        comp[root] = len(components)
        todo = [root]
        while todo:
            for prev in incoming[todo.pop()]:
                if comp[prev] < 0:
                    comp[prev] = comp[root]
                    members.add(prev)
                    todo.append(prev)
        components.append(members)
    return components


def load_packaged(name: str) -> RoadGraph:
    """A graph shipped in ``simulators/data/`` (e.g. ``helsinki``)."""
    path = DATA_DIR / f"{name}.graph.json.gz"
    if not path.exists():
        known = sorted(p.name.split(".")[0] for p in DATA_DIR.glob("*.graph.json.gz"))
        raise FileNotFoundError(f"no packaged road network {name!r}; have {known}")
    return RoadGraph.load(path)


def synthetic_city(
    seed: int,
    size_km: float = 4.0,
    *,
    block_m: float = 150.0,
    centre: tuple[float, float] = (60.25, 25.05),
    arterial_every: int = 8,
    secondary_every: int = 4,
    removed_share: float = 0.06,
    one_way_share: float = 0.15,
) -> RoadGraph:
    """A seeded grid city: residential blocks, secondary streets, arterials and two diagonals.

    The same arguments always give the same graph. Streets are jittered, a few residential
    links are missing and some are one-way, so shortest paths are not trivially Manhattan.
    """
    rng = random.Random(f"synthetic-city:{seed}")
    n = max(2, round(size_km * 1000 / block_m) + 1)
    half = (n - 1) * block_m / 2
    coords: list[tuple[float, float]] = []
    for i in range(n):
        for j in range(n):
            jitter = block_m * 0.15
            east = j * block_m - half + rng.uniform(-jitter, jitter)
            north = i * block_m - half + rng.uniform(-jitter, jitter)
            coords.append(offset(centre[0], centre[1], east, north))

    def line_class(k: int) -> str:
        if k % arterial_every == arterial_every // 2:
            return "arterial"
        return "secondary" if k % secondary_every == 0 else "residential"

    pairs: list[tuple[int, int, str]] = []
    for i in range(n):
        for j in range(n - 1):
            pairs.append((i * n + j, i * n + j + 1, line_class(i)))  # east-west street i
            pairs.append((j * n + i, (j + 1) * n + i, line_class(i)))  # north-south street i
    for k in range(n - 1):
        pairs.append((k * n + k, (k + 1) * n + k + 1, "arterial"))
        pairs.append((k * n + (n - 1 - k), (k + 1) * n + (n - 2 - k), "arterial"))
    edges: list[tuple[int, int, float, str, float, bool]] = []
    for a, b, cls in pairs:
        if cls == "residential" and rng.random() < removed_share:
            continue
        length = haversine_m(*coords[a], *coords[b])
        speed = FREE_FLOW_KMH[cls] / 3.6
        if cls == "secondary" and rng.random() < 0.25:
            speed = 40 / 3.6
        one_way = cls == "residential" and rng.random() < one_way_share
        if one_way and rng.random() < 0.5:
            a, b = b, a
        edges.append((a, b, length, cls, speed, False))
        if not one_way:
            edges.append((b, a, length, cls, speed, False))
    graph = RoadGraph(f"synthetic-{seed}", coords, edges, "synthetic (no map data)")
    return graph.largest_strongly_connected()
