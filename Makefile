# jobengine: `make run` (demo end to end) and `make test` work on a fresh machine.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e . --group test --group lint --group typing
	@touch $(STAMP)

system:  ## install the Debian packages we need when missing (ImageMagick; docker-compose by docker)
	@if ! ldconfig -p | grep -q libMagickWand || ! convert -version 2>/dev/null | grep -q "^Version: ImageMagick"; then \
	  echo "installing ImageMagick (Debian packages)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends imagemagick libmagickwand-6.q16-6 >/dev/null; \
	fi
# The fault suite (tests/faults) starts its own redis-server and PostgreSQL clusters (initdb,
# pg_ctl) to kill and stop them: Debian's packages when missing.
	@if ! command -v redis-server >/dev/null || ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
	  echo "installing redis-server and postgresql (Debian packages) for the fault suite"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends redis-server postgresql >/dev/null; \
	fi
# A docker client without compose (no plugin, no docker-compose): Debian's docker-compose, so
# tests/test_docker_files.py can check docker/compose.yaml (`config` needs no Docker engine).
	@if command -v docker >/dev/null && ! docker compose version >/dev/null 2>&1 \
	    && ! docker-compose version >/dev/null 2>&1; then \
	  echo "installing docker-compose (Debian package) to check docker/compose.yaml"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || { command -v sudo >/dev/null && echo sudo; } ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends docker-compose >/dev/null \
	    || echo "could not install docker-compose: the compose check will be skipped"; \
	fi

setup: system $(STAMP)  ## create .venv and install everything

run: setup  ## start the embedded stack and run the demo job end to end (Ctrl-C stops)
	$(VENV)/bin/jobengine dev

# The container tests (tests/smoke) need a Docker engine and local base images: `up` installs
# docker.io and debootstrap when missing, starts dockerd when no engine answers and builds the
# bases once (docker/local/engine.sh); `down` stops only a dockerd that `up` started.
docker-engine:  ## a Docker engine and the local base images for tests/smoke (left running)
	@bash docker/local/engine.sh up

docker-engine-stop:  ## stop the dockerd that `make docker-engine` started (nothing else)
	@bash docker/local/engine.sh down

test: setup  ## run the whole test suite (SQLite and PostgreSQL, Redis, RabbitMQ, Docker when present)
	@bash docker/local/engine.sh up
	@rc=0; $(VENV)/bin/pytest $(PYTEST_ARGS) || rc=$$?; bash docker/local/engine.sh down; exit $$rc

lint: setup  ## ruff and mypy --strict
	$(VENV)/bin/ruff check jobengine tasks config tests bench
	$(VENV)/bin/ruff format --check jobengine tasks config tests bench
	$(VENV)/bin/mypy

worker: setup  ## a Celery worker (events on)
	$(VENV)/bin/jobengine worker

beat: setup  ## Celery beat with the store-backed scheduler
	$(VENV)/bin/jobengine beat

serve: setup  ## the IPS SOAP + JSON web service on http://127.0.0.1:8080
	$(VENV)/bin/jobengine serve

flower: setup  ## Flower on http://127.0.0.1:5555
	$(VENV)/bin/jobengine flower

# bench/growth.py fills a store to GROWTH_MAX runs (1M: about a quarter of an hour on 2 cores;
# `make bench GROWTH_MAX=100000` for a quick run); BENCH_DATABASE_URL picks PostgreSQL.
GROWTH_MAX ?= 1000000

bench: setup  ## benchmarks (print ratios; see BENCHMARKS.md)
	$(PY) -m pip install -q --group bench
	$(PY) bench/submit.py
	$(PY) bench/bulk.py
	$(PY) bench/e2e.py
	$(PY) bench/beat.py
	$(PY) bench/convert.py
	$(PY) bench/growth.py --max $(GROWTH_MAX)
	$(PY) bench/fanout.py

clean:  ## remove the venv and local data (after stopping a dockerd we started: its PID is in var/)
	@bash docker/local/engine.sh down
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

.PHONY: help system setup docker-engine docker-engine-stop run test lint worker beat serve flower bench clean
