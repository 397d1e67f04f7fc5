# Switchboard: `make run` starts everything locally, `make test` runs the whole suite.
SHELL := bash
export UV_PYTHON_DOWNLOADS := never
UV = $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PY = $(UV) run --frozen
PACKAGES := $(shell for d in libs/*/switchboard/* services/*/switchboard/* apps/*/switchboard/*; do [ -d $$d ] && echo -p switchboard.$$(basename $$d); done)

.PHONY: install services run demo e2e chaos test test-only lint lint-web web web-types format bench docs secrets up backup check-deploy clean

install:  ## uv, RabbitMQ, dovecot, FerretDB (cached), Chromium, the Python workspace, the web app
	@bash deploy/local/install.sh $(if $(CI),--ci)
	@PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(UV) sync --frozen --quiet
	@$(MAKE) --no-print-directory web

# The desktop app (web/): npm ci when the lock file changed, vite build when a source changed.
export NPM_CONFIG_UPDATE_NOTIFIER := false
export NPM_CONFIG_FUND := false
export NPM_CONFIG_AUDIT := false
WEB_SOURCES := $(shell find web/src -type f 2>/dev/null) web/index.html web/vite.config.ts web/svelte.config.js web/tsconfig.json

web: web/dist/index.html  ## build the desktop app (skipped when up to date)

web/node_modules/.package-lock.json: web/package-lock.json
	@cd web && npm ci --loglevel=error

web/dist/index.html: web/node_modules/.package-lock.json $(WEB_SOURCES)
	@cd web && npm run --silent build -- --logLevel warn

web-types: web/node_modules/.package-lock.json  ## regenerate web/src/gateway.d.ts from the gateway's OpenAPI
	@$(PY) python web/scripts/export_openapi.py web/openapi.json
	@cd web && npm run --silent types

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

test-only:  ## every test (tests/deploy ran in check-deploy already)
	@$(PY) pytest --ignore=tests/deploy

lint: lint-web  ## ruff + mypy + architecture rules (import contracts, module sizes), and the web app's types (generated ones up to date, svelte-check)
	@$(PY) ruff check .
	@$(PY) ruff format --check .
	@$(PY) mypy $(PACKAGES)
	@$(PY) lint-imports --no-cache
	@$(PY) python scripts/check_module_size.py

lint-web: web/node_modules/.package-lock.json
	@$(PY) python web/scripts/export_openapi.py web/openapi.json
	@cd web && npm run --silent types:check && npm run --silent check

format:
	@$(PY) ruff format .
	@$(PY) ruff check --fix .

bench: install  ## the floor (bare consume-insert-publish loop), then every service beside it (prints, never asserts)
	@echo "== bench/bench_floor.py"; $(PY) python bench/bench_floor.py --save .local/bench/floor.txt || exit 1; \
	 export BENCH_FLOOR_MSG_S=$$(cat .local/bench/floor.txt); \
	 for b in bench/bench_*.py; do [ $$b = bench/bench_floor.py ] && continue; \
	   echo "== $$b"; $(PY) python $$b || exit 1; done

docs: install  ## AsyncAPI documents of every service into docs/asyncapi/
	@SB_DEVELOPMENT=true $(PY) python -m switchboard.app.asyncapi docs/asyncapi

COMPOSE = $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
BACKUP_DIR = backups/$(shell date -u +%Y%m%dT%H%M%SZ)

secrets:  ## generate the production secrets into deploy/secrets/ (git-ignored; kept if present)
	@python3 deploy/make_secrets.py deploy/secrets

up: secrets  ## the production stack with Docker Compose (needs a Docker engine); docs/operations.md
	$(COMPOSE) up -d --build

backup:  ## MongoDB dump + RabbitMQ definitions of the running stack into backups/<time>/
	@mkdir -p $(BACKUP_DIR)
	$(COMPOSE) exec -T mongo sh -c 'mongodump --quiet --archive --gzip --authenticationDatabase admin \
	  --username "$$(cat /run/secrets/mongo_root_user)" --password "$$(cat /run/secrets/mongo_root_password)"' \
	  > $(BACKUP_DIR)/mongo.archive.gz
	$(COMPOSE) exec -T rabbitmq rabbitmqctl export_definitions - --silent > $(BACKUP_DIR)/rabbitmq-definitions.json
	@echo "backup: $(BACKUP_DIR)"

check-deploy: secrets  ## compose file, Prometheus config, rules and their tests, dashboards, metrics
	@if command -v docker-compose >/dev/null; then \
	   docker-compose -f docker-compose.yml config -q && \
	   docker-compose -f docker-compose.yml -f deploy/compose.demo.yml --profile tracing config -q && \
	   echo "compose files: valid"; \
	 elif [ -n "$(CI)" ]; then echo "docker-compose missing" >&2; exit 1; else echo "compose check skipped: no docker-compose"; fi
	@if command -v promtool >/dev/null; then \
	   promtool check config deploy/prometheus/prometheus.yml && \
	   promtool check rules deploy/prometheus/rules/*.yml && \
	   promtool test rules deploy/prometheus/tests/*.yml; \
	 elif [ -n "$(CI)" ]; then echo "promtool missing" >&2; exit 1; else echo "promtool checks skipped: no promtool"; fi
	@$(PY) pytest -q tests/deploy

clean:
	rm -rf .local .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
