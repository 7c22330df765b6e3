# Two commands (see README.md): `make claims DEVICE=mps` runs the claims suite, `make test` passes the tests.
# Both create .venv and install into it first; nothing else has to be typed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEVICE ?= auto
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

CONSTRAINTS := constraints.txt

.PHONY: setup claims test lint bench upgrade-check

# Installs the exact versions CI tests (constraints.txt); torch first, so that no package pulls a
# newer (CUDA) build of it.
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) "$(TORCH)"
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[test,bench]"
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
test: setup lint
	OMP_NUM_THREADS=1 $(PY) -m pytest tests/ -n 2 $(PYTEST_ARGS) || [ $$? -eq 5 ]
	DPHI_CACHE_DIR=$(CURDIR)/.cache/test $(PY) -m pytest claims/ --model tiny-wikitext \
		--device=cpu --claims-xfail --require-snapshots --claims-report reports/claims-tiny-wikitext.md $(PYTEST_ARGS) || [ $$? -eq 5 ]

# Lint, format and the import layers (pyproject.toml [tool.importlinter], docs/internals.md).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

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

# Not in CI: the newest releases of everything but torch (TORCH=torch for the newest torch too; on
# Linux without a GPU that is a multi-GB CUDA build) in a venv of their own, then the tests. For a
# deliberate upgrade: if it passes, review .venv-upgrade/freeze.txt and copy it to constraints.txt.
upgrade-check:
	rm -rf .venv-upgrade
	$(PYTHON) -m venv .venv-upgrade
	.venv-upgrade/bin/python -m pip install --quiet --upgrade pip
	.venv-upgrade/bin/python -m pip install --quiet "$(TORCH)"
	.venv-upgrade/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[test,bench]"
	.venv-upgrade/bin/python -m pip freeze --exclude-editable > .venv-upgrade/freeze.txt
	diff $(CONSTRAINTS) .venv-upgrade/freeze.txt || true
	OMP_NUM_THREADS=1 .venv-upgrade/bin/python -m pytest tests/ -n 2 $(PYTEST_ARGS) || [ $$? -eq 5 ]
	DPHI_CACHE_DIR=$(CURDIR)/.cache/upgrade-check .venv-upgrade/bin/python -m pytest claims/ --model tiny-wikitext \
		--device=cpu --claims-xfail --require-snapshots $(PYTEST_ARGS) || [ $$? -eq 5 ]
