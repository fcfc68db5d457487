# Quick start: `make demo` and `make test`. Both create or refresh .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo demo3 learning learning-terse test test-all lint bench clean

$(STAMP): pyproject.toml
	# The code sandbox uses bubblewrap; without it, it refuses untrusted code unless THINKRL_SANDBOX_ALLOW_UNISOLATED=1.
	command -v bwrap >/dev/null || (apt-get update -qq && apt-get install -y -qq bubblewrap) \
		|| echo "warning: bubblewrap missing: the code sandbox refuses to run (THINKRL_SANDBOX_ALLOW_UNISOLATED=1: rlimits only)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# GPU users: install your own torch into .venv first; we only add the CPU build when none is present.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	# Pin whatever torch is installed, so no dependency swaps it for another build.
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-pin.txt
	$(PY) -m pip install -q -e '.[dev]' -c $(VENV)/torch-pin.txt
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m thinkrl.cli demo

test: $(STAMP)
	$(PY) -m pytest

test-all: $(STAMP)
	$(PY) -m pytest -m "not gpu"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]' -c $(VENV)/torch-pin.txt
	$(PY) -m thinkrl.cli bench generate
	$(PY) -m thinkrl.cli bench rl-step --threads 1
	$(PY) -m thinkrl.cli bench math-verify
	$(PY) -m thinkrl.cli bench sandbox

demo3: $(STAMP)
	$(PY) -m thinkrl.cli demo --seeds 0,1,2

# RL vs continued SFT vs RFT at equal FLOPs, 3 seeds, settings chosen on validation (docs/results/learning.md),
# on countdown search traces. The previous run's protocol (short traces) is the config defaults:
# thinkrl learn --seeds 0,1,2. Separate run folders: stages are cached by folder, not by settings.
learning: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m thinkrl.cli learn --config recipes/learning/search.yaml --name learning_search --seeds 0,1,2

# The same protocol on arithmetic with terse traces (half answer-only; docs/results/learning_terse.md).
learning-terse: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m thinkrl.cli learn --config recipes/learning/terse.yaml --name learning_terse --seeds 0,1,2 --report learning_terse

clean:
	rm -rf $(VENV) runs build *.egg-info
