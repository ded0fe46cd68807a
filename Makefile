# hessreg — two commands:
#   make book   set up, execute every chapter (papermill, smoke scale), render the HTML book into _build/html
#   make test   set up, unit tests + nbval on every chapter (one pytest run), book build with warnings as errors
# Both reuse what is set up: the virtual environment is rebuilt only when pyproject.toml or constraints.txt change.

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXEC   := _build/executed
export HESSREG_STORE ?= $(CURDIR)/_build/records
export PYTHONUNBUFFERED := 1

.PHONY: setup data kernel test book chapters clean

setup: $(STAMP) data kernel

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[book,test]' 2>&1 | { grep -v "is ignored" || true; }
	$(BIN)/python -c "import torch, torchvision, hessreg, jupyter_book, nbval, papermill"
	touch $@

# Fashion-MNIST: $HESSREG_DATA, Debian's package (installed here when missing and we are root), else torchvision.
data: $(STAMP)
	@if $(BIN)/python -c "from hessreg.data import find_fashion_mnist as f; f(download=False)" 2>/dev/null; then \
	  echo "Fashion-MNIST: found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Fashion-MNIST: installing Debian's dataset-fashion-mnist"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else \
	  $(BIN)/python -c "from hessreg.data import find_fashion_mnist as f; print('Fashion-MNIST:', f())"; \
	fi

kernel: $(VENV)/share/jupyter/kernels/hessreg/kernel.json
$(VENV)/share/jupyter/kernels/hessreg/kernel.json: $(STAMP)
	$(BIN)/python -m ipykernel install --sys-prefix --name hessreg --display-name "hessreg (.venv)" >/dev/null

# Every chapter executed once (papermill, smoke scale unless SCALE=full), outputs in $(EXEC).
chapters: setup
	$(BIN)/python experiments/run.py --scale $(or $(SCALE),smoke) --out $(EXEC)

book: chapters
	$(BIN)/python experiments/build_book.py --executed $(EXEC)

# One pytest run: unit tests and nbval on every chapter (nbval's executed notebooks are kept in $(EXEC) by
# conftest.py, so the book build below reuses them: no chapter runs twice).
test: setup
	rm -rf $(EXEC) _build/records _build/figures _build/verdicts
	$(BIN)/python -m pytest tests book --nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
	  --executed-dir=$(EXEC) -ra
	$(BIN)/python experiments/build_book.py --executed $(EXEC) --strict

clean:
	rm -rf _build
