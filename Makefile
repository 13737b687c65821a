# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.negminer-installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-fast lint types bench bench-speed bench-fn bench-train clean docker-test docker-build docker-build-gpu

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[cpu,dev,peft,postgres,ray,tensorboard]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/negminer demo --output runs/demo

# lint (ruff check, ruff format --check), types (mypy on negminer/), then every test on both cores (pytest-xdist;
# the tests of jobs with leases run in one worker, in order: pytest.mark.xdist_group("jobs"))
test: lint types
	$(PY) -m pytest -q -n 2 --dist loadgroup

# under a minute: no process-level or training tests (they are marked slow)
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check negminer tests benchmarks
	$(VENV)/bin/ruff format --check negminer tests benchmarks

types: $(STAMP)
	$(VENV)/bin/mypy

bench: bench-fn bench-speed bench-train

bench-fn: $(STAMP)
	$(PY) benchmarks/false_negatives.py

bench-speed: $(STAMP)
	$(PY) benchmarks/mining_speed.py

bench-train: $(STAMP)
	$(PY) benchmarks/train_speed.py
	$(PY) benchmarks/train_quality.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info

# Build the CPU image with buildah, run it and use it over HTTP; lint the Dockerfile (docker/test.sh says how).
docker-test: $(STAMP)
	PYTHON=$(PY) bash docker/test.sh

# With a Docker engine and internet (docs/deployment.md).
docker-build:
	docker build -f docker/Dockerfile -t negminer:cpu .

docker-build-gpu:
	docker build -f docker/Dockerfile -t negminer:gpu --build-arg VARIANT=gpu \
		--build-arg BASE_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04 .
