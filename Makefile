# KPI alerts on Airflow 3 — the two commands are `make demo` and `make test`.
# Everything else is a building block of those two.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test faults lint typecheck pytest up down env bench system-deps install clean

## The demo: local Postgres + Cube.js + mail catcher, demo alerts, `airflow dags test kpi_alerts <T>`.
demo: install
	$(PY) -m devstack.demo

## All checks CI runs: ruff, mypy and the whole pytest suite (unit, DAG, end-to-end with real servers).
test: install
	$(PY) -m devstack up
	$(MAKE) lint typecheck pytest

## The fault suite only (pytest -m faults; `make test` runs it too): prints the fault table, see tests/fault_table.py.
faults: install
	$(PY) -m devstack up
	$(VENV)/bin/pytest -q -p no:cacheprovider -m faults

## ruff, then the import direction (import-linter contracts in pyproject.toml: glue -> pipeline -> domain).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy

pytest: install
	$(VENV)/bin/pytest -q -p no:cacheprovider

up: install
	$(PY) -m devstack up

down: install
	$(PY) -m devstack down

## Print `export AIRFLOW_*` lines pointing Airflow at the local stack: eval "$$(make -s env)"
env: install
	@$(PY) -m devstack env

bench: install
	$(PY) -m devstack up
	$(PY) -m bench

install: $(VENV)/.installed cube/node_modules/.installed

## The package itself is installed editable (no deps: requirements.txt pins them), which registers it
## as an Airflow provider (the `cube` connection type, operators, notifier; see pyproject.toml).
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(MAKE) system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

cube/node_modules/.installed: cube/package.json cube/package-lock.json
	cd cube && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

## the chart needs cairo (cairocffi), the PDF report (reportlab) the DejaVu fonts; pango and harfbuzz-subset serve only
## WeasyPrint, which bench/bench_pdf.py measures the PDF renderer against (requirements-dev.txt); docker-compose (v1) validates docker-compose.yaml in the
## tests (no Docker engine here); redis-server is the Celery broker of the native topology (`python -m devstack topology up`);
## the UI page's tests drive Debian's Chromium with Playwright; pgbouncer (transaction pooling) stands in front of the
## alerts database in the fault suite.
## Installed from Debian when missing and we may (root with apt-get).
SYSTEM_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0 libcairo2 libharfbuzz-subset0 fonts-dejavu-core docker-compose redis-server chromium pgbouncer
system-deps:
	@if ! ldconfig -p | grep -q libpangoft2-1.0 || ! ldconfig -p | grep -q libcairo.so.2 || ! ldconfig -p | grep -q libharfbuzz-subset \
	    || ! command -v docker-compose >/dev/null || ! command -v redis-server >/dev/null || ! command -v chromium >/dev/null \
	    || ! { command -v pgbouncer || test -x /usr/sbin/pgbouncer; } >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null) \
	      || echo "warning: could not install $(SYSTEM_PACKAGES)"; \
	  else echo "warning: please install $(SYSTEM_PACKAGES)"; fi; \
	fi

clean: down
	rm -rf .devstack .artifacts
