"""The fault matrix (tests/chaos/matrix.py): every registered connector x every fault kind of
CONTRACTS §5 that applies to it, on its reads and on its writes, each in a fresh sandbox of that
vendor. The cells selected for this run (all of them, or the ones `-k` picks) run side by side
once per session; each test asserts one cell. Under `pytest -n` they must all go to one worker
(`make test` runs `--dist loadfile`), or each worker that gets one runs them all again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.chaos import report
from tests.chaos.matrix import FAILED, Cell, Matrix, Outcome, cells, expected, matrix_data

CELLS = cells()


@pytest.fixture(scope="session")
def outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    selected = {
        item.callspec.params["cell"].id
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_fault" and hasattr(item, "callspec")
    }
    chosen = [cell for cell in CELLS if cell.id in selected]
    matrix = Matrix(matrix_data(), tmp_path_factory.mktemp("matrix"), datetime.now(UTC))
    found = {outcome.cell.id: outcome for outcome in matrix.run_all(chosen)}
    if len(chosen) == len(CELLS):  # the table is only kept when it is whole
        report.record("faults", [found[cell.id].to_json() for cell in CELLS])
    return found


def test_every_connector_meets_every_fault() -> None:
    from connectors.registry import TYPES
    from tests.chaos.matrix import FAULTS

    assert {cell.system_type for cell in CELLS} == set(TYPES)
    assert {cell.fault.spec["fault"] for cell in CELLS} == {
        "429", "500", "502", "503", "timeout", "reset", "truncate", "bad-json",
        "repeat-item", "skip-item", "slow", "vendor-throttle", "auth",
    }  # fmt: skip
    assert len(FAULTS) >= 14


# The first cell's setup runs the selected cells (all 204, each bounded by its own deadlines): ~1.5
# minutes on a quick host, 3.5 on a slow one, over the suite's 120 s default.
@pytest.mark.timeout(600)
@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: cell.id)
def test_fault(cell: Cell, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[cell.id]
    assert outcome.fired, f"{cell.id}: the fault never met a request"
    assert outcome.result != FAILED, outcome.detail
    assert outcome.result in expected(cell), f"{outcome.result}: {outcome.detail}"
