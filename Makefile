# Two commands: `make test` and `make demo`. Both set up a venv on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= /usr/share/datasets/fashion-mnist
# CIFAR-10 on our machines (no internet); any accepted layout or archive works, see torch_qinit/data/cifar10/__init__.py.
CIFAR10_ARCHIVE ?= ../shared/data/cifar10-jpg.tar.gz

.PHONY: setup data cifar10 lint test demo mutate clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python setup.cfg setup.py
	# torch pinned first so pip takes the local CPU build instead of a CUDA one.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

data:
	@if [ ! -f $(DATA_DIR)/train-images-idx3-ubyte.gz ]; then \
	  if [ "$$(id -u)" = "0" ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	  else echo "Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist'"; fi; fi

# Links the archive into ~/.cache/torch_qinit/cifar10 (or $$TORCH_QINIT_CACHE_DIR/cifar10) and decodes both
# splits there once (~10 s), so load_dataset("cifar10", ...) finds it without arguments and loads in about 1 s.
cifar10: setup
	@if [ -e "$(CIFAR10_ARCHIVE)" ]; then \
	  $(BIN)/python -c 'import sys; from torch_qinit.data import prepare_cifar10; print("CIFAR-10 ready:", prepare_cifar10(sys.argv[1]))' "$(CIFAR10_ARCHIVE)"; \
	else echo "CIFAR-10 not found at $(CIFAR10_ARCHIVE): run 'make cifar10 CIFAR10_ARCHIVE=/path/to/cifar-10-batches-py' (or a .tar.gz, or an image folder), or set TORCH_QINIT_CIFAR10_DIR"; exit 1; fi

# pyflakes, pycodestyle and import order (ruff.toml); part of `make test`.
lint: setup
	$(BIN)/ruff check .

test: setup data lint
	$(BIN)/python -m pytest

demo: setup data
	$(BIN)/python -m torch_qinit.cli.main demo

# Mutation testing (mutmut 3; what to mutate and which tests run: [mutmut] in setup.cfg): initialize.py, ghn/,
# quant/ and hub/. Slow (each mutant reruns the tests that call the mutated function), so not part of `make test`.
# MUTANTS narrows it to mutant names, e.g. make mutate MUTANTS='torch_qinit.initialize.*'; survivors:
# $(BIN)/mutmut show NAME. Results stay in mutants/ (git-ignored), and a rerun resumes where it stopped.
MUTANTS ?=
MUTATE_JOBS ?= 1
mutate: setup
	$(BIN)/pip install -q "mutmut>=3.8,<4"
	OMP_NUM_THREADS=1 nice -n 19 $(BIN)/mutmut run --max-children $(MUTATE_JOBS) $(foreach m,$(MUTANTS),'$(m)')
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) build *.egg-info mutants
