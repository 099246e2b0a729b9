# bbnet — `make test` and `make demo` set everything up on a fresh Debian/Ubuntu machine (as root).
#
# Python packages come from requirements.lock (exact versions and hashes, made by uv from
# pyproject.toml); `make lock` remakes it after a change to pyproject.toml. The agent CLIs the
# tests run come from tests/agents/package-lock.json the same way; `make lock-agents` remakes it.
VENV       ?= .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
UV_VERSION := 0.13.9
UV_DIR     := .tools/uv-$(UV_VERSION)
UV         := $(UV_DIR)/bin/uv
AGENTS     := tests/agents
# uv must never fetch its own Python: the interpreter is the one find-python.sh found
export UV_PYTHON_DOWNLOADS := never

.PHONY: test test-vagrant demo lint typecheck pytest setup system agents lock lock-agents \
        check-lock clean bench

test: setup check-lock lint typecheck pytest

# the Vagrantfile check needs vagrant and its ruby (300+ packages): not part of every run
test-vagrant: setup
	@scripts/install-system.sh vagrant
	$(VENV)/bin/pytest -m vagrant $(PYTEST_ARGS)

# as root: two bottles, live spend, a kernel cutoff, a restore, reports; DEMO_ARGS="--keep" leaves it running
demo: setup
	$(VENV)/bin/bbnet demo $(DEMO_ARGS)

setup: system $(STAMP)

system:
	@scripts/install-system.sh

$(UV):
	"$$(scripts/find-python.sh)" -m pip install -q --disable-pip-version-check --root-user-action=ignore --target $(UV_DIR) uv==$(UV_VERSION)

# bytecode compiled once here: where PYTHONDONTWRITEBYTECODE is set (it is on these machines) every
# process would compile its imports again (bbnet --help: 1.25 s without, 0.9 s with)
$(STAMP): requirements.lock pyproject.toml scripts/find-python.sh | $(UV)
	@test -x $(PY) || $(UV) venv -q --python "$$(scripts/find-python.sh)" $(VENV)
	$(UV) pip sync -q --python $(PY) --require-hashes --compile-bytecode requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# print what is installed and fail if it is not exactly what requirements.lock says
check-lock: setup
	$(PY) scripts/check-lock.py requirements.lock

lock: | $(UV)
	$(UV) pip compile -q pyproject.toml --extra dev --universal --generate-hashes \
	    --python-version 3.13 -o requirements.lock

# the agent CLIs (exact versions in tests/agents/package.json); the lock keeps no registry addresses
agents:
	@scripts/install-agents.sh

lock-agents:
	cd $(AGENTS) && npm install --package-lock-only --ignore-scripts --omit-lockfile-registry-resolved

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

pytest: setup agents
	$(VENV)/bin/pytest -m "not vagrant" $(PYTEST_ARGS)

bench: setup
	@for b in bench/*_bench.py; do echo "== $$b" >&2; $(PY) $$b; done

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
