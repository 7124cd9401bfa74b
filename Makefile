# The two commands of the README's quick start, from a fresh clone:
#
#   make run    stylize the bundled example (cat + Starry Night) into stylized.png
#   make test   run the whole test suite (what .ci/run runs)
#
# Each sets up what it needs, once: a virtual environment in .venv, nst_jax installed in
# it (editable, with the extras that command needs), and the VGG19 weights in weights/.
# Run again, they only redo what is missing or out of date. ARGS passes flags to
# stylize.py (make run ARGS="--size 384"), PYTEST_ARGS to pytest (make test PYTEST_ARGS=-x).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WEIGHTS := weights/vgg19.h5

.PHONY: run test setup clean

run: $(VENV)/.installed-run $(WEIGHTS)
	$(BIN)/python scripts/stylize.py $(ARGS)

# NST_JAX_REQUIRE_WEIGHTS: tests that need the real weights fail, rather than skip, without them.
test: $(VENV)/.installed-test $(WEIGHTS)
	NST_JAX_REQUIRE_WEIGHTS=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

setup: $(VENV)/.installed-test $(WEIGHTS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The library alone runs the example; the tests also need pytest, PyTorch (the benchmark's
# baseline and the parity tests), matplotlib (loss curves) and tifffile (TIFF output).
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[test,bench,plots,tiff]'
	touch $@ $(VENV)/.installed-run

# Either install will do to fetch the weights (fetch_weights.py keeps an existing file).
$(WEIGHTS): | $(BIN)/python
	test -f $(VENV)/.installed-run || $(MAKE) $(VENV)/.installed-run
	$(BIN)/python scripts/fetch_weights.py

clean:
	rm -rf $(VENV) build *.egg-info
