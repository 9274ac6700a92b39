# `make demo` and `make test` work on a fresh Debian machine with Python 3.11 and no GPU:
# they create .venv, install torch's CPU build first (so nothing pulls the CUDA build),
# then this package with its dev extra.
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

test: $(STAMP)
	$(BIN)/pytest -q

# Fashion-MNIST (only needed to retrain or evaluate): Debian's package, as root.
data:
	@test -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz || \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)

clean:
	rm -rf $(VENV) outputs
