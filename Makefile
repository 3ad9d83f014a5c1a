# The two commands:  make run  (the whole system)   make test  (the whole test suite)
# Both set up everything first: the virtualenv with the project and its extras, and local
# PostgreSQL and Redis (installed from Debian's packages if missing, started if stopped).
# make test also installs docker-compose from Debian's packages (tests/test_deploy.py runs
# `docker-compose config` on docker/docker-compose.yml; no Docker engine is needed for that).
# `make test` also installs Debian's chromium if missing: the inbox page test drives it.
# redis-sentinel (Debian's package) runs the Sentinels of the Redis failover test.
# `make test` also installs Node.js and npm from Debian's packages if missing, then the pinned
# openapi-typescript and typescript of clients/typescript/package-lock.json (tests/test_clients.py).

VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

TS_TOOLS := clients/typescript/node_modules/.package-lock.json

.PHONY: run test bench services deploy-tools browser client-tools

run: $(STAMP) services
	$(BIN)/notification-service dev

# Lint, types (mypy --strict, setup.cfg) and the import rules (setup.cfg's [importlinter]) first.
test: $(STAMP) services deploy-tools browser client-tools
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app tasks relay
	$(BIN)/lint-imports
	$(BIN)/pytest $(PYTEST_ARGS)

# Benchmarks (not part of the test suite): wrk from Debian, procrastinate (the peer) from PyPI.
bench: $(STAMP) services
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python -m bench $(BENCH_ARGS)

$(STAMP): setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,dev]"
	touch $(STAMP)

services:
	@if ! command -v pg_ctlcluster >/dev/null || ! command -v redis-server >/dev/null \
	    || ! command -v redis-sentinel >/dev/null; then \
	  echo "installing PostgreSQL, Redis and Redis Sentinel from Debian's packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server redis-sentinel; \
	fi
	@if ! pg_isready -q -h 127.0.0.1 -p 5432; then \
	  echo "starting PostgreSQL"; \
	  for version in $$(ls /etc/postgresql); do \
	    pg_ctlcluster --skip-systemctl-redirect $$version main start || true; \
	  done; \
	  for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
	fi
	@if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then \
	  echo "starting Redis"; \
	  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no; \
	  for i in $$(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done; \
	fi

deploy-tools:
	@if ! command -v docker-compose >/dev/null; then \
	  echo "installing docker-compose from Debian's packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose; \
	fi

client-tools: $(TS_TOOLS)

# npm ci installs exactly the committed lock; redone when the lock changes.
$(TS_TOOLS): clients/typescript/package-lock.json
	@if ! command -v npm >/dev/null; then \
	  echo "installing Node.js and npm from Debian's packages (for the TypeScript client test)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm; \
	fi
	npm ci --prefix clients/typescript --no-audit --no-fund --loglevel=error
	touch $(TS_TOOLS)

browser:
	@if ! command -v chromium >/dev/null; then \
	  echo "installing chromium from Debian's packages (for the inbox page test)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi
