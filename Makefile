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

# Benchmarks (not part of `make test`): about 10 minutes on 2 cores, one line per benchmark as it ends;
# BENCH_FULL=1 adds the full sweep (the model families, scaling to the whole text, two processes).
# reports/benchmarks.md gives each ratio with its target and the figures, and what moved beyond its
# noise since the previous `make bench` (its JSON is kept as reports/benchmark-previous.json).
# The report is written even when a benchmark fails; the target still fails then.
BENCH_FULL ?=
bench: setup
	@mkdir -p reports
	@if [ -f reports/benchmark.json ]; then cp reports/benchmark.json reports/benchmark-previous.json; fi
	DPHI_BENCH_FULL=$(BENCH_FULL) $(PY) -m pytest benchmarks/ -v --benchmark-json reports/benchmark.json \
		--benchmark-columns=median,min,max,rounds --benchmark-sort=name $(PYTEST_ARGS); status=$$?; \
	$(PY) benchmarks/ratios.py reports/benchmark.json --previous reports/benchmark-previous.json \
		--markdown reports/benchmarks.md --command "make bench$(if $(BENCH_FULL), BENCH_FULL=$(BENCH_FULL))"; \
	exit $$status
