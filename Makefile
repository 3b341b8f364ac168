# Two commands set everything up on a fresh machine:
#   make demo   -- runs the main job on the built-in default corpus
#   make test   -- runs the test suite
# Both create .venv/ (if missing) and install the package into it, editable, with the dev extra.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check asr tests bench
	$(BIN)/python -m pytest -q tests

demo: $(STAMP)
	$(BIN)/asr-run recipe=synth

lint: $(STAMP)
	$(BIN)/ruff check asr tests bench
