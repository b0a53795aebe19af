"""The two focused views of `crmsync report`: `--campaign SEGMENT --since DATE` (sync/campaign.py)
and `--members SEGMENT [--csv]` (sync/members.py). Both read the state only, as `report` does."""

from __future__ import annotations

from typing import NoReturn

import typer

from sync.cli_support import Common, console, emit_json, fail
from sync.config import LoadedConfig


def campaign_view(common: Common, loaded: LoadedConfig, segment: str, since: str | None) -> NoReturn:
    from sync.campaign import UnknownSegment, campaign_report, render_campaign, window_start
    from sync.clock import now
    from sync.segmenting import segment_calendar
    from sync.state import StateStore

    if since is None:
        fail("crmsync report: --campaign needs --since DATE (when the campaign started)", 2)
    until = now()
    try:
        # A date is the merchant's midnight when `[segments] timezone` is set (sync/campaign.py).
        start = window_start(since, until, segment_calendar(loaded.config.segments.timezone))
    except ValueError as exc:
        fail(f"crmsync report: {exc}", 2)
    store = StateStore(loaded.state_url())
    try:
        document = campaign_report(store, loaded.config, segment, start, until)
    except UnknownSegment as exc:
        fail(f"crmsync report: {exc}", 2)
    finally:
        store.close()
    emit_json(document) if common.as_json else print(render_campaign(document))
    raise typer.Exit(0)


def members_view(common: Common, loaded: LoadedConfig, segment: str, as_csv: bool) -> NoReturn:
    from rich.table import Table

    from sync.members import COLUMNS, member_rows, to_csv
    from sync.state import StateStore

    if not loaded.config.segments.knows(segment):
        fail(f"crmsync report: no segment named {segment!r}", 2)
    store = StateStore(loaded.state_url())
    try:
        rows = member_rows(store, loaded.config, segment)
    finally:
        store.close()
    if as_csv:
        print(to_csv(rows), end="")
    elif common.as_json:
        emit_json({"segment": segment, "members": rows})
    else:
        table = Table(title=f"{segment}: {len(rows)} member(s), holdout left out")
        for column in COLUMNS:
            table.add_column(column)
        for row in rows:
            table.add_row(*(row[c] for c in COLUMNS))
        console().print(table)
    raise typer.Exit(0)
