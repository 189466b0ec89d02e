# raymlops: `make help` lists the targets. Everything runs inside .venv (made by `make install`).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
EXP ?= quickstart
STATE := .raymlops
PGDATA := $(STATE)/pgdata
MLFLOW_PORT ?= 5000
PG_PORT ?= 5433
BENCH ?= all
AUTH ?=  # make mlflow-server AUTH=1: basic auth, admin from MLFLOW_TRACKING_USERNAME/PASSWORD
TLS ?=  # make mlflow-server TLS=1: HTTPS with a self-signed pair for 127.0.0.1 in .raymlops/tls/
DEFAULT_PERMISSION ?=  # make mlflow-server AUTH=1 DEFAULT_PERMISSION=NO_PERMISSIONS: least privilege
SERVER_FLAGS = $(if $(strip $(AUTH)),--auth) $(if $(strip $(TLS)),--tls-self-signed) $(if $(strip $(DEFAULT_PERMISSION)),--default-permission $(strip $(DEFAULT_PERMISSION)))
PYTEST_ARGS ?= --durations=10

.PHONY: help install airflow-install airflow-standalone airflow-dags-test quickstart tune train serve predict notebook test test-fast test-slow test-cluster lint format bench mlflow-ui mlflow-server mlflow-server-stop mlflow-backup mlflow-restore monitoring monitoring-stop monitoring-ray-dashboards submit checkov-install infra-check docs docs-serve docs-reference docs-screenshots clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-20s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -e '.[dev]'
	@# pip byte-compiles what it installs on one core (about 60 s of this install); compileall uses every core. Its
	@# exit status is ignored, as pip ignores the same errors: files for newer Pythons (torch's py312 test helpers).
	$(PY) -m compileall -q -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
	touch $@

install: $(VENV)/.installed ## create .venv and install raymlops (editable) with dev extras

# Airflow has a venv of its own (its pins clash with raymlops': pipelines/constraints-*.txt, docs/guides/pipelines.md).
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_CONSTRAINTS := pipelines/constraints-airflow-3.1.8-py3.11.txt
AIRFLOW_HOME ?= $(CURDIR)/.airflow
AIRFLOW_PORT ?= 8080
DAG ?= daily_training
AIRFLOW_ENV = PATH=$(CURDIR)/$(AIRFLOW_VENV)/bin:$$PATH AIRFLOW_HOME=$(AIRFLOW_HOME) AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/pipelines/dags AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=$(AIRFLOW_PORT) RAYMLOPS_REPO=$(CURDIR) RAYMLOPS_PYTHON=$(CURDIR)/$(PY)

$(AIRFLOW_VENV)/.installed: pipelines/requirements-airflow.txt $(AIRFLOW_CONSTRAINTS)
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install -q --upgrade pip
	$(AIRFLOW_VENV)/bin/python -m pip install -q -r pipelines/requirements-airflow.txt -c $(AIRFLOW_CONSTRAINTS)
	touch $@

airflow-install: $(AIRFLOW_VENV)/.installed ## create .venv-airflow: Airflow 3.1.8 for pipelines/ (not a raymlops dependency)

airflow-standalone: install airflow-install ## Airflow (scheduler, API server, UI) on 127.0.0.1:$(AIRFLOW_PORT) running pipelines/dags; state in .airflow/
	$(AIRFLOW_ENV) $(AIRFLOW_VENV)/bin/airflow standalone

airflow-dags-test: install airflow-install ## run one DAG now, in-process: make airflow-dags-test DAG=daily_training CONF='{"overrides": ["train.epochs=1"]}'
	$(AIRFLOW_ENV) $(AIRFLOW_VENV)/bin/airflow db migrate >/dev/null
	$(AIRFLOW_ENV) $(AIRFLOW_VENV)/bin/airflow dags test $(DAG) $(if $(CONF),-c '$(CONF)')

quickstart: install ## run the offline quickstart search (synthetic data, 8 DDP trials, ASHA)
	$(PY) -m raymlops.tune +experiment=quickstart

tune: install ## run a search: make tune EXP=cifar10_optuna ARGS="tune.num_samples=10"
	$(PY) -m raymlops.tune +experiment=$(EXP) $(ARGS)

