# Every target sets itself up from a clean clone: it creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_USERS ?= 0
ML100K_DIR ?= ../shared/datasets/ml-100k

.PHONY: help venv test test-all demo model evaluate bench lint format build events clean

help:
	@echo "make demo [DEMO_USERS=100]  replay MovieLens-100k through the whole pipeline locally"
	@echo "make test                   the test suite (moto only, no network)"
	@echo "make model                  rebuild the shipped model in layers/model from ML-100k"
	@echo "make evaluate               evaluate the shipped model artifact -> out/eval/metrics.json"
	@echo "make bench                  handler and model benchmarks (figures quoted in README)"
	@echo "make lint                   ruff, mypy, cfn-lint"
	@echo "make build                  sam build (python3.12 arm64 layers, no Docker)"

$(STAMP): requirements/runtime.txt requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/python -m demo --data $(ML100K_DIR) --users $(DEMO_USERS)

model: $(STAMP)
	$(BIN)/python -m training.build_model --data $(ML100K_DIR) --kind cooccurrence --out layers/model

evaluate: $(STAMP)
	$(BIN)/python -m training.evaluate --data $(ML100K_DIR) --artifact layers/model --out out/eval/metrics.json

bench: $(STAMP)
	$(BIN)/python -m bench.bench_handlers
	$(BIN)/python -m bench.bench_model

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared functions runner
	$(BIN)/cfn-lint template.yaml

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

events: $(STAMP)
	$(BIN)/python -m tests.support.make_events

# SAM CLI lives in its own virtualenv: its pins must not move the project's.
SAM_VENV := .venv-sam
$(SAM_VENV)/bin/sam:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli==1.170.0

build: $(SAM_VENV)/bin/sam
	PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" sam validate --lint --template template.yaml
	PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" sam build --template template.yaml
	du -sh .aws-sam/build/*

clean:
	rm -rf out .aws-sam .pytest_cache .mypy_cache .ruff_cache
