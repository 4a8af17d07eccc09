# Two commands do all set-up on a fresh machine: `make drill` and `make test`.
# Both run scripts/bootstrap.sh first, which installs whatever is missing.
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
DRILL_ARGS ?= --scenario connector-down,ca-down,both-down --rounds 20 --out runs/drill --json runs/drill/result.json

.PHONY: bootstrap test lint unit integration e2e drill bench clean

bootstrap:
	@scripts/bootstrap.sh

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Two workers: most of the suite waits on real servers, not on the CPU. Each
# worker has its own port range (tests/conftest.py); a module stays on one worker.
PYTEST_WORKERS ?= 2

test: lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadscope --durations=25 $(PYTEST_ARGS)

unit: bootstrap
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

integration: bootstrap
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

e2e: bootstrap
	$(BIN)/pytest -m e2e $(PYTEST_ARGS)

drill: bootstrap
	$(BIN)/pfxha drill $(DRILL_ARGS)

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
