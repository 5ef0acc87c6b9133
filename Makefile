# clinic_bot — `make run` starts the bot; `make test` runs lint, format and import-contract checks and the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-unit test-reliability lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/clinic-bot run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The fast tests of the domain and reactions alone (seconds).
test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# The full attack suite (worker SIGKILLs under gateway faults, SIGKILLs of gunicorn and the
# worker as real processes, a private PostgreSQL restarted mid-load, a flood, shuffled
# redeliveries, a long logged-out channel, a soak with the memory of each process); figures go
# to reliability-report.json. The quick versions run in `make test`. Scale with
# RELIABILITY_SOAK_SECONDS, RELIABILITY_PG_PATIENTS, RELIABILITY_LOGOUT_SECONDS, …
test-reliability: $(STAMP)
	RELIABILITY_FULL=1 RELIABILITY_REPORT=$${RELIABILITY_REPORT:-reliability-report.json} \
		$(BIN)/python -m pytest -q -s tests/reliability $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/webhook_ingest.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