train: install ## run one training job: make train EXP=cifar10_fast ARGS="data.name=imagefolder data.root=../shared/data/cifar10"
	$(PY) -m raymlops.train +experiment=$(EXP) $(ARGS)

serve: install ## Ray Serve on 127.0.0.1:8000 for an experiment's @champion: make serve EXP=quickstart ARGS="serve.challenger_traffic=0.1"
	$(PY) -m raymlops.serve +experiment=$(EXP) $(ARGS)

MODEL ?= models:/raymlops-$(EXP)@champion
DATA ?= ../shared/data/cifar10/test
OUT ?= predictions.csv
predict: install ## batch inference with Ray Data: make predict MODEL=models:/NAME@champion DATA=FOLDER OUT=preds.csv
	$(PY) -m raymlops.predict model_uri=$(MODEL) data.root=$(DATA) output=$(OUT) $(ARGS)

notebook: install ## JupyterLab on 127.0.0.1:8888 over notebooks/ (the notebook extra), this venv as the kernel
	$(PY) -m pip install -q -e '.[dev,notebook]'
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --port 8888 --no-browser --notebook-dir notebooks

test: install ## every tier, always: always-on and slow tests in one parallel pass, then the serial ones; ends with each pass's wall and CPU time
	$(PY) tests/run_tiers.py $(PYTEST_ARGS)

test-fast: install ## unit tests only (no Ray cluster)
	$(PY) -m pytest -q -m "not ray and not slow" $(PYTEST_ARGS)

test-slow: install ## only the slow tests
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

test-cluster: install ## cluster YAMLs, autoscaling, multi-node and tracking-server tests
	$(PY) -m pytest -q -m cluster $(PYTEST_ARGS)

lint: install ## ruff (lint + format check), mypy, and the layers contract (import-linter, pyproject.toml)
	$(VENV)/bin/ruff check raymlops tests
	$(VENV)/bin/ruff format --check raymlops tests
	$(VENV)/bin/mypy raymlops
	$(VENV)/bin/lint-imports

format: install ## ruff format and autofix
	$(VENV)/bin/ruff format raymlops tests
	$(VENV)/bin/ruff check --fix raymlops tests

bench: install ## all CPU benchmarks (make bench BENCH=overhead for one)
	$(PY) -m raymlops.bench $(BENCH)

mlflow-ui: install ## browse the embedded store at http://127.0.0.1:5001
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(STATE)/mlflow.db --host 127.0.0.1 --port 5001

mlflow-server: install ## PostgreSQL + mlflow server on 127.0.0.1:$(MLFLOW_PORT), data under .raymlops/ (AUTH=1 TLS=1 DEFAULT_PERMISSION=NO_PERMISSIONS)
	$(PY) -m raymlops.server start --state $(STATE) --port $(MLFLOW_PORT) --pg-port $(PG_PORT) $(SERVER_FLAGS)

mlflow-server-stop: install ## stop the mlflow server and PostgreSQL (data is kept)
	$(PY) -m raymlops.server stop --state $(STATE)

mlflow-backup: install ## back up the tracking server (pg_dump of tracking + auth, artifacts): make mlflow-backup TO=backups/2026-12-01
	$(PY) -m raymlops.server backup --state $(STATE) --to $(TO)

mlflow-restore: install ## restore a backup into a fresh state folder: make mlflow-restore FROM=backups/2026-12-01 INTO=.raymlops-new
	$(PY) -m raymlops.server restore --from $(FROM) --state $(INTO)

PROM_PORT ?= 9090
RAY_TEMP ?= /tmp/ray
monitoring: install ## Prometheus on 127.0.0.1:$(PROM_PORT) over Ray's metrics + monitoring/alerts.yml, state in .raymlops/prometheus (then start Ray with RAY_PROMETHEUS_HOST=http://127.0.0.1:$(PROM_PORT))
	$(PY) -m raymlops.monitoring start --state $(STATE) --port $(PROM_PORT) --sd-file $(RAY_TEMP)/prom_metrics_service_discovery.json

monitoring-stop: install ## stop the Prometheus of make monitoring (its data is kept)
	$(PY) -m raymlops.monitoring stop --state $(STATE)

