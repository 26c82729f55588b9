# `make run` starts the whole service locally; `make test` runs the suite against real servers.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run test install redis-check openssl-check init-db migrate seed-demo bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

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

test: install redis-check openssl-check
	$(PY) -m pytest -q

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
# for comparison (bench/requirements.txt). BENCH_ARGS=--quick for a smoke run.
.PHONY: bench-forecast
bench-forecast: install redis-check
	$(PIP) install --quiet -r bench/requirements.txt
	$(PY) bench/forecast_bench.py $(BENCH_ARGS)
	$(PY) bench/forecast_real.py $(if $(findstring --quick,$(BENCH_ARGS)),--quick,)

clean:
	rm -rf $(VENV) var .pytest_cache

# PNGs of the dashboard and rq-dashboard pages, taken by headless Chromium (Debian's package).
.PHONY: screenshots
screenshots: install redis-check
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-dejavu-core; \
	  else echo "chromium is missing; install it with: sudo apt-get install -y chromium"; exit 1; fi; }
	mkdir -p screenshots
	REQUIRE_BROWSER=1 SCREENSHOT_DIR=$(CURDIR)/screenshots $(PY) -m pytest -q -p no:cacheprovider tests/test_dashboard_browser.py -k screenshots
	@ls -1 screenshots/*.png
