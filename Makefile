# Every target that runs code installs first, so each works on a fresh clone by itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv install demo test lint typecheck unit debs bench clean

venv: $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/crmsync demo --log-level warning

lint: install
	$(BIN)/ruff check connectors mapping sync tests bench scripts
	$(BIN)/ruff format --check connectors mapping sync tests bench scripts

typecheck: install
	$(BIN)/mypy connectors mapping sync

# Debian packages some tests drive, installed once here, never inside a test: chromium renders the
# HTML report's page headless; systemd-analyze verifies deploy/crmsync.service; postgresql is the
# real server the state tests run on besides SQLite (its tools live outside PATH, in
# /usr/lib/postgresql/<version>/bin).
DEBS := chromium:chromium systemd-analyze:systemd
debs:
	@missing=""; for pair in $(DEBS); do command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  { apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; } \
	  || { echo "make debs: could not install Debian's$$missing (tests need them)"; exit 1; }; \
	fi

# pytest exits 5 when it collects nothing; make treats that as the failure it is. Tests run on every
# core (pytest-xdist, a test file per worker at a time: the fault matrix's cells, which run side
# by side in one session fixture, stay on one worker; `--dist loadgroup` would say the same per
# test, but with pytest 9 it scatters the group and every worker ran the whole matrix). The chaos tables
# (faults survived, crash points recovered, bad inputs, secrets found) are printed from this very
# run, whether it passed or not, and after a failure the failed tests' names come last, where a CI
# log's tail shows them, each with the reason it gave (pytest's "E " lines, from the run's JUnit XML);
# `python -m tests.chaos.report` runs the chaos suite alone. Last, the wall time.
test: lint typecheck debs
	@start=$$(date +%s); \
	rm -f .pytest_cache/last-run.xml; \
	$(BIN)/python -m pytest -n auto --dist loadfile --junitxml=.pytest_cache/last-run.xml; status=$$?; \
	if [ $$status -eq 0 ]; then $(BIN)/python -m tests.chaos.report --last; \
	else $(BIN)/python -m tests.chaos.report --last --failed; fi; \
	echo "make test: $$(( $$(date +%s) - start )) s of wall time (pytest exit $$status)"; exit $$status

# The quick lane: the unit tests, well under a minute.
unit: install
	$(BIN)/python -m pytest tests/unit -q -n auto

# Every benchmark at its small default scale; `python bench/<name>.py --scale full` for the targets.
bench: install
	@$(BIN)/python -m pip install --quiet -e '.[bench]'  # DuckDB, the yardstick of bench/pipeline.py
	@for script in bench/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) crmsync-demo .pytest_cache .mypy_cache .ruff_cache
