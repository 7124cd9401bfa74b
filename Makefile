# The two commands of the README's quick start, from a fresh clone:
#
#   make run    stylize the bundled example (cat + Starry Night) into stylized.png
#   make test   run the whole test suite (what .ci/run runs)
#
# and `make serve`: the web page (scripts/serve.py) on http://127.0.0.1:7860 or the next free port.
# `make check-run` (.ci/check-run, which CI runs after `make test`): `make run` twice on the
# plain install (no extras, its own .venv-plain), the second loading every program from the
# compilation cache, with no warning on stderr.
#
# Each sets up what it needs, once: a virtual environment in .venv, nst_jax installed in
# it (editable, with the extras that command needs), and the VGG19 weights in weights/.
# Run again, they only redo what is missing or out of date. ARGS passes flags to
# stylize.py (make run ARGS="--size 384"), PYTEST_ARGS to pytest (make test PYTEST_ARGS=-x).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WEIGHTS := weights/vgg19.h5

# The browser test drives this Chromium (Debian's package; apt-get installs it when missing).
CHROMIUM ?= /usr/bin/chromium

.PHONY: run serve test check-run docs setup clean

run: $(VENV)/.installed-run $(WEIGHTS)
	$(BIN)/python scripts/stylize.py $(ARGS)

serve: $(VENV)/.installed-web $(WEIGHTS)
	$(BIN)/python scripts/serve.py $(ARGS)

# NST_JAX_REQUIRE_WEIGHTS / _BROWSER: the tests that need the real weights or Chromium fail,
# rather than skip, without them.
test: $(VENV)/.installed-test $(WEIGHTS) $(CHROMIUM)
	NST_JAX_REQUIRE_WEIGHTS=1 NST_JAX_REQUIRE_BROWSER=1 NST_JAX_CHROMIUM=$(CHROMIUM) \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

check-run:
	bash .ci/check-run

# The documentation site (mkdocs.yml, docs/) into site/, in strict mode: a broken link, a
# missing anchor or a page left out of the nav fails it (tests/test_docs.py builds it too).
# NO_MKDOCS_2_WARNING: mkdocs-material's notice of its end of life (see docs/development.md).
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

setup: $(VENV)/.installed-test $(WEIGHTS) $(CHROMIUM)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The library alone runs the example; the page needs gradio (the web extra); the tests also
# need pytest and Playwright, PyTorch (the benchmark's baseline and the parity tests),
# matplotlib (loss curves), tifffile (TIFF output), gradio and mkdocs-material (the site's
# strict build, tests/test_docs.py); `make docs` needs only the docs extra.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-web: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[web]'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-docs: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[docs]'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[test,bench,plots,tiff,web,docs,video]'
	touch $@ $(VENV)/.installed-run $(VENV)/.installed-web $(VENV)/.installed-docs

# Debian's Chromium for the browser test (as root, or through sudo). Elsewhere install a
# Chromium yourself and pass its path: make test CHROMIUM=/path/to/chromium.
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "error: $(CHROMIUM) is missing and there is no apt-get: install Chromium and pass CHROMIUM=/path/to/chromium" >&2; exit 1; }
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq
	$(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# Either install will do to fetch the weights (fetch_weights.py keeps an existing file).
$(WEIGHTS): | $(BIN)/python
	test -f $(VENV)/.installed-run || $(MAKE) $(VENV)/.installed-run
	$(BIN)/python scripts/fetch_weights.py

clean:
	rm -rf $(VENV) .venv-plain build *.egg-info
