"""ETAs for field-service tours: learned travel times, tour cascade, delay rules, KPIs.

A pure library: floats, ids and small frozen dataclasses in and out, time passed in, no I/O
except ``SpeedModel.save``/``load``. Modules: ``geo`` (distances), ``speeds`` (travel-time
model), ``trips`` (whole drives for it), ``durations`` (on-site time model), ``estimate``
(ETA per remaining job), ``delay`` (alerts, re-optimisation, customer notifications),
``kpi`` (fleet KPIs), ``stats`` (distribution helpers).
"""
