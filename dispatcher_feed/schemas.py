"""Request bodies of the HTTP API, validated by FastAPI (pydantic) into 422s with reasons."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Lat = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Lon = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
# Times a plan may hold: from 1970 to the end of 2099. Beyond that nothing is a booking,
# and local calendar days (tours, KPIs) cannot be computed near year 10000.
MAX_EPOCH_S = 4_102_444_800.0  # 2100-01-01T00:00:00Z
EpochS = Annotated[float, Field(ge=0, le=MAX_EPOCH_S, allow_inf_nan=False)]


class TechnicianIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=200)]
    device_ids: Annotated[list[Id], Field(max_length=32)] = []
    skills: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=64)] = []


class SiteIn(BaseModel):
    lat: Lat
    lon: Lon
    radius_m: Annotated[float, Field(gt=0, le=5000, allow_inf_nan=False)] = 100.0

    @model_validator(mode="after")
    def not_null_island(self) -> SiteIn:
        if self.lat == 0 and self.lon == 0:
            raise ValueError("site at lat=0, lon=0 is almost certainly a missing location")
        return self


class WindowIn(BaseModel):
    start: EpochS
    end: EpochS

    @model_validator(mode="after")
    def ordered(self) -> WindowIn:
        if self.end < self.start:
            raise ValueError("window.end is before window.start")
        return self


class CustomerIn(BaseModel):
    name: Annotated[str, Field(max_length=200)] = ""
    ref: Annotated[str | None, Field(max_length=200)] = None


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    technician_id: Id | None = None
    site: SiteIn
    window: WindowIn | None = None
    planned_duration_s: Annotated[float, Field(ge=0, le=7 * 86400, allow_inf_nan=False)] = 1800
    sequence: Annotated[int, Field(ge=0)] = 0
    customer: CustomerIn = CustomerIn()
    priority: Literal["normal", "urgent"] = "normal"
    # The job this one revisits (a follow-up booked for the same request).
    follow_up_of: Id | None = None


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["en_route", "on_site", "paused", "resumed", "done", "cancelled", "failed"]
    # As the codec's rule for a device (gateway.codec.check_ts), so the schema says it too.
    ts: Annotated[float | None, Field(ge=946_684_800, le=MAX_EPOCH_S, allow_inf_nan=False)] = None
    note: Annotated[str | None, Field(max_length=1000)] = None


class PositionsIn(BaseModel):
    device_id: Id
    # Items are validated by the gateway's codec, exactly as over MQTT.
    positions: Annotated[list[Any], Field(min_length=1, max_length=1000)]


class SessionIn(BaseModel):
    api_key: Annotated[str, Field(min_length=1, max_length=512)]


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str


class ErrorOut(BaseModel):
    """Every 4xx answer: a short code, a sentence, and for invalid requests every problem."""

    error: str
    reason: str
    detail: list[ErrorDetail] | None = None


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given 4xx statuses, all of shape ``ErrorOut`` (it also
    replaces FastAPI's default 422 schema, which is not what the API answers)."""
    what = {
        400: "Unusable input", 401: "Missing or wrong API key", 404: "No such resource",
        409: "Refused by the resource's state", 410: "Gone", 422: "Invalid request",
    }  # fmt: skip
    return {s: {"model": ErrorOut, "description": what[s]} for s in statuses}


def finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value
