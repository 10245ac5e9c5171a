"""Travel-time model learned online from the fleet's own fixes.

Every pair of consecutive fixes of a moving device is one speed sample. Samples are kept as
exponentially weighted means and variances per H3 cell, at four levels of detail:

* cell, all hours           -- where the fleet drove at all;
* cell, hour of day         -- the daily congestion profile, learned after one day;
* cell, hour of week        -- weekday/weekend differences, learned after one week;
* cell, live                -- a time-decaying mean (``live_tau_s``) that sees today's incident.

A query blends them coarse to fine, each level shrunk toward the one above it by
``SpeedPrior.weight`` pseudo-observations, so a cell with thin data falls back to its
coarser levels and, with no data at all, to the configured prior speed of its area.
Two factors are learned from whole trips (``observe_trip``, fed by ``eta.trips``): the road
detour (path length over straight-line distance) and the stop factor (trip time over moving
time -- pairs of fixes standing at a light are not speed samples, so this puts that time back).

The detour is also learned per direction of travel (``ModelConfig.detour_sectors`` sectors of
the axis, A->B and B->A alike), each shrunk toward the all-directions factor: streets laid out
as a grid make a drive along them nearly straight and one across them up to sqrt(2) longer.
Whole trips also calibrate the model's own predictions (actual over predicted time), as a
log-linear function of the straight-line distance: long drives reach faster roads than the
cells along the straight line suggest, short ones lose more time in starting and parking.

Resolution: H3 res 8 (cells of ~0.74 km², ~0.9 km across). A technician at urban speeds
crosses one in about 100 s, so a pass yields ~10 samples at typical 5-15 s fix intervals --
enough for a mean -- while cells are still small enough to tell a ring road from the old
town. Res 9 (0.1 km²) would split each pass into one or two noisy samples per cell and
multiply the data the fleet needs by seven; res 7 (5 km²) mixes arterials with side streets.

Travel time along a leg = straight-line distance x detour / speed x stop factor, the speed
of each equal piece of the leg read from the cell at its centre (``sample_spacing_m``).
Why a harmonic sum: time is distance over speed piece by piece, not over an average speed.
Samples are weighted by their duration (``dt / obs_unit_s``): a time-weighted mean of speed
is total distance over total time, whatever the fix interval.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from math import ceil, exp, log, sqrt
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import h3.api.basic_int as h3

from eta.geo import bearing_deg, haversine_m, points_along
from eta.stats import lognormal_p10_p90

SNAPSHOT_VERSION = 1
AREA_RES = 5
logger = logging.getLogger("fieldtrack.eta")


class SnapshotError(ValueError):
    """A snapshot cannot be restored (wrong version, wrong resolution, malformed)."""


@dataclass(frozen=True)
class SpeedPrior:
    """What the model believes before (and while) the fleet teaches it.

    ``speed_mps``: free-flow urban speed used where nothing better is known (8.3 m/s = 30 km/h).
    ``area_speeds``: overrides keyed by H3 res-5 cell (int or hex string; ~250 km² areas),
    e.g. a higher speed for a rural district. ``detour_factor``: road path over straight
    line. ``weight``: how many (10-second) observations the prior is worth at every level
    of the blend. ``speed_cv``: spread of sampled speeds around the mean assumed by the
    prior. ``mean_cv``: how far off the prior mean itself may be -- shrinks with data.
    ``detour_cv``: how far off the detour factor may be. ``stop_factor``/``stop_cv``: trip
    time over moving time (traffic lights, queues: stops are left out of the speed samples
    and put back by this factor, learned from whole trips). ``trip_weight``: how many trips
    the two trip priors are worth.
    """

    speed_mps: float = 8.3
    area_speeds: Mapping[int | str, float] = field(default_factory=dict)
    detour_factor: float = 1.35
    weight: float = 5.0
    speed_cv: float = 0.5
    mean_cv: float = 0.3
    detour_cv: float = 0.15
    stop_factor: float = 1.0
    stop_cv: float = 0.1
    trip_weight: float = 3.0

    def __post_init__(self) -> None:
        if self.speed_mps <= 0 or self.detour_factor < 1.0 or self.weight <= 0:
            raise ValueError("speed_mps and weight must be > 0, detour_factor >= 1")
        areas: dict[int, float] = {}
        for key, speed in self.area_speeds.items():
            cell = h3.str_to_int(key) if isinstance(key, str) else key
            if not h3.is_valid_cell(cell) or h3.get_resolution(cell) != AREA_RES:
                raise ValueError(f"area {key!r} is not an H3 res-{AREA_RES} cell")
            if speed <= 0:
                raise ValueError(f"area {key!r}: speed must be > 0")
            areas[cell] = float(speed)
        # Normalised once so the hot path looks up plain ints.
        object.__setattr__(self, "area_speeds", areas)


@dataclass(frozen=True)
class ModelConfig:
    """How samples are taken and how travel times are read.

    ``cell_res`` and the clock define the keys of learned data: the hour of week is local
    wall-clock time in ``timezone`` (an IANA name: rush hour stays at 08:00 across DST
    changes), or UTC + ``tz_offset_s`` when ``timezone`` is empty. A snapshot restores whole
    into the same resolution and clock; see ``SpeedModel.restore`` for another clock.
    ``alpha``: smallest EWMA step per observation, i.e. the stats remember roughly the last
    ``1/alpha`` observations. Pairs of fixes further apart than ``max_sample_gap_s`` or closer than
    ``min_gap_s``, faster than ``max_speed_mps``, slower than ``stop_speed_mps`` (a stop)
    or moving less than ``min_move_m`` (GPS jitter) teach nothing. ``obs_unit_s``: the
    duration one observation stands for; ``max_obs_weight`` caps a single long pair.
    ``live_tau_s``: decay time of the live level (0 disables it); ``live_gain``: a fresh
    observation outweighs this many old ones, being about today's traffic. Legs are read every
    ``sample_spacing_m`` with at most ``max_samples`` pieces; ``max_gap_s`` bounds the gap
    between fixes a trip may span (trips tolerate sparse fixes, speed samples do not: a
    parked phone's sparse fixes plus GPS noise look like slow driving, which biased the
    model 15-20 % slow on the simulated fleet); ``trip_cv_scale`` converts the
    spread of 10-second speeds into the spread of a whole leg: below 1 if short-term
    variation averages out along a trip. Stops are not in the samples, and what is left
    varies mostly by driver and hour; on the simulated fleet 1.0 put 82 % of the legs inside
    p10..p90 (0.5: 65 %). Trips shorter than ``trip_min_straight_m`` or with a ratio above
    ``trip_max_ratio`` (errands, loops) do not teach the detour factor; trips stopped for more
    than ``trip_max_stop_share`` of their time (a break on the way) not the stop factor.
    ``detour_sectors``: sectors of the travel axis (0-180 degrees, centred on north-south and
    every 180/n degrees) with their own learned detour factor (0: one for every direction).
    ``calib_ref_m``: the distance at which the log-distance calibration is centred (it only
    anchors the fit: a typical urban leg).
    """

    cell_res: int = 8
    tz_offset_s: int = 0
    timezone: str = ""
    alpha: float = 0.02
    max_gap_s: float = 600.0
    max_sample_gap_s: float = 30.0
    min_gap_s: float = 1.0
    max_speed_mps: float = 60.0
    stop_speed_mps: float = 1.0
    min_move_m: float = 5.0
    obs_unit_s: float = 10.0
    max_obs_weight: float = 12.0
    live_tau_s: float = 900.0
    live_gain: float = 4.0
    sample_spacing_m: float = 1000.0
    max_samples: int = 8
    trip_cv_scale: float = 1.0
    trip_min_straight_m: float = 200.0
    trip_max_ratio: float = 3.0
    trip_max_stop_share: float = 0.6
    detour_sectors: int = 8
    calib_ref_m: float = 2000.0
    leg_cache_size: int = 4096

    @classmethod
    def for_zone(cls, timezone: str) -> ModelConfig:
        """The default configuration keyed by ``timezone``'s wall clock. A zone that keeps
        one offset all year (UTC, Asia/Tokyo) is that fixed offset, so a deployment that
        names its zone keeps what it learned before zones were known (UTC + offset)."""
        zone = ZoneInfo(timezone)
        year = datetime.now(zone).year
        offsets = {datetime(year, month, 1, 12, tzinfo=zone).utcoffset() for month in (1, 4, 7, 10)}
        if len(offsets) == 1:
            offset = offsets.pop()
            if offset is not None:
                return cls(tz_offset_s=int(offset.total_seconds()))
        return cls(timezone=timezone)


@dataclass(frozen=True)
class TravelTime:
    """Predicted duration of one leg, seconds, with its spread and path length in metres."""

    mean_s: float
    p10_s: float
    p90_s: float
    sd_s: float
    distance_m: float


@dataclass(frozen=True)
class RouteLeg:
    """A road route from a routing engine: path length and free-flow duration."""

    distance_m: float
    duration_s: float


class RoutingPrior(Protocol):
    """An OSRM/Valhalla-style engine used as a prior for a leg.

    Called synchronously on the estimate path, so an adapter answers from its own cache
    (filled in the background by whoever owns the HTTP client) and returns None on a miss;
    the learned model then falls back to straight line x detour.
    """

    def route(self, lat1: float, lon1: float, lat2: float, lon2: float) -> RouteLeg | None: ...


class _Stat:
    """Weighted EWMA mean and variance; ``n`` counts observations (never decays)."""

    __slots__ = ("mean", "n", "var")

    def __init__(self, n: float = 0.0, mean: float = 0.0, var: float = 0.0) -> None:
        self.n = n
        self.mean = mean
        self.var = var

    def add(self, x: float, w: float, alpha: float) -> None:
        self.n += w
        # A plain running mean until 1/alpha observations, then an EWMA (West's update).
        a = w / self.n
        floor = alpha * w
        if a < floor:
            a = floor if floor < 1.0 else 1.0
        d = x - self.mean
        self.mean += a * d
        self.var = (1.0 - a) * (self.var + a * d * d)

    def dump(self) -> list[float]:
        return [self.n, self.mean, self.var]


class _Fit:
    """Weighted EWMA least-squares line y = a + b x: means, variance of x, covariances."""

    __slots__ = ("cxy", "mx", "my", "n", "vxx", "vyy")

    def __init__(self) -> None:
        self.n = self.mx = self.my = self.vxx = self.cxy = self.vyy = 0.0

    def add(self, x: float, y: float, w: float, alpha: float) -> None:
        self.n += w
        a = w / self.n
        floor = alpha * w
        if a < floor:
            a = floor if floor < 1.0 else 1.0
        dx, dy = x - self.mx, y - self.my
        self.mx += a * dx
        self.my += a * dy
        b = 1.0 - a
        self.vxx = b * (self.vxx + a * dx * dx)
        self.cxy = b * (self.cxy + a * dx * dy)
        self.vyy = b * (self.vyy + a * dy * dy)

    def line(self, w0: float, cap: float) -> tuple[float, float, float, float, float]:
        """(intercept at mean x, slope, mean x, lowest x, highest x) shrunk by ``w0`` trips.

        Both are shrunk toward 0 (no correction): the intercept like ``_shrink``, the slope
        as a ridge fit, so a fleet whose trips all have one length learns no slope.
        """
        k = self.n if self.n < cap else cap
        if k <= 0.0:
            return 0.0, 0.0, 0.0, 0.0, 0.0
        intercept = k * self.my / (k + w0)
        slope = k * self.cxy / (k * self.vxx + w0)
        # The line is not extrapolated beyond two standard deviations of the trips seen.
        spread = 2.0 * sqrt(self.vxx)
        return intercept, slope, self.mx, self.mx - spread, self.mx + spread


class _Cell:
    """Everything learned about one H3 cell."""

    __slots__ = ("all", "cache", "hod", "how", "live_mean", "live_n", "live_ts")

    def __init__(self) -> None:
        self.cache: dict[int, tuple[float, float, float, float]] = {}
        self.all = _Stat()
        self.hod: dict[int, _Stat] = {}
        self.how: dict[int, _Stat] = {}
        self.live_n = 0.0
        self.live_mean = 0.0
        self.live_ts = 0.0

    def add_live(self, v: float, w: float, ts: float, tau: float) -> None:
        if self.live_n > 0.0:
            age = ts - self.live_ts
            # A late pair (older than the newest) still counts, without rewinding time.
            if age > 0.0:
                self.live_n *= exp(-age / tau)
                self.live_ts = ts
        else:
            self.live_ts = ts
        self.live_n += w
        self.live_mean += (w / self.live_n) * (v - self.live_mean)


_Leg = tuple[float, int, float, tuple[tuple[int, float], ...]]
"""A leg's straight-line length, direction sector, log distance for the calibration, and its
sample cells with their area prior speeds."""


def hour_of_week(ts: float, tz_offset_s: float = 0.0) -> int:
    """Hour of week of an epoch time in local time: 0 = Monday 00:00-01:00, 167 = Sunday 23h."""
    local = ts + tz_offset_s
    # 1970-01-01 was a Thursday: day 0 is weekday 3 with Monday = 0.
    day = int(local // 86400.0)
    return ((day + 3) % 7) * 24 + int(local // 3600.0) % 24


class LocalClock:
    """``hour_of_week`` in a zone's wall-clock time, or at a fixed offset from UTC.

    A zone's hour is looked up once per quarter hour of UTC time and cached: every zone's
    offset is a whole number of quarter hours, so the hour of week cannot change within one.
    """

    MAX_CACHED = 4096  # quarter hours: six weeks of distinct times

    def __init__(self, timezone: str = "", tz_offset_s: float = 0.0) -> None:
        self.zone = ZoneInfo(timezone) if timezone else None
        self.tz_offset_s = tz_offset_s
        self._cache: dict[int, int] = {}

    def hour_of_week(self, ts: float) -> int:
        if self.zone is None:
            return hour_of_week(ts, self.tz_offset_s)
        quarter = int(ts // 900.0)
        how = self._cache.get(quarter)
        if how is None:
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
            local = datetime.fromtimestamp(quarter * 900.0, self.zone)
            how = self._cache[quarter] = local.weekday() * 24 + local.hour
        return how


def _shrink(
    prior: float, prior_var: float, w0: float, st: _Stat | None, cap: float
) -> tuple[float, float, float]:
    """Count-weighted blend of a stat into its prior: (mean, variance, evidence weight)."""
    if st is None:
        return prior, prior_var, 0.0
    k = st.n if st.n < cap else cap
    tot = w0 + k
    return (w0 * prior + k * st.mean) / tot, (w0 * prior_var + k * st.var) / tot, k


class SpeedModel:
    """Online travel-time model of one fleet. Not thread-safe; one owner mutates it.

    ``observe`` costs one haversine, one H3 lookup and four EWMA updates; ``travel_time``
    caches the cells of each leg, so a tour re-estimated on every fix only pays H3 for the
    leg that starts at the moving technician.
    """

    def __init__(
        self,
        prior: SpeedPrior | None = None,
        config: ModelConfig | None = None,
        routing: RoutingPrior | None = None,
    ) -> None:
        self.prior = prior if prior is not None else SpeedPrior()
        self.config = config if config is not None else ModelConfig()
        self.routing = routing
        self.clock = LocalClock(self.config.timezone, self.config.tz_offset_s)
        self._cells: dict[int, _Cell] = {}
        self._detour = _Stat()
        self._sector_detours = [_Stat() for _ in range(self.config.detour_sectors)]
        self._stops = _Stat()
        # log(actual trip time / the model's own uncalibrated prediction at departure) against
        # log(straight distance / calib_ref_m): corrects what cells sampled along the straight
        # line get wrong about the roads really taken (arterials are faster than the cells
        # between them, and long drives use more of them).
        self._calib = _Fit()
        self._cap = 1.0 / self.config.alpha
        self._calib_line = self._calib.line(self.prior.trip_weight, self._cap)
        self._trip_blend = self._blend_trips()
        self._sector_blend = self._blend_sectors()
        self._legs: dict[tuple[float, float, float, float], _Leg] = {}

    # -- learning -----------------------------------------------------------------------

    def observe(
        self, lat1: float, lon1: float, ts1: float, lat2: float, lon2: float, ts2: float
    ) -> None:
        """Learn from two consecutive fixes of one moving device (a no-op for unusable pairs)."""
        cfg = self.config
        dt = ts2 - ts1
        if dt < cfg.min_gap_s or dt > cfg.max_sample_gap_s:
            return
        d = haversine_m(lat1, lon1, lat2, lon2)
        if d < cfg.min_move_m:
            return
        v = d / dt
        if v < cfg.stop_speed_mps or v > cfg.max_speed_mps:
            return
        # The midpoint's cell; across the antimeridian the second fix stands in for it.
        mlon = (lon1 + lon2) * 0.5 if abs(lon2 - lon1) < 180.0 else lon2
        cell_id = h3.latlng_to_cell((lat1 + lat2) * 0.5, mlon, cfg.cell_res)
        how = self.clock.hour_of_week(ts1 + dt * 0.5)
        w = dt / cfg.obs_unit_s
        if w > cfg.max_obs_weight:
            w = cfg.max_obs_weight
        cell = self._cells.get(cell_id)
        if cell is None:
            cell = self._cells[cell_id] = _Cell()
        alpha = cfg.alpha
        if cell.cache:
            cell.cache.clear()
        cell.all.add(v, w, alpha)
        st = cell.hod.get(how % 24)
        if st is None:
            st = cell.hod[how % 24] = _Stat()
        st.add(v, w, alpha)
        st = cell.how.get(how)
        if st is None:
            st = cell.how[how] = _Stat()
        st.add(v, w, alpha)
        if cfg.live_tau_s > 0.0:
            cell.add_live(v, w, ts2, cfg.live_tau_s)

    def observe_trip(
        self,
        straight_m: float,
        travelled_m: float,
        duration_s: float | None = None,
        moving_s: float | None = None,
        predicted_s: float | None = None,
        bearing: float | None = None,
    ) -> None:
        """Learn from one whole trip (``eta.trips`` collects these numbers from fixes).

        The detour factor from the path along its fixes over the endpoint distance (and, given
        the ``bearing`` from start to end in degrees, that of its direction); given
        ``duration_s`` and ``moving_s`` (the time in pairs of fixes ``observe`` learns from),
        also the stop factor, duration over moving time; given ``predicted_s`` (this model's
        ``travel_mean_sd(..., calibrated=False)`` at departure), the calibration.
        """
        cfg = self.config
        if (
            predicted_s is not None
            and duration_s is not None
            and predicted_s > 0.0
            and duration_s > 0.0
            and straight_m >= cfg.trip_min_straight_m
        ):
            ratio = min(max(duration_s / predicted_s, 0.33), 3.0)
            self._calib.add(log(straight_m / cfg.calib_ref_m), log(ratio), 1.0, cfg.alpha)
            self._calib_line = self._calib.line(self.prior.trip_weight, self._cap)
        if straight_m < cfg.trip_min_straight_m or travelled_m <= 0.0:
            return
        ratio = travelled_m / straight_m
        if ratio <= cfg.trip_max_ratio:
            # Fixes cut corners, so a straight road can measure a hair under 1.
            self._detour.add(max(1.0, ratio), 1.0, cfg.alpha)
            if bearing is not None and self._sector_detours:
                self._sector_detours[self._sector(bearing)].add(max(1.0, ratio), 1.0, cfg.alpha)
        if (
            duration_s is not None
            and moving_s is not None
            and 0.0 < moving_s <= duration_s
            and 1.0 - moving_s / duration_s <= cfg.trip_max_stop_share
        ):
            self._stops.add(duration_s / moving_s, 1.0, cfg.alpha)
        self._trip_blend = self._blend_trips()
        self._sector_blend = self._blend_sectors()

    # -- reading ------------------------------------------------------------------------

    def _sector(self, bearing: float) -> int:
        # Sectors are centred on north-south (0) and every 180/n degrees from it.
        n = len(self._sector_detours)
        return int((bearing % 180.0) * n / 180.0 + 0.5) % n

    def calibration(self, straight_m: float | None = None) -> float:
        """Factor applied to travel times, learned from whole trips (1.0 until then): for a leg
        of ``straight_m`` metres, or without it, at the mean length of the trips seen."""
        if straight_m is None or straight_m <= 0.0:
            return exp(self._calib_line[0])
        return self._calib_at(log(straight_m / self.config.calib_ref_m))

    def _calib_at(self, x: float) -> float:
        intercept, slope, mx, lo, hi = self._calib_line
        x = lo if x < lo else hi if x > hi else x
        return exp(intercept + slope * (x - mx))

    def detour(self, bearing: float | None = None) -> tuple[float, float]:
        """Current detour factor and its variance (prior blended with learned trips); given a
        ``bearing`` in degrees, that of its direction sector."""
        if bearing is not None and self._sector_blend:
            return self._sector_blend[self._sector(bearing)]
        return self._trip_blend[0], self._trip_blend[1]

    def stop_factor(self) -> tuple[float, float]:
        """Current factor of trip time over moving time, and its variance."""
        return self._trip_blend[2], self._trip_blend[3]

    def _blend_trips(self) -> tuple[float, float, float, float]:
        """(detour, its variance, stop factor, its variance): changes only with trips."""
        p = self.prior
        w, cap = p.trip_weight, self._cap
        d, d_var, _ = _shrink(
            p.detour_factor, (p.detour_cv * p.detour_factor) ** 2, w, self._detour, cap
        )
        f, f_var, _ = _shrink(p.stop_factor, (p.stop_cv * p.stop_factor) ** 2, w, self._stops, cap)
        return d, d_var, f, f_var

    def _blend_sectors(self) -> list[tuple[float, float]]:
        """(detour, its variance) per direction sector, each shrunk toward all directions."""
        d, d_var = self._trip_blend[0], self._trip_blend[1]
        w, cap = self.prior.trip_weight, self._cap
        return [_shrink(d, d_var, w, st, cap)[:2] for st in self._sector_detours]

    def speed_at(self, lat: float, lon: float, at_ts: float) -> float:
        """Blended mean speed (m/s) at a point and time."""
        cell_id = h3.latlng_to_cell(lat, lon, self.config.cell_res)
        how = self.clock.hour_of_week(at_ts)
        return self._sample(cell_id, self._area_speed(cell_id), 0.0, how, at_ts)[0]

    def travel_time(
        self, lat1: float, lon1: float, lat2: float, lon2: float, at_ts: float
    ) -> TravelTime:
        """Predicted duration of a drive from point 1 to point 2 starting at ``at_ts``."""
        mean, sd, path = self.travel_mean_sd(lat1, lon1, lat2, lon2, at_ts)
        p10, p90 = lognormal_p10_p90(mean, sd)
        return TravelTime(mean, p10, p90, sd, path)

    def travel_mean_sd(
        self,
        lat1: float,
        lon1: float,
        lat2: float,
        lon2: float,
        at_ts: float,
        calibrated: bool = True,
    ) -> tuple[float, float, float]:
        """``travel_time`` without the quantiles: (mean s, sd s, path m) -- the tour's hot path."""
        key = (lat1, lon1, lat2, lon2)
        leg = self._legs.get(key)
        if leg is None:
            leg = self._leg(key)
        straight, sector, x, samples = leg
        route = self.routing.route(lat1, lon1, lat2, lon2) if self.routing is not None else None
        d_mean, d_var, stops, s_var = self._trip_blend
        if sector >= 0:
            d_mean, d_var = self._sector_blend[sector]
        # Relative variances of the two trip factors add (independent, multiplied).
        cv2 = s_var / (stops * stops)
        override = 0.0
        if route is not None and route.distance_m > 0.0 and route.duration_s > 0.0:
            path = route.distance_m
            override = route.distance_m / route.duration_s
        else:
            path = straight * d_mean
            cv2 += d_var / (d_mean * d_mean)
        piece = path / len(samples)
        how = self.clock.hour_of_week(at_ts)
        t = sd_noise = sd_mean = 0.0
        for cell_id, area in samples:
            v, noise_cv, mean_cv = self._sample(cell_id, area, override, how, at_ts)
            ti = piece / v
            t += ti
            sd_noise += ti * noise_cv
            sd_mean += ti * mean_cv
        # Pieces of one leg share weather, traffic and driver: their errors add up linearly.
        sd_noise *= self.config.trip_cv_scale
        scale = stops * (self._calib_at(x) if calibrated else 1.0)
        t *= scale
        sd = scale * sqrt(sd_noise * sd_noise + sd_mean * sd_mean)
        sd = sqrt(sd * sd + t * t * cv2)
        return t, sd, path

    def _leg(self, key: tuple[float, float, float, float]) -> _Leg:
        cfg = self.config
        lat1, lon1, lat2, lon2 = key
        straight = haversine_m(lat1, lon1, lat2, lon2)
        n = min(cfg.max_samples, max(1, ceil(straight / cfg.sample_spacing_m)))
        samples = []
        for lat, lon in points_along(lat1, lon1, lat2, lon2, n):
            cell_id = h3.latlng_to_cell(lat, lon, cfg.cell_res)
            samples.append((cell_id, self._area_speed(cell_id)))
        # Too short a leg has no direction worth the name: it takes the all-directions detour.
        sector = -1
        if self._sector_detours and straight >= cfg.trip_min_straight_m:
            sector = self._sector(bearing_deg(lat1, lon1, lat2, lon2))
        x = log(max(straight, 1.0) / cfg.calib_ref_m)
        leg = (straight, sector, x, tuple(samples))
        if len(self._legs) >= cfg.leg_cache_size:
            # Moving positions fill the cache with one-off legs; start over rather than track age.
            self._legs.clear()
        self._legs[key] = leg
        return leg

    def _area_speed(self, cell_id: int) -> float:
        areas = self.prior.area_speeds
        if not areas:
            return self.prior.speed_mps
        return areas.get(h3.cell_to_parent(cell_id, AREA_RES), self.prior.speed_mps)

    def _sample(
        self, cell_id: int, area: float, override: float, how: int, at_ts: float
    ) -> tuple[float, float, float]:
        """Speed of a cell at an hour of week and time, with the two relative spreads.

        Returns (mean speed, sd of sampled speeds / mean, sd of the mean itself / mean).
        """
        p = self.prior
        prior = override or area
        cell = self._cells.get(cell_id)
        if cell is None:
            return prior, p.speed_cv, p.mean_cv
        if override:
            base = self._base(cell, prior, how)
        else:
            # The area prior is fixed per cell, so the blend only changes when the cell learns.
            cached = cell.cache.get(how)
            base = (
                cached
                if cached is not None
                else cell.cache.setdefault(how, self._base(cell, prior, how))
            )
        m, sd, weight, support = base
        tau = self.config.live_tau_s
        if tau > 0.0 and cell.live_n > 0.0:
            age = at_ts - cell.live_ts
            live = self.config.live_gain * cell.live_n * (exp(-age / tau) if age > 0.0 else 1.0)
            m = (weight * m + live * cell.live_mean) / (weight + live)
            support += live
        w0 = p.weight
        return m, sd / m, p.mean_cv * sqrt(w0 / (w0 + support))

    def _base(self, cell: _Cell, prior: float, how: int) -> tuple[float, float, float, float]:
        """Learned levels blended coarse to fine: (mean, sd, weight of the result, evidence)."""
        p = self.prior
        w0, cap = p.weight, self._cap
        m, var, k1 = _shrink(prior, (p.speed_cv * prior) ** 2, w0, cell.all, cap)
        m, var, k2 = _shrink(m, var, w0, cell.hod.get(how % 24), cap)
        m, var, k3 = _shrink(m, var, w0, cell.how.get(how), cap)
        # Coarser levels say less about this very hour, so they count for less evidence.
        return m, sqrt(var), w0 + k3, k3 + 0.5 * k2 + 0.25 * k1

    # -- persistence --------------------------------------------------------------------

    @property
    def cell_count(self) -> int:
        """Number of cells with learned data."""
        return len(self._cells)

    def snapshot(self) -> dict[str, Any]:
        """Everything learned, as JSON-serialisable data (cells as H3 hex strings)."""
        cells: dict[str, Any] = {}
        for cell_id, c in self._cells.items():
            entry: dict[str, Any] = {
                "all": c.all.dump(),
                "hod": {str(k): s.dump() for k, s in c.hod.items()},
                "how": {str(k): s.dump() for k, s in c.how.items()},
            }
            if c.live_n > 0.0:
                entry["live"] = [c.live_n, c.live_mean, c.live_ts]
            cells[h3.int_to_str(cell_id)] = entry
        return {
            "version": SNAPSHOT_VERSION,
            "cell_res": self.config.cell_res,
            "tz_offset_s": self.config.tz_offset_s,
            "timezone": self.config.timezone,
            "detour": self._detour.dump(),
            "stops": self._stops.dump(),
            # "calib" keeps the layout of a _Stat (count, mean, variance of the log-ratio), so
            # older versions still read it as a flat calibration; "calib_x" adds the distance.
            "calib": [self._calib.n, self._calib.my, self._calib.vyy],
            "calib_x": [self._calib.mx, self._calib.vxx, self._calib.cxy],
            "detour_sectors": [st.dump() for st in self._sector_detours],
            "cells": cells,
        }

    @classmethod
    def restore(
        cls,
        data: Mapping[str, Any],
        prior: SpeedPrior | None = None,
        config: ModelConfig | None = None,
        routing: RoutingPrior | None = None,
    ) -> SpeedModel:
        """A model holding what ``snapshot`` saved; raises SnapshotError if it does not fit.

        Without ``config`` the snapshot's resolution and clock are used; with one, the
        resolution must match (learned keys mean nothing at another). Learned on another
        clock (another zone or offset, or before zones: UTC + offset), everything is kept
        but the speeds by hour of day and of week, which are learned again: their keys
        would be hours of another clock.
        """
        try:
            if data["version"] != SNAPSHOT_VERSION:
                raise SnapshotError(f"unsupported snapshot version {data['version']!r}")
            res, tz = int(data["cell_res"]), int(data["tz_offset_s"])
            zone = str(data.get("timezone", ""))
            if config is None:
                config = ModelConfig(cell_res=res, tz_offset_s=tz, timezone=zone)
            elif config.cell_res != res:
                raise SnapshotError("snapshot resolution differs from config")
            same_clock = config.timezone == zone and (zone != "" or config.tz_offset_s == tz)
            if not same_clock:
                logger.warning(
                    "speeds learned on another clock (%s, not %s): relearning them by hour",
                    zone or f"UTC{tz:+d}s",
                    config.timezone or f"UTC{config.tz_offset_s:+d}s",
                )
            model = cls(prior, config, routing)
            model._detour = _load_stat(data["detour"])
            model._stops = _load_stat(data["stops"])
            if "calib" in data:  # snapshots from before calibration have none
                model._calib = _load_fit(data["calib"], data.get("calib_x"))
                model._calib_line = model._calib.line(model.prior.trip_weight, model._cap)
            sectors = data.get("detour_sectors")
            # Learned with another number of sectors (or before sectors): learned again.
            if isinstance(sectors, list) and len(sectors) == len(model._sector_detours):
                model._sector_detours = [_load_stat(st) for st in sectors]
            model._trip_blend = model._blend_trips()
            model._sector_blend = model._blend_sectors()
            for key, entry in data["cells"].items():
                model._cells[h3.str_to_int(key)] = _load_cell(entry, hours=same_clock)
        except SnapshotError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SnapshotError(f"malformed snapshot: {exc!r}") from exc
        return model

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a snapshot atomically: a reader or a crash sees the old file or the new one."""
        save_json(path, self.snapshot())

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        prior: SpeedPrior | None = None,
        config: ModelConfig | None = None,
        routing: RoutingPrior | None = None,
        *,
        missing_ok: bool = False,
    ) -> SpeedModel:
        """Read a file written by ``save``; a missing file gives a fresh model if ``missing_ok``."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            if missing_ok:
                return cls(prior, config, routing)
            raise
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SnapshotError(f"snapshot is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise SnapshotError("snapshot is not a JSON object")
        return cls.restore(data, prior, config, routing)


def save_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> None:
    """Write JSON atomically (temporary file, fsync, rename): the old file or the new one."""
    target = Path(path)
    payload = json.dumps(data, separators=(",", ":"))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_stat(raw: Any) -> _Stat:
    n, mean, var = (float(x) for x in raw)
    if n < 0 or var < 0:
        raise ValueError("negative count or variance")
    return _Stat(n, mean, var)


def _load_fit(calib: Any, calib_x: Any) -> _Fit:
    """The calibration fit; without ``calib_x`` (older snapshots), a flat one at calib_ref_m."""
    fit = _Fit()
    st = _load_stat(calib)
    fit.n, fit.my, fit.vyy = st.n, st.mean, st.var
    if calib_x is not None:
        fit.mx, fit.vxx, fit.cxy = (float(v) for v in calib_x)
        if fit.vxx < 0:
            raise ValueError("negative variance")
    return fit


def _load_cell(entry: Mapping[str, Any], hours: bool = True) -> _Cell:
    cell = _Cell()
    cell.all = _load_stat(entry["all"])
    hod = {int(k): _load_stat(v) for k, v in entry["hod"].items()}
    how = {int(k): _load_stat(v) for k, v in entry["how"].items()}
    if hours:
        cell.hod, cell.how = hod, how
    if "live" in entry:
        cell.live_n, cell.live_mean, cell.live_ts = (float(x) for x in entry["live"])
    return cell
