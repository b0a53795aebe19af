"""The state's own consistency check, the same on SQLite and PostgreSQL: every row that names a
record or a profile names one the state holds. SQLite's `PRAGMA integrity_check` proves the file
is sound; this proves the rows agree with each other, which on PostgreSQL is what a crash could
break (the server keeps its own files sound), and on both what a bug could.

Each rule holds at every commit (the writes that would break one share a transaction), so the check
may run at any moment: after a crash, between cycles, beside a running daemon."""

from __future__ import annotations

from sync.state.sql import Database, raw_rows

# (what is wrong, a query for the offending rows as one text column each). Raw records are never
# deleted by a cycle, so every mapped row, member, link and ledger row names one.
_RAW_CONTACT = "SELECT 1 FROM raw_records r WHERE r.system = {s} AND r.kind = 'contact' AND r.record_id = {r}"
RULES: tuple[tuple[str, str], ...] = (
    (
        "contact without its raw record",
        "SELECT c.system || ':' || c.record_id FROM contacts c WHERE NOT EXISTS ("
        + _RAW_CONTACT.format(s="c.system", r="c.record_id")
        + ")",
    ),
    (
        "order without its raw record",
        "SELECT o.system || ':' || o.order_id FROM orders o WHERE NOT EXISTS (SELECT 1 FROM raw_records r "
        "WHERE r.system = o.system AND r.kind = 'order' AND r.record_id = o.order_id)",
    ),
    (
        "quarantine entry without its raw record",
        "SELECT q.system || ':' || q.record_id FROM quarantine q WHERE NOT EXISTS (SELECT 1 FROM raw_records r "
        "WHERE r.system = q.system AND r.kind = q.kind AND r.record_id = q.record_id)",
    ),
    (
        "profile member that is no stored record",
        "SELECT m.system || ':' || m.record_id FROM profile_members m WHERE NOT EXISTS ("
        + _RAW_CONTACT.format(s="m.system", r="m.record_id")
        + ")",
    ),
    (
        "profile member of a profile that does not exist",
        "SELECT m.system || ':' || m.record_id || ' in ' || m.profile_id FROM profile_members m "
        "WHERE NOT EXISTS (SELECT 1 FROM profiles p WHERE p.profile_id = m.profile_id)",
    ),
    (
        # Links name records by key (`system:id`): the keys they name less the keys stored, a set
        # operation (sorted or hashed once), never a comparison row by row.
        "identity link to a record that is not stored",
        "SELECT a FROM identity_links UNION SELECT b FROM identity_links "
        "EXCEPT SELECT system || ':' || record_id FROM raw_records WHERE kind = 'contact'",
    ),
    (
        "ledger row (pushed) for a record that is not stored",
        "SELECT p.system || ':' || p.record_id FROM pushed p WHERE NOT EXISTS ("
        + _RAW_CONTACT.format(s="p.system", r="p.record_id")
        + ")",
    ),
    (
        "pending row for a record that is not stored",
        "SELECT p.system || ':' || p.record_id FROM pending p WHERE NOT EXISTS ("
        + _RAW_CONTACT.format(s="p.system", r="p.record_id")
        + ")",
    ),
    (
        "system run of a run that does not exist",
        "SELECT s.system || ' at run ' || CAST(s.run_seq AS VARCHAR(20)) FROM system_runs s "
        "WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.seq = s.run_seq)",
    ),
)


def consistency_problems(db: Database, examples: int = 3) -> list[str]:
    """One line per broken rule, with how many rows break it and a few of them; [] when consistent.
    Read in one transaction (one snapshot), so a writer beside it cannot make it see a half."""
    problems: list[str] = []
    with db.reading() as conn:
        for what, query in RULES:
            found = [str(row[0]) for row in raw_rows(conn, query)]
            if found:
                shown = ", ".join(sorted(found)[:examples])
                problems.append(f"{len(found)} {what}: {shown}{', ...' if len(found) > examples else ''}")
    return problems
