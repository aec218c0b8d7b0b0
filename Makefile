# One-command entry points for a fresh clone: each target creates .venv and installs the project first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= seed

.PHONY: install test bench bench-gpu clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# lint (seconds), unit tests, then the harness end to end on tiny data (this is what CI runs)
test: install
	$(PY) -m ruff check .
	$(PY) -m pytest
	$(PY) -m pytest benchmarks --profile smoke

# the main job: train both sides and write reports/$(PROFILE)/
bench: install
	$(PY) -m pytest benchmarks --profile $(PROFILE)

# on a CUDA machine: every CUDA path of both sides once, then the seed profile on the GPU -> reports/seed-<card>/
bench-gpu: install
	$(PY) -m pytest -m gpu tests/test_gpu.py
	$(PY) -m pytest benchmarks --profile $(PROFILE) --bench-accelerators gpu

clean:
	rm -rf runs reports/smoke .pytest_cache
