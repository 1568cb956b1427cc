# clinops — the single entry point. `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3.11
VENV        ?= .venv
BIN         := $(VENV)/bin
export CLINOPS_HOME ?= $(CURDIR)/.clinops
WORKLOAD    ?= heart-disease
PROFILE     ?= quick
PYTEST_ARGS ?=
# the suite runs on this many pytest-xdist workers, a test file to a worker: much of it waits on servers
TEST_WORKERS ?= 2
PYTEST      := -n $(TEST_WORKERS) --dist loadfile --durations=25

REQS  := requirements/main.txt requirements/dev.txt requirements/constraints.txt setup.cfg pyproject.toml
STAMP := $(VENV)/.stamp-$(shell cat $(REQS) 2>/dev/null | sha256sum | cut -c1-16)
# the drift sidecar's own environment (alibi-detect 0.11.4 needs numpy<1.25 and pydantic 1)
DRIFT_VENV  ?= .venv-drift
DRIFT_STAMP := $(DRIFT_VENV)/.stamp-$(shell cat requirements/drift.txt 2>/dev/null | sha256sum | cut -c1-16)
export CLINOPS_DRIFT_PYTHON ?= $(CURDIR)/$(DRIFT_VENV)/bin/python
# scanners kept out of the main resolve (checkov); promtool comes from the Debian package prometheus
TOOLS_VENV  ?= .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.stamp-$(shell cat requirements/tools.txt 2>/dev/null | sha256sum | cut -c1-16)

.PHONY: help venv run test test-all test-fast pipeline compile images serve lint bench bench-train bench-serve bench-drift bench-overload bench-soak bench-batch score eval-drift eval-gradcam monitor manifests tools lock clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

VENV_GB := 10  # a new environment: PyTorch with its CUDA libraries is most of it, plus pip's unpacking

$(STAMP): $(REQS)
	@echo ">> setting up $(VENV) (first time: a few minutes)"
	@test -x $(BIN)/python || { free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	  if [ "$$free" -lt $(VENV_GB) ]; then \
	    echo "make: $$free GB free on this disk; a new $(VENV) needs about $(VENV_GB) GB" >&2; exit 1; fi; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@rm -f $(VENV)/.stamp-*
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements/constraints.txt -r requirements/main.txt -r requirements/dev.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	@touch $@

$(DRIFT_STAMP): requirements/drift.txt
	@echo ">> setting up $(DRIFT_VENV) for the drift sidecar"
	@test -x $(DRIFT_VENV)/bin/python || $(PYTHON) -m venv $(DRIFT_VENV)
	@rm -f $(DRIFT_VENV)/.stamp-*
	$(DRIFT_VENV)/bin/python -m pip install -q --upgrade pip
	$(DRIFT_VENV)/bin/pip install -q -r requirements/drift.txt
	@touch $@

$(TOOLS_STAMP): requirements/tools.txt
	@echo ">> setting up $(TOOLS_VENV) for checkov"
	@test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	@rm -f $(TOOLS_VENV)/.stamp-*
	$(TOOLS_VENV)/bin/pip install -q -r requirements/tools.txt
	@touch $@

tools: $(TOOLS_STAMP)  ## manifest scanners: checkov in .venv-tools, promtool (apt-get as root)
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q --no-install-recommends prometheus; \
	  else echo "make: promtool is missing; install it with:  sudo apt-get install -y prometheus" >&2; exit 1; fi; }

venv: $(STAMP) $(DRIFT_STAMP)  ## create or refresh both virtual environments (idempotent)

run:  ## the main job on embedded defaults: pipelines, then the serving demo
	@$(MAKE) --no-print-directory -j2 --output-sync=line $(STAMP) $(DRIFT_STAMP)
	$(BIN)/clinops run

# the three environments are independent: first-time set-up builds them side by side
SETUP := $(STAMP) $(DRIFT_STAMP) $(TOOLS_STAMP)

test:  ## set up and run the test suite (what CI runs); the benchmarks' own smoke runs are make bench's
	@$(MAKE) --no-print-directory -j3 --output-sync=line $(SETUP) tools
	$(BIN)/python -m pytest -m "not bench" $(PYTEST) $(PYTEST_ARGS)

test-all:  ## make test and the benchmarks' smoke runs (marked bench)
	@$(MAKE) --no-print-directory -j3 --output-sync=line $(SETUP) tools
	$(BIN)/python -m pytest $(PYTEST) $(PYTEST_ARGS)

test-fast: $(STAMP)  ## unit tests only
	$(BIN)/python -m pytest -m "not integration and not pipeline and not slow" $(PYTEST_ARGS)

pipeline: $(STAMP)  ## one pipeline locally: make pipeline WORKLOAD=heart-disease PROFILE=quick|full
	$(BIN)/clinops pipeline $(WORKLOAD) --profile $(PROFILE)

HOURS ?= 24
monitor: $(STAMP)  ## drift report of a workload's logged traffic: make monitor WORKLOAD= HOURS=24 [RETRAIN=1] [LOG_DIR=]
	$(BIN)/clinops monitor $(WORKLOAD) --hours $(HOURS) $(if $(RETRAIN),--retrain) $(if $(LOG_DIR),--log-dir $(LOG_DIR))

