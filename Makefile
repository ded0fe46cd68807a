# hessreg — two commands:
#   make book   set up, execute every chapter (papermill, smoke scale), render the HTML book into _build/html
#   make test   set up, unit tests + nbval on every chapter (one pytest run), book build with warnings as errors,
#               then every page of the book opened offline in headless Chromium (tests_browser/test_pages.mjs)
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
# Offline reading: MathJax 3 and playwright-core from npm (tests_browser/package-lock.json; playwright-core
# downloads no browser), Debian's Chromium.
NPM_STAMP := tests_browser/node_modules/.installed
export CHROMIUM ?= /usr/bin/chromium
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: setup data kernel test book chapters clean mathjax chromium offline

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

# npm packages: MathJax (copied into the book by build_book.py) and playwright-core. Node and npm from Debian when
# missing and we are root.
mathjax: $(NPM_STAMP)
$(NPM_STAMP): tests_browser/package.json tests_browser/package-lock.json
	@if ! command -v npm >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "npm: installing Debian's nodejs and npm"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	fi
	npm ci --prefix tests_browser --no-audit --no-fund --loglevel=error
	touch $@

# Chromium for the offline test: $(CHROMIUM), else Debian's chromium (installed here when missing and we are root).
chromium:
	@if [ -x "$(CHROMIUM)" ]; then \
	  echo "Chromium: found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Chromium: installing Debian's chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium fonts-liberation >/dev/null; \
	else \
	  echo "Chromium: not found at $(CHROMIUM) (install Debian's chromium, or set CHROMIUM=/path/to/chromium)" >&2; \
	  exit 1; \
	fi

# Every page of _build/html served on 127.0.0.1 and opened in headless Chromium: fails on a request that leaves
# localhost or fails, an image that does not load, unrendered mathematics; screenshots in _build/screenshots.
offline: $(NPM_STAMP) chromium
	node tests_browser/test_pages.mjs

# The same test, also keeping full-page screenshots at 1280 px of the scoreboard and two chapters in
# results/screenshots/ (the book must be built: make book; commit the screenshots only when asked).
.PHONY: screenshots
screenshots: $(NPM_STAMP) chromium
	node tests_browser/test_pages.mjs --showcase results/screenshots

# Every chapter executed once (papermill, smoke scale unless SCALE=full), outputs in $(EXEC).
chapters: setup
	$(BIN)/python experiments/run.py --scale $(or $(SCALE),smoke) --out $(EXEC)

book: chapters mathjax
	$(BIN)/python experiments/build_book.py --executed $(EXEC)

# One pytest run: unit tests and nbval on every chapter (nbval's executed notebooks are kept in $(EXEC) by
# conftest.py, so the book build below reuses them: no chapter runs twice).
test: setup mathjax chromium
	rm -rf $(EXEC) _build/records _build/figures _build/verdicts _build/html _build/.doctrees _build/screenshots
	$(BIN)/python -m pytest tests book --nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
	  --executed-dir=$(EXEC) -ra
	$(BIN)/python experiments/build_book.py --executed $(EXEC) --strict
	node tests_browser/test_pages.mjs

clean:
	rm -rf _build
