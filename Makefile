# One-command entry points for a fresh clone: each target creates .venv and installs the project first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= seed
INSTALL ?= install  # `make bench-gpu INSTALL= PY=python3`: use an environment that already has everything

.PHONY: install test bench bench-gpu sdiff clean

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

# on a CUDA machine, ~6 minutes: the seed profile on the GPU, then every CUDA path of both sides (tests/test_gpu.py)
# -> reports/seed-<card>/ (the checks' log included)
bench-gpu: $(INSTALL)
	$(PY) -m pytest benchmarks/test_comparison.py --profile $(PROFILE) --bench-accelerators gpu

# the two sides side by side, one mirrored pair after another, then how many rows of each pair differ
sdiff:
	@for plain in plain_pytorch/*.py; do \
		name=$${plain#plain_pytorch/}; \
		if [ "$$name" != __init__.py ] && [ -f "lightning_impl/$$name" ]; then \
			echo "=== plain_pytorch/$$name | lightning_impl/$$name"; \
			sdiff -w 200 "$$plain" "lightning_impl/$$name" || true; \
		fi; \
	done
	@$(PYTHON) benchmarks/loc.py

clean:
	rm -rf runs reports/smoke .pytest_cache