RAY_DASHBOARDS := default serve serve_deployment train data
monitoring-ray-dashboards: ## copy the Grafana dashboards the running Ray generated into monitoring/grafana/ray-dashboards/ (not committed)
	@src=$(RAY_TEMP)/session_latest/metrics/grafana/dashboards; test -d $$src || { echo "no $$src: start Ray (with its dashboard) first"; exit 1; }; \
	mkdir -p monitoring/grafana/ray-dashboards && for d in $(RAY_DASHBOARDS); do cp $$src/$${d}_grafana_dashboard.json monitoring/grafana/ray-dashboards/; done; \
	echo "copied $(RAY_DASHBOARDS) from $$src"

# `ray job submit` signs its requests only with RAY_AUTH_MODE=token: set it when a token is where Ray looks.
RAY_TOKEN_MODE = $${RAY_AUTH_MODE:-$$({ [ -n "$$RAY_AUTH_TOKEN$$RAY_AUTH_TOKEN_PATH" ] || [ -s ~/.ray/auth_token ]; } && echo token || echo disabled)}
submit: install ## submit a search to the running Ray cluster (its token from RAY_AUTH_TOKEN[_PATH] or ~/.ray/auth_token): make submit EXP=smoke [RAY_ADDRESS=http://127.0.0.1:8265]
	RAY_ADDRESS=$${RAY_ADDRESS:-http://127.0.0.1:8265} RAY_AUTH_MODE=$(RAY_TOKEN_MODE) $(VENV)/bin/ray job submit --working-dir . -- python -m raymlops.tune +experiment=$(EXP) $(ARGS)

# checkov has a venv of its own (its pins are not raymlops'): infra/requirements-checkov.txt.
CHECKOV_VENV ?= .venv-checkov
TERRAFORM ?= terraform
KUBECTL ?= kubectl

$(CHECKOV_VENV)/.installed: infra/requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install -q -r infra/requirements-checkov.txt
	touch $@

checkov-install: $(CHECKOV_VENV)/.installed ## create .venv-checkov: checkov for infra-check and tests/test_infra.py (not a raymlops dependency)

infra-check: checkov-install ## offline checks of infra/terraform and cluster/k8s: terraform fmt, checkov (Terraform, rendered overlays, secrets)
	$(TERRAFORM) fmt -check -recursive -diff infra/terraform
	$(CHECKOV_VENV)/bin/checkov -d infra/terraform/aws --framework terraform --skip-download --compact --quiet
	@rendered=$$(mktemp -d) && trap 'rm -rf "$$rendered"' EXIT && \
	for overlay in dev prod; do $(KUBECTL) kustomize cluster/k8s/overlays/$$overlay > "$$rendered/$$overlay.yaml" || exit 1; done && \
	$(CHECKOV_VENV)/bin/checkov -d "$$rendered" --framework kubernetes --skip-download --compact --quiet
	$(CHECKOV_VENV)/bin/checkov -d infra -d cluster --framework secrets --skip-download --compact --quiet

DOCS_PORT ?= 8001
$(VENV)/.docs-installed: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install -q -e '.[docs]'
	touch $@

docs: $(VENV)/.docs-installed ## build the documentation site into site/ (mkdocs build --strict: a broken link or page fails)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

docs-serve: $(VENV)/.docs-installed ## serve the documentation site on http://127.0.0.1:8001 (DOCS_PORT), rebuilt on each edit
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)

docs-reference: install ## regenerate docs/config-reference.md and docs/reference/ from the schema, the parsers and core/names.py
	$(PY) -m raymlops.docs_reference --write

docs-screenshots: install ## refresh docs/img/*.png from the real-browser test (a Ray search + Chromium, about 1.5 min)
	RAYMLOPS_SCREENSHOTS=docs/img RAY_AUTH_MODE=disabled $(PY) -m pytest -q -p no:cacheprovider tests/test_browser.py

clean: ## remove Ray results, spooled points, caches and the built docs site (keeps .venv and the MLflow store .raymlops/mlflow.db)
	rm -rf $(STATE)/ray_results $(STATE)/spool $(STATE)/cache .pytest_cache .mypy_cache .ruff_cache site
