# FieldTrack — the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint typecheck unit integration browser bench clean

# Leaflet comes from the npm registry and is vendored into the package's static files.
VENDOR := dispatcher_feed/static/vendor/leaflet.js

install: $(STAMP) $(VENDOR)

# Re-runs only when the dependencies change; `make install` twice does nothing.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -U pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

$(VENDOR): package.json package-lock.json scripts/build_assets.sh
	scripts/build_assets.sh

demo: install
	$(BIN)/fieldtrack demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q

unit: install
	$(BIN)/pytest -q tests/unit

integration: install
	$(BIN)/pytest -q tests/integration

browser: install
	$(BIN)/pytest -q -m browser

# The quick set (under 3 minutes); `python -m bench --list` names every case.
BENCH_QUICK ?= codec geofence eta_micro eta ingest latency memory redis_store scale loadgen_raw
bench: install
	$(BIN)/python -m bench --quick $(BENCH_QUICK)

clean:
	rm -rf $(VENV) node_modules dispatcher_feed/static/vendor .mypy_cache .ruff_cache .pytest_cache .hypothesis
