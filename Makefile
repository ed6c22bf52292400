# pkgdl: `make run` serves the demo on 127.0.0.1:8080, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast lint demo clean stack bench bench-quick bench-scan soak fuzz audit compose-env

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,sftp,webdav,gcs,azure]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pkgdl demo
	$(BIN)/gunicorn -c gunicorn.conf.py

demo: $(STAMP)
	$(BIN)/pkgdl demo

test: $(STAMP)
	$(BIN)/ruff check app storage_backends tests bench deploy
	$(BIN)/pytest

# Unit tests only (no real server, no network): about 30 s, for the edit-test loop. `make test` runs everything.
test-fast: $(STAMP)
	$(BIN)/ruff check app storage_backends tests bench deploy
	$(BIN)/pytest -m "not integration"

lint: $(STAMP)
	$(BIN)/ruff check app storage_backends tests bench deploy

# The production topology as local processes: SeaweedFS S3, Redis, 2 gunicorn instances (x-accel), nginx on :8080.
stack: $(STAMP)
	$(BIN)/python -m deploy.stack

# The secrets docker-compose.yml reads: .env (random S3 credentials) and deploy/tls/ (a demo certificate), kept if
# present; ROTATE=1 makes new S3 credentials.
compose-env: $(STAMP)
	$(BIN)/python -m deploy.compose_env $(if $(ROTATE),--rotate)

# Benchmarks against nginx and direct S3 (bench/README in README.md's Performance section).
bench-quick: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.run --quick

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.run

# A whole scan migrated by 8 parallel clients, Basic and listing + tokens, against nginx (QUICK=1: 200 packages).
bench-scan: $(STAMP)
	$(BIN)/python -m bench.scan $(if $(QUICK),--quick)

# The same migration on the production stack (make stack's topology) with faults injected while it runs, each kind
# twice; prints the invariants and a table (QUICK=1: 120 packages, 60 s of load, about 90 s in all; else 5 minutes).
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(if $(QUICK),--quick)

# Dependency audit (skipped with a message where PyPI's vulnerability data is unreachable).
audit: $(STAMP)
	bash deploy/audit.sh $(BIN)

# Coverage-guided fuzzing of the Range/If-* evaluation and id patterns (CI runs a short smoke of it).
fuzz: $(STAMP)
	mkdir -p .fuzz-corpus
	$(BIN)/python tests/fuzz_conditional.py -max_total_time=600 -max_len=4096 -print_final_stats=1 .fuzz-corpus

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
