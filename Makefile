# Two commands (see README): `make claims DEVICE=mps` runs the claims suite, `make test` passes the tests.
# Both create .venv and install into it first; nothing else has to be typed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEVICE ?= auto
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: setup claims test bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e .
	touch $@

setup: $(VENV)/.installed

# The main job: every claim of the write-up on GPT-2 small (downloaded once with network).
claims: setup
	$(PY) -m pytest claims/ --device=$(DEVICE) --claims-report reports/claims.md $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The library's tests, then the claims suite end to end on the embedded model (offline: the
# WikiText-2 test text comes from ../shared/data or $DPHI_WIKITEXT2_TEST, else `datasets`), with a
# cache of its own so a stale user cache cannot hide a regression. pytest's exit 5 (nothing
# collected, e.g. under -k) is not a failure. Two xdist workers with one intra-op thread each fill
# the 2 cores; two threads each oversubscribe them (several times slower).
test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest tests/ -n 2 $(PYTEST_ARGS) || [ $$? -eq 5 ]
	DPHI_CACHE_DIR=$(CURDIR)/.cache/test $(PY) -m pytest claims/ --model tiny-wikitext \
		--device=cpu --claims-xfail --require-snapshots --claims-report reports/claims-tiny-wikitext.md $(PYTEST_ARGS) || [ $$? -eq 5 ]

# Benchmarks (not part of `make test`): a JSON report and a comparison table; see README.
bench: setup
	$(PY) -m pytest benchmarks/ --benchmark-json reports/benchmark.json --benchmark-columns=median,min,max,rounds \
		--benchmark-sort=name $(PYTEST_ARGS)
	$(PY) benchmarks/ratios.py reports/benchmark.json
