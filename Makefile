# bbnet — `make test` and `make demo` set everything up on a fresh Debian/Ubuntu machine (as root).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: test test-tools demo lint typecheck pytest setup system clean bench

test: setup test-tools lint typecheck pytest

# what only the tests use: vagrant (and its ruby) validates vagrant/Vagrantfile. Some distributions
# (Ubuntu 24.04+) no longer package vagrant; the test says so there instead of failing the build.
test-tools:
	@scripts/install-system.sh vagrant || echo "note: vagrant is not packaged here; the Vagrantfile check will say so"

# as root: two bottles, live spend, a kernel cutoff, a restore, reports; DEMO_ARGS="--keep" leaves it running
demo: setup
	$(VENV)/bin/bbnet demo $(DEMO_ARGS)

setup: system $(STAMP)

system:
	@scripts/install-system.sh

$(STAMP): pyproject.toml scripts/find-python.sh
	@test -x $(PY) || "$$(scripts/find-python.sh)" -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

pytest: setup test-tools
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: setup
	@for b in bench/*_bench.py; do echo "== $$b" >&2; $(PY) $$b; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
