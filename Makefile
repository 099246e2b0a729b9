# bbnet — `make test` and `make demo` set everything up on a fresh Debian/Ubuntu machine (as root).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: test demo lint typecheck pytest setup system clean bench

test: setup lint typecheck pytest

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

pytest: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: setup
	@for b in bench/*_bench.py; do echo "== $$b" >&2; $(PY) $$b; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
