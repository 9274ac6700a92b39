# `make demo` and `make test` work on a fresh Debian machine with Python 3.11 and no GPU:
# they create .venv, install torch's CPU build first (so nothing pulls the CUDA build),
# then this package with its dev extra. `make test` then reruns the model-format tests against
# the lowest diffusers and transformers pyproject.toml allows.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test data clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/migm-shortcut demo --out-dir outputs/demo

# The lowest versions pyproject.toml allows, laid over the venv (torch stays the local CPU build):
# the model-format tests run again against them, so the stated floors are tested ones.
MIN_DEPS := diffusers==0.33.0 transformers==4.46.2 huggingface_hub==0.27.1 tokenizers==0.20.3 accelerate==1.0.0
MIN_DIR := $(VENV)/min-deps
MIN_STAMP := $(MIN_DIR)/.installed
MIN_TESTS := tests/test_lower_bounds.py tests/test_adapters.py tests/test_amused_route.py tests/test_dimoo_route.py tests/test_maskgit.py

$(MIN_STAMP): $(STAMP) Makefile
	rm -rf $(MIN_DIR)
	$(BIN)/pip install --quiet --no-deps --target $(MIN_DIR) $(MIN_DEPS)
	touch $@

test: $(STAMP) $(MIN_STAMP)
	$(BIN)/pytest -q
	MIGM_LOWER_BOUNDS=1 PYTHONPATH=$(MIN_DIR) $(BIN)/pytest -q -p no:cacheprovider -k "not cache_dit" $(MIN_TESTS)

# Fashion-MNIST (only needed to retrain or evaluate): Debian's package, as root.
data:
	@test -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz || \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)

clean:
	rm -rf $(VENV) outputs
