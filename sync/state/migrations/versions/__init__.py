"""The revisions, one per state schema (Alembic loads them by path; this file only makes the folder
a package, so it ships in the wheel)."""
