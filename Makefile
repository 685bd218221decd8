# finsentry: every entry point a person needs. `make help` lists them.
#
# The first target that needs it creates .venv and installs the project into it;
# a stamp keyed on pyproject.toml makes later runs skip the install.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup test demo up down status lint bench chaos teacher clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

setup: $(STAMP) ## Install everything: venv, Python packages, Kafka/Flink jars (Maven), Prometheus + Alertmanager (apt)
	$(BIN)/finsentry stack install

test: setup ## Run the whole test suite against the real local stack
	$(BIN)/pytest $(PYTEST_ARGS)

demo: setup ## Run the whole pipeline end to end on the bundled model and show the alert
	$(BIN)/finsentry demo

up: setup ## Start Kafka, Prometheus and Alertmanager on loopback (idempotent)
	$(BIN)/finsentry stack up

down: ## Stop everything `make up` started
	$(BIN)/finsentry stack down

status: ## Show what is running and where
	$(BIN)/finsentry stack status

lint: setup ## Static checks (ruff)
	$(BIN)/ruff check pipeline models tests bench

bench: setup ## Run every benchmark in quick mode; results go to bench/results/
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script --quick || exit 1; done

chaos: setup ## Fault-injection suite on 10,000 articles (kills, broker restart); writes bench/results/chaos.json
	FINSENTRY_CHAOS_ARTICLES=10000 FINSENTRY_CHAOS_RESULT=bench/results/chaos.json \
		$(BIN)/pytest tests/chaos -s -p no:cacheprovider --timeout 3600 $(PYTEST_ARGS)

teacher: setup ## Train the all-mpnet-base-v2 teacher (about 45 min on 2 cores) and write its soft labels for distillation
	$(BIN)/pip install --quiet -e '.[teacher]'
	FINSENTRY_MODEL_REGISTRY_DIR=models/teacher-registry \
		$(BIN)/finsentry train --config models/configs/teacher_mpnet.yaml --no-promote
	$(BIN)/finsentry models teacher-labels --registry models/teacher-registry \
		--out models/data/teacher_soft_labels.npz

clean: down ## Stop the stack and remove the venv (caches outside the repo stay)
	rm -rf $(VENV)
