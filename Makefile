# Two commands matter: `make run` (the whole pipeline, locally) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
CHECKOV_VENV := .venv-checkov
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Local development runs with DEBUG on (a development secret key, browsable API);
# production settings are checked by `make lint` and enforced at start-up.
export DEBUG ?= true
# Each checkout has a database, topic and consumer group of its own on the shared local
# services: a fresh clone starts empty, and two checkouts never see each other's outcomes
# or stored offsets (`make env` prints them; `make clean-data` empties this checkout's).
CHECKOUT := $(shell basename "$(CURDIR)" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9\n' '-' | cut -c1-20)-$(shell printf '%s' "$(CURDIR)" | sha1sum | cut -c1-6)
export DB_NAME ?= analytics_$(subst -,_,$(CHECKOUT))
export KAFKA_TOPIC_AUCTION_OUTCOMES ?= auction-outcomes-$(CHECKOUT)
export KAFKA_CONSUMER_GROUP ?= analytics-$(CHECKOUT)
export DB_USER ?= helios
export DB_PASSWORD ?= helios
export DB_HOST ?= 127.0.0.1
export KAFKA_BROKERS ?= 127.0.0.1:9092
export REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test test-fast bench lint graphql-schema venv assets services services-down status clean clean-data env

venv: $(STAMP)
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

## assets: the dashboard's front-end packages (npm, pinned by package-lock.json) into static files
VENDOR := outcomes/static/outcomes/vendor
assets: $(VENDOR)/.installed
$(VENDOR)/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	mkdir -p $(VENDOR)
	cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css $(VENDOR)/
	# GraphiQL (/api/graphql/ in a browser, DEBUG only) and the React it runs on: offline.
	cp node_modules/react/umd/react.production.min.js node_modules/react-dom/umd/react-dom.production.min.js $(VENDOR)/
	# Without their source-map comments: the maps are not shipped, and collectstatic's manifest
	# storage refuses a reference to a missing file.
	for f in graphiql.min.js graphiql.min.css; do sed '/sourceMappingURL=/d' node_modules/graphiql/$$f > $(VENDOR)/$$f; done
	touch $@

services: venv
	scripts/services.sh up

services-down:
	scripts/services.sh down

status:
	scripts/services.sh status

## env: this checkout's local settings, to paste into a shell: eval "$$(make -s env)"
env:
	@printf 'export DEBUG=%s DB_NAME=%s KAFKA_TOPIC_AUCTION_OUTCOMES=%s KAFKA_CONSUMER_GROUP=%s REDIS_URL=%s\n' \
	  "$$DEBUG" "$$DB_NAME" "$$KAFKA_TOPIC_AUCTION_OUTCOMES" "$$KAFKA_CONSUMER_GROUP" "$$REDIS_URL"

## clean-data: this checkout's database and topic, dropped (the next `make run` starts empty)
clean-data: venv
	scripts/services.sh drop-data

## run: services, migrations, producer, consumer and API in the foreground (Ctrl-C stops them)
run: services assets
	scripts/run.sh

## test: everything from nothing to a full test run (fails on any failure or on no tests)
test: services assets $(CHECKOV_VENV)/.installed
	$(PY) -m pytest

## test-fast: the quick tier while working (no broker, no browser); `make test` runs everything
test-fast: venv
	scripts/services.sh pg-up
	$(PY) -m pytest -m fast -q

## graphql-schema: write schema.graphql, the GraphQL API's contract, after a deliberate change
graphql-schema: venv
	$(PY) manage.py export_schema outcomes.graphql.schema --path schema.graphql

## bench: ingestion and query benchmarks against the local services
bench: services
	$(PY) bench/ingest.py
	$(PY) bench/queries.py
	$(PY) bench/export.py

## lint: code, migrations, Dockerfile, Kubernetes manifests and alert rules
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-checkov.txt
	touch $@

lint: venv assets $(CHECKOV_VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-logo
	$(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/yamllint -s kubernetes/
	$(VENV)/bin/kubernetes-validate --strict --quiet $$(find kubernetes -name "*.yaml")
	$(CHECKOV_VENV)/bin/checkov -d kubernetes --framework kubernetes --skip-download --compact --quiet
	promtool check rules monitoring/alerts.yaml
	cd monitoring && promtool test rules alerts.test.yaml
	DEBUG=false DJANGO_SECRET_KEY="$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))')" \
	  ALLOWED_HOSTS=analytics.example DJANGO_SECURE_PROXY_SSL_HEADER=true REDIS_URL=redis://redis.example:6379/0 \
	  $(PY) manage.py check --deploy --fail-level WARNING

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .ruff_cache staticfiles node_modules $(VENDOR)
