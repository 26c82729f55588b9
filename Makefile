# `make run` starts the whole service locally; `make test` runs the suite against real servers.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run test install redis-check openssl-check init-db migrate seed-demo bench clean

# requirements.txt and requirements-dev.txt are hashed locks compiled from the .in files:
# every install gets exactly the tested versions (`make lock` after editing an .in file).
$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet --require-hashes -r requirements-dev.txt
	touch $@

PIP_COMPILE := $(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links

.PHONY: lock upgrade
# Recompile the locks from requirements.in / requirements-dev.in (keeps versions that still fit).
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet pip-tools
	$(PIP_COMPILE) -o requirements.txt requirements.in
	$(PIP_COMPILE) -o requirements-dev.txt requirements-dev.in

# Move every dependency to the newest version its range allows, reinstall, and run the suite.
upgrade:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet pip-tools
	$(PIP_COMPILE) --upgrade -o requirements.txt requirements.in
	$(PIP_COMPILE) --upgrade -o requirements-dev.txt requirements-dev.in
	rm -f $(VENV)/.installed
	$(MAKE) test

install: $(VENV)/.installed

redis-check:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server; \
	  else echo "redis-server is missing; install it with: sudo apt-get install -y redis-server"; exit 1; fi; }

# The deploy test makes TLS certificates for a local Redis with the openssl CLI.
openssl-check:
	@command -v openssl >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl; \
	  else echo "openssl is missing; install it with: sudo apt-get install -y openssl"; exit 1; fi; }

# The suite runs on pytest-xdist workers, two per core (`-n auto`: most tests wait on processes,
# sockets and browsers, not the CPU; tests/conftest.py), each with its own Redis, PostgreSQL and
# Chromium. The collection is laid out longest tests first across the workers (tests/ordering.py,
# from tests/durations.json) and worksteal rebalances the tail. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= auto
test: install redis-check openssl-check
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

# The fast tier: no servers and no worker processes (the service layer's use cases on a SQLite
# file, the engine, the rules, settings, catalogue, dependencies, docs and the import layering),
# well under a minute; `make test` runs everything.
FAST_TESTS := tests/test_core_*.py tests/test_forecast_engine.py tests/test_forecast_rules.py tests/test_config.py \
	tests/test_catalog.py tests/test_dependencies.py tests/test_docs.py tests/test_layering.py
.PHONY: test-fast
test-fast: install
	$(PY) -m pytest -q $(FAST_TESTS)

# Static checks (pyproject.toml): lint and format, types (strict on the service layer and the forecast
# engine) and the import contracts of the layering. .ci/run runs them before the tests.
.PHONY: check
check: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy app/core app/forecast/engine
	PYTHONPATH=. $(VENV)/bin/lint-imports

# The web process listens on 127.0.0.1; `make run HOST=0.0.0.0` (or HOST in .env) serves the network.
run: install
	@bash bin/run-local

init-db: install
	$(VENV)/bin/flask --app app init-db

migrate: install
	$(VENV)/bin/flask --app app migrate

seed-demo: install
	$(VENV)/bin/flask --app app seed-demo

# Benchmarks (bench/README.md): its own servers and the Procfile's processes; BENCH_ARGS=--quick for a smoke run.
bench: install redis-check
	$(PIP) install --quiet -r bench/requirements.txt
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk; \
	  else echo "wrk is missing; install it with: sudo apt-get install -y wrk"; exit 1; fi; }
	$(PY) bench/run.py $(BENCH_ARGS)

# Forecast engine benchmark: its own Redis and PostgreSQL, 1 and 2 worker processes, statsmodels
# for comparison (bench/requirements.txt). BENCH_ARGS=--quick for a smoke run. Then the real-data
# section: bench/forecast_real.py on REAL_DEMAND (the shared real data beside the checkout) when
# that folder is there; the repository ships only the bike data (data/bike.csv.gz, CC BY 4.0).
REAL_DEMAND ?= ../shared/data/real-demand
.PHONY: bench-forecast
bench-forecast: install redis-check
	$(PIP) install --quiet -r bench/requirements.txt
	$(PY) bench/forecast_bench.py $(BENCH_ARGS)
	@if [ -d "$(REAL_DEMAND)" ] && ls "$(REAL_DEMAND)"/*.csv* >/dev/null 2>&1 && [ -f bench/forecast_real.py ]; then \
	  echo "== real data: bench/forecast_real.py on $(REAL_DEMAND)"; \
	  $(PY) bench/forecast_real.py --data "$(REAL_DEMAND)" $(filter --quick,$(BENCH_ARGS)); \
	else \
	  echo "== real data: $(REAL_DEMAND) (or bench/forecast_real.py) is absent; skipped (set REAL_DEMAND=DIR); the shipped bike data:"; \
	  $(VENV)/bin/flask --app app backtest data/bike.csv.gz --horizon 14 --origins 6; \
	fi

clean:
	rm -rf $(VENV) var .pytest_cache

# PNGs of the dashboard and rq-dashboard pages, taken by headless Chromium (Debian's chromium-headless-shell).
.PHONY: screenshots
screenshots: install redis-check
	@command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium-headless-shell fonts-dejavu-core; \
	  else echo "chromium-headless-shell is missing; install it with: sudo apt-get install -y chromium-headless-shell"; exit 1; fi; }
	mkdir -p screenshots
	REQUIRE_BROWSER=1 SCREENSHOT_DIR=$(CURDIR)/screenshots $(PY) -m pytest -q -p no:cacheprovider tests/test_dashboard_browser.py tests/test_audit_browser.py tests/test_trends_browser.py -k screenshots
	@ls -1 screenshots/*.png
