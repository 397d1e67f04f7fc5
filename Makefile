# Switchboard: `make run` starts everything locally, `make test` runs the whole suite.
SHELL := bash
export UV_PYTHON_DOWNLOADS := never
UV = $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PY = $(UV) run --frozen
PACKAGES := $(shell for d in libs/*/switchboard/* services/*/switchboard/*; do [ -d $$d ] && echo -p switchboard.$$(basename $$d); done)

.PHONY: install services run demo e2e chaos test test-only lint format bench docs up check-deploy clean

install:  ## uv, RabbitMQ, dovecot, FerretDB (cached), and the Python workspace
	@bash deploy/local/install.sh $(if $(CI),--ci)
	@$(UV) sync --frozen --quiet

services: install  ## find or start RabbitMQ and FerretDB on loopback; prints their URLs
	@$(PY) switchboard services

run: install  ## the embedded default: local servers + every service, Ctrl-C stops all
	@$(PY) switchboard run

demo: install  ## a scripted scenario through the real stack, printed as a transcript
	@$(PY) python tests/e2e/scenario.py

e2e: install  ## the demo scenario as a test, every service its own process
	@$(PY) pytest -m e2e tests/e2e

chaos: install  ## N mails (MAILS=2000) while services, RabbitMQ and FerretDB are killed; checks nothing lost
	@$(PY) python tests/chaos/run.py --mails $(or $(MAILS),2000)

test: install lint check-deploy test-only  ## lint, deployment checks, then every test against real servers

test-only:
	@$(PY) pytest

lint:  ## ruff + mypy
	@$(PY) ruff check .
	@$(PY) ruff format --check .
	@$(PY) mypy $(PACKAGES)

format:
	@$(PY) ruff format .
	@$(PY) ruff check --fix .

bench: install  ## throughput and latency figures of every service (prints, never asserts)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) python $$b || exit 1; done

docs: install  ## AsyncAPI documents of every service into docs/asyncapi/
	@$(PY) python -m switchboard.runtime.asyncapi docs/asyncapi

up:  ## the production-like stack with Docker Compose (needs a Docker engine)
	docker compose up --build

check-deploy:  ## validate the compose file and the Prometheus configuration
	@if command -v docker-compose >/dev/null; then docker-compose -f docker-compose.yml config -q && echo "compose file: valid"; \
	 elif [ -n "$(CI)" ]; then echo "docker-compose missing" >&2; exit 1; else echo "compose check skipped: no docker-compose"; fi
	@if command -v promtool >/dev/null; then promtool check config deploy/prometheus/prometheus.yml; \
	 elif [ -n "$(CI)" ]; then echo "promtool missing" >&2; exit 1; else echo "promtool check skipped: no promtool"; fi

clean:
	rm -rf .local .pytest_cache .mypy_cache .ruff_cache
