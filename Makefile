# Every target that runs code installs first, so each works on a fresh clone by itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv install demo test lint typecheck unit bench clean

venv: $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/crmsync demo

lint: install
	$(BIN)/ruff check connectors mapping sync tests bench scripts
	$(BIN)/ruff format --check connectors mapping sync tests bench scripts

typecheck: install
	$(BIN)/mypy connectors mapping sync

# pytest exits 5 when it collects nothing; make treats that as the failure it is. The chaos tables
# (faults survived, crash points recovered, bad inputs, secrets found) are printed from this very
# run, whether it passed or not, and after a failure the failed tests' names come last, where a CI
# log's tail shows them; `python -m tests.chaos.report` runs the chaos suite alone.
test: lint typecheck
	$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 0 ]; then $(BIN)/python -m tests.chaos.report --last; \
	else $(BIN)/python -m tests.chaos.report --last --failed; fi; exit $$status

# Every benchmark at its small default scale; `python bench/<name>.py --scale full` for the targets.
bench: install
	@for script in bench/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) crmsync-demo .pytest_cache .mypy_cache .ruff_cache