# where images are pushed and pulled: compiled pipelines and `make images` use the same reference
IMAGE_REGISTRY ?= docker.io/clinops
IMAGE_TAG      ?= $(shell sed -n 's/^version *= *//p' setup.cfg)
# name=dockerfile:target of every image
IMAGES := clinops=Dockerfile:clinops clinops-train-gpu=Dockerfile:train-gpu \
          sklearn-predictor=inference/Dockerfile:sklearn-predictor torch-predictor=inference/Dockerfile:torch-predictor \
          transformer=inference/Dockerfile:transformer drift=inference/Dockerfile:drift

compile: $(STAMP)  ## write pipelines/compiled/<workload>.yaml for every pipeline: make compile [IMAGE_REGISTRY= IMAGE_TAG=]
	$(BIN)/python -m pipelines.compile --all --image-registry $(IMAGE_REGISTRY) --image-tag $(IMAGE_TAG)

images:  ## build every image (needs a Docker engine): make images [IMAGE_REGISTRY= IMAGE_TAG=]
	@docker info >/dev/null 2>&1 || { echo "make images: no Docker engine here (\`docker info\` fails): build the images where one runs" >&2; exit 1; }
	@set -e; for image in $(IMAGES); do name=$${image%%=*}; rest=$${image#*=}; \
	  echo ">> $(IMAGE_REGISTRY)/$$name:$(IMAGE_TAG)"; \
	  docker build -f $${rest%%:*} --target $${rest#*:} -t $(IMAGE_REGISTRY)/$$name:$(IMAGE_TAG) \
	    --build-arg IMAGE_REGISTRY=$(IMAGE_REGISTRY) --build-arg IMAGE_TAG=$(IMAGE_TAG) .; done

serve: $(STAMP) $(DRIFT_STAMP)  ## start predictors + transformers on localhost for every exported bundle
	$(BIN)/clinops serve

lint: $(STAMP)  ## ruff over the code, hadolint over the Dockerfiles
	$(BIN)/ruff check bundle components pipelines inference tests
	$(BIN)/hadolint Dockerfile inference/Dockerfile

manifests: $(STAMP) tools  ## render and validate every kustomize entry point, then policy, checkov and promtool
	$(BIN)/clinops manifests
	$(BIN)/python -m pytest -q tests/manifests

bench: bench-train bench-serve bench-drift bench-overload bench-soak bench-batch  ## all benchmarks (not tests)

bench-train: $(STAMP)  ## training throughput: plain PyTorch loop vs Ray Train (its smoke run first)
	$(BIN)/python -m pytest -q -m bench tests/unit/pneumonia/test_bench_smoke.py
	$(BIN)/python tests/bench/train_throughput.py --plan make

bench-serve: $(STAMP) $(DRIFT_STAMP)  ## serving throughput and latency vs MLServer and stock KServe
	$(BIN)/python tests/bench/serve_throughput.py

eval-drift: $(STAMP) $(DRIFT_STAMP)  ## drift detection rates on real shift (UCI sites, prevalence; phantom X-rays) vs a naive test
	$(BIN)/python tests/bench/drift_detection.py

eval-gradcam: $(STAMP)  ## where the served Grad-CAM peaks on phantom X-rays with known opacities (needs a pneumonia champion)
	$(BIN)/python tests/bench/gradcam_localisation.py

bench-drift: $(STAMP) $(DRIFT_STAMP)  ## drift sidecar: events/s on one core, p99 the logger adds, nothing lost at 10x load
	$(BIN)/python tests/bench/drift_sidecar.py

bench-overload: $(STAMP) $(DRIFT_STAMP)  ## 10x capacity offered open-loop per workload: accepted p99, 503 share, errors, recovery, RSS
	$(BIN)/python tests/bench/overload.py

bench-soak: $(STAMP) $(DRIFT_STAMP)  ## half capacity for BENCH_SOAK_SECONDS (600): RSS, descriptors, errors, latency per interval
	$(BIN)/python tests/bench/soak.py

bench-batch: $(STAMP)  ## batch scoring rows/s and images/s: Ray Data actors vs a plain single-process loop
	$(BIN)/python tests/bench/batch_scoring.py

score: $(STAMP)  ## batch-score with the champion: make score WORKLOAD=heart-disease [INPUT=csv|s3://...|folder] [OUTPUT=dir]
	$(BIN)/clinops score $(WORKLOAD) $(if $(INPUT),--input $(INPUT)) $(if $(OUTPUT),--output $(OUTPUT))

lock:  ## re-resolve requirements into requirements/constraints.txt
	rm -rf /tmp/clinops-lock && $(PYTHON) -m venv /tmp/clinops-lock
	/tmp/clinops-lock/bin/pip install -q -r requirements/main.txt -r requirements/dev.txt
	(echo '# Exact versions of the whole main environment, resolved here; regenerate with `make lock`.'; \
	 /tmp/clinops-lock/bin/pip freeze | grep -v '^-e') > requirements/constraints.txt

clean:  ## remove local state (models, runs, MLflow database)
	rm -rf $(CLINOPS_HOME)
