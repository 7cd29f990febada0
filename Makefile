# Two commands: `make test` and `make demo`. Both set up a venv on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= /usr/share/datasets/fashion-mnist

.PHONY: setup data test demo clean

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

test: setup data
	$(BIN)/python -m pytest

demo: setup data
	$(BIN)/python -m torch_qinit.cli.main demo

clean:
	rm -rf $(VENV) build *.egg-info
