# pgbg: development tasks (GNU make). On a fresh machine `make demo` and `make test` are enough:
# they make the virtualenv and start the sandbox server (scripts/sandbox.sh) themselves.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pgbg-installed
SANDBOX := bash scripts/sandbox.sh

# make test PYTEST_ARGS='-k wait -x'      make bench BENCH_ARGS='-n 20'      make dsn ROLE=app
# PGBG_SANDBOX_SERVER=pg15-bg18 make test  (another sandbox server: scripts/sandbox.sh lists them)
# make chaos CHAOS_ARGS='--jobs 500 --seed 7'
PYTEST_ARGS ?=
export PYTEST_ARGS
BENCH_ARGS ?=
CHAOS_ARGS ?=
ROLE ?= admin
DB ?= pgbg

.PHONY: help venv tools sandbox sandbox-stop dsn shop test test-matrix lint demo bench chaos completions clean

help:
	@echo "make demo          sandbox server + a VACUUM of a 3M-row table through pgbg, with progress"
	@echo "make test          the test suite against the sandbox server (PYTEST_ARGS=...)"
	@echo "make test-matrix   the test suite on every sandbox server in turn, one summary line each"
	@echo "make lint          ruff check ."
	@echo "make bench         CLI and job latency figures (BENCH_ARGS='-n 20')"
	@echo "make chaos         500 jobs while clients, supervisors, workers and the server die (CHAOS_ARGS='--seed 7')"
	@echo "make venv          $(VENV) with pgbg installed editable, plus dev tools"
	@echo "make tools         Debian tools the tests drive (tmux, zsh, fish, psql), installed if missing"
	@echo "make sandbox       build (once) and start the sandbox server (PGBG_SANDBOX_SERVER picks one)"
	@echo "make sandbox-stop  stop it"
	@echo "make dsn           print the sandbox's connection URI (ROLE=admin|app|plain, DB=pgbg|shop)"
	@echo "make shop          database shop with the README's sample tables, pgbg installed (make dsn DB=shop)"
	@echo "make completions   write shell completion scripts into completions/"
	@echo "make clean         remove the virtualenv and build leftovers (the sandbox stays)"

# Re-made when pyproject.toml changes: the stamp is older than it then.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

venv: $(STAMP)

sandbox:
	$(SANDBOX) start

sandbox-stop:
	$(SANDBOX) stop

dsn:
	@PGBG_SANDBOX_DB=$(DB) $(SANDBOX) dsn $(ROLE)

# The README's examples run against this: database shop with its sample tables, pgbg in it.
shop: venv
	$(SANDBOX) shop
	PGBG_DSN="$$(PGBG_SANDBOX_DB=shop $(SANDBOX) dsn admin)" $(VENV)/bin/pgbg init
	PGBG_DSN="$$(PGBG_SANDBOX_DB=shop $(SANDBOX) dsn admin)" $(VENV)/bin/pgbg grant pgbg_app

tools:
	bash scripts/test-tools.sh

test: venv tools sandbox
	$(PY) -m pytest $(PYTEST_ARGS)

test-matrix: venv tools
	PY=$(PY) bash scripts/test-matrix.sh

lint: venv
	$(VENV)/bin/ruff check .

demo: venv sandbox
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

bench: venv sandbox
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) bench/bench_cli.py $(BENCH_ARGS)

# Its own sandbox instance (chaos, or PGBG_CHAOS_INSTANCE), which it restarts: not the shared one.
chaos: venv
	$(PY) bench/chaos.py $(CHAOS_ARGS)

completions: venv
	$(PY) -m pgbg_cli.completions completions/

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
