# The two commands a fresh machine needs: `make demo` and `make test`.
# Each creates .venv and installs what it needs by itself.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist workers for `make test`. Most tests wait on golem subprocesses and
# loopback I/O, so more workers than cores pays; PYTEST_WORKERS=0 runs serially.
# --dist loadfile keeps a test file on one worker, so a module's expensive fixture
# (test_bulk's 200-VM fleet, the team tests' fleet) is built once, as in a serial run.
PYTEST_WORKERS ?= 4
PYTEST_DIST := -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: install system-deps postgresql test demo lint format bench clean cli-docs

# golem and the devnet (its own distribution, in devnet/) in one pip call, so pip
# takes golem-vm-devnet's golem-vm-requestor requirement from this checkout.
$(STAMP): pyproject.toml devnet/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ./devnet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# golem never runs ssh or scp, but tests and benchmarks compare against OpenSSH.
system-deps:
	@command -v ssh >/dev/null && command -v scp >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq openssh-client >/dev/null; \
	  else \
	    echo "Install the OpenSSH client (ssh, scp) for the tests, e.g. apt-get install openssh-client"; \
	    exit 1; \
	  fi; }

# The PostgreSQL suites (team mode) start a throwaway server of their own from the
# installed server binaries (tests/support/postgres.py finds them). Where they
# cannot be installed, those tests are skipped, each with the reason.
PG_BINDIR := $(BIN)/python tests/support/postgres.py bindir
postgresql: $(STAMP)
	@$(PG_BINDIR) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends --no-upgrade postgresql >/dev/null; } \
	    || echo "apt-get could not install postgresql: the PostgreSQL tests will be skipped"; \
	  else \
	    echo "Install PostgreSQL's server for the PostgreSQL tests (they are skipped without it), e.g. apt-get install postgresql"; \
	  fi; }

# Once PostgreSQL is installed, a server that does not start fails the suite
# instead of skipping it (GOLEM_TEST_REQUIRE_POSTGRESQL, tests/plugins/postgres.py).
test: $(STAMP) system-deps postgresql
	GOLEM_TEST_REQUIRE_POSTGRESQL=$$($(PG_BINDIR) >/dev/null 2>&1 && echo 1) \
	  $(BIN)/python -m pytest $(PYTEST_DIST) $(PYTEST_ARGS)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy requestor devnet/golem_devnet

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# docs/cli.md from the commands' own help; tests/test_cli_docs.py fails when stale.
cli-docs: $(STAMP)
	$(BIN)/python -m requestor.cli.docs docs/cli.md

bench: $(STAMP) system-deps
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info devnet/*.egg-info
