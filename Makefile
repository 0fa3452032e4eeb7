# ALBSNN Lab. Quick start: `make demo`, `make test`. Both create .venv and install the project.
# CUDA users: install the torch build for your GPU into .venv first (or set PYTHON to an env that
# has it); the install step keeps an existing torch and only adds the CPU wheel when none is present.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed-stamp
export RAY_AUTH_MODE ?= disabled

.PHONY: install demo test test-fast lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[data,sweep,report,dev]'
	# tonic's own dependency list pulls librosa/numba (~370 MB) that the readers never use.
	$(PY) -m pip install -q --no-deps tonic==1.7.0
	touch $@

# A real sweep on the embedded digits data (offline, CPU): Ray Tune + Optuna + MLflow, then the report.
demo: $(STAMP)
	$(VENV)/bin/albsnn sweep pipelines/demo.yaml

# Everything (CI). `make test-fast` leaves out the slow end-to-end tests (@pytest.mark.slow: real
# sweeps, killed drivers, the two-node cluster, the MLflow server outage, headless chromium).
test: $(STAMP)
	$(PY) -m ruff check albsnn tests benchmarks
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m ruff check albsnn tests benchmarks
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check albsnn tests benchmarks
	$(PY) -m ruff format --check albsnn tests benchmarks

bench: $(STAMP)
	$(PY) -m pip install -q --no-deps spikingjelly==2.0.0 loguru
	$(PY) benchmarks/train_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
