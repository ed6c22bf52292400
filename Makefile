# pkgdl: `make run` serves the demo on 127.0.0.1:8080, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pkgdl demo
	$(BIN)/gunicorn -c gunicorn.conf.py

demo: $(STAMP)
	$(BIN)/pkgdl demo

test: $(STAMP)
	$(BIN)/ruff check app storage_backends tests bench
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check app storage_backends tests bench

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
