# `make run` starts the whole service locally; `make test` runs the suite against real servers.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run test install redis-check init-db seed-demo bench clean

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

test: install redis-check
	$(PY) -m pytest -q

run: install
	@bash bin/run-local

init-db: install
	$(VENV)/bin/flask --app app init-db

seed-demo: install
	$(VENV)/bin/flask --app app seed-demo

clean:
	rm -rf $(VENV) var .pytest_cache
