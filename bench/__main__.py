"""Benchmark program: ``python -m bench CASE [CASE ...] [--quick]``.

Each case is a module in ``bench.cases`` exposing ``run(quick: bool) -> dict``.
The result, with machine information, is written to ``bench/results/CASE.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import sys
import time
from pathlib import Path
from typing import Any

import bench.cases

RESULTS = Path(__file__).resolve().parent / "results"


def available_cases() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules(bench.cases.__path__) if not m.name.startswith("_")
    )


def machine_info() -> dict[str, Any]:
    mem_kib = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            mem_kib = int(f.readline().split()[1])
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "mem_gib": round(mem_kib / 2**20, 1),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run_case(name: str, quick: bool) -> dict[str, Any]:
    module = importlib.import_module(f"bench.cases.{name}")
    started = time.perf_counter()
    result: dict[str, Any] = module.run(quick=quick)
    report = {
        "case": name,
        "quick": quick,
        "wall_s": round(time.perf_counter() - started, 2),
        "machine": machine_info(),
        "result": result,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("cases", nargs="*", help=f"cases to run: {', '.join(available_cases())}")
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes (what `make bench` runs)"
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)
    if args.list or not args.cases:
        print("\n".join(available_cases()))
        return 0
    unknown = set(args.cases) - set(available_cases())
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    for name in args.cases:
        report = run_case(name, args.quick)
        print(json.dumps({"case": name, **report["result"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
