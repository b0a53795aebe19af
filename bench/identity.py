"""Identity: quality on the hand-checked fixture, and normalise + resolve at scale.

    python bench/identity.py                 # 100,000 records (a few seconds)
    python bench/identity.py --scale full    # 1,000,000 records: the targets (<= 25 s, <= 1.5 GB, resolve <= 10 s)

Records are synthetic Dutch/Belgian contacts over 3 systems with ~30 % of people in more than one,
spelled as merchants' data spells them (case, display names, phone formats, role addresses,
typos). They are generated up front (not timed) into one file per chunk; the timed part reads
each chunk, maps it with the real field-map code and normalisers in a pool of worker processes
(both cores), then resolves identities in this process. Peak memory is summed over this process
and every worker.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import resource
import tempfile
import time
from datetime import UTC, datetime
from multiprocessing import Pool
from pathlib import Path

from _common import machine, peak_rss_mb, result_line

from mapping.fieldmaps import MappingRules, map_contact
from mapping.identity import IdentitySettings, identifiers, resolve
from mapping.model import Contact, FieldSpec, Kind, RemoteState, SourceRecord
from tests.fixtures.identity.evaluate import load, score

CHUNK = 20_000
SYSTEMS = ("shop", "web", "crm")
FIELDS = {
    "email": FieldSpec("email", "email"),
    "phone": FieldSpec("phone", "phone"),
    "first_name": FieldSpec("first_name"),
    "last_name": FieldSpec("last_name"),
    "postcode": FieldSpec("postcode"),
    "country": FieldSpec("country", "country"),
}
FIRST = ["Jan", "Piet", "Kees", "Anna", "Sanne", "Lotte", "Daan", "Bram", "Fleur", "Noor", "Thijs", "Emma", "Lars"]
LAST = ["Jansen", "de Vries", "van Dijk", "Bakker", "van der Berg", "Visser", "Smit", "de Boer", "Mulder", "Peeters"]
DOMAINS = ["gmail.com", "hotmail.com", "ziggo.nl", "kpnmail.nl", "telenet.be", "outlook.com", "live.nl"]


def generate(chunk: int, records: int, folder: str) -> int:
    """Write chunk number `chunk` (records of people chunk*CHUNK...) as a pickle; returns its size."""
    rng = random.Random(chunk)
    out = []
    person = chunk * CHUNK
    while len(out) < min(CHUNK, records - chunk * CHUNK):
        person += 1
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first}.{last.replace(' ', '')}{person}@{rng.choice(DOMAINS)}"
        digits = f"{rng.randrange(10_000_000, 99_999_999)}"
        # ~30 % of people in more than one system (records of one person share the person number)
        systems = rng.sample(SYSTEMS, 2 if rng.random() < 0.3 else 1)
        for n, system in enumerate(systems):
            roll = rng.random()
            shown = email.lower() if n == 0 else (email.upper() if roll < 0.3 else f"{first} {last} <{email}>")
            if roll > 0.97:
                shown = f"info@bedrijf{person % 500}.nl"  # a role address on B2B customers
            elif roll > 0.955:
                shown = shown.replace("@", "@@")  # a typo that makes it invalid
            phone = rng.choice(
                [f"06-{digits}", f"06{digits}", f"+31 6 {digits}", f"+31 (0)6 {digits}", None, f"020-{digits[:7]}"]
            )
            out.append(
                {
                    "key": f"{system}:{person}",
                    "email": shown,
                    "phone": phone,
                    "first_name": first.upper() if roll < 0.2 else first,
                    "last_name": last,
                    "postcode": f"{1000 + person % 8999}{'ab' if roll < 0.5 else ' CD'}",
                    "country": rng.choice(["NL", "Nederland", "nl", "The Netherlands"]),
                }
            )
    path = Path(folder) / f"chunk-{chunk:04d}.pickle"
    path.write_bytes(pickle.dumps(out[: min(CHUNK, records - chunk * CHUNK)]))
    return len(out)


def normalise(path: str) -> tuple[list[tuple[str, list[tuple[str, str]], str | None]], int, float, int]:
    """Map one chunk; returns compact identity rows, the worker's pid, its CPU seconds and peak RSS."""
    started = time.process_time()
    rules = MappingRules(default_country="NL")
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for raw in pickle.loads(Path(path).read_bytes()):
        system, _, rid = raw["key"].partition(":")
        mapped = map_contact(SourceRecord(system, Kind.CONTACT, rid, stamp, raw), FIELDS, RemoteState(), None, rules)
        if isinstance(mapped, Contact):
            rows.append((mapped.key, identifiers(mapped), mapped.given_name))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rows, os.getpid(), time.process_time() - started, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="small", help="small (100k records), full (1M) or a number")
    args = parser.parse_args()
    records = {"small": 100_000, "full": 1_000_000}.get(args.scale) or int(args.scale)

    quality = score()
    with tempfile.TemporaryDirectory() as folder:
        chunks = (records + CHUNK - 1) // CHUNK
        with Pool(2) as pool:
            pool.starmap(generate, [(c, records, folder) for c in range(chunks)])
        paths = sorted(str(p) for p in Path(folder).glob("chunk-*.pickle"))

        started = time.perf_counter()
        workers: dict[int, int] = {}
        rows: list[tuple[str, list[tuple[str, str]], str | None]] = []
        cpu = 0.0
        with Pool(2) as pool:
            for chunk_rows, pid, seconds, rss in pool.imap_unordered(normalise, paths):
                rows.extend(chunk_rows)
                workers[pid] = max(workers.get(pid, 0), rss)
                cpu += seconds
        normalised_at = time.perf_counter()
        names = {key: name for key, _, name in rows if name}
        settings = IdentitySettings()
        result = resolve(
            ((key, idents) for key, idents, _ in rows),
            {},
            {},
            limits=settings.max_records_per_identifier,
            max_profile=settings.max_records_per_profile,
            names=names,
        )
        resolved_at = time.perf_counter()

    normalise_s = normalised_at - started
    resolve_s = resolved_at - normalised_at
    total_s = resolved_at - started
    peak = peak_rss_mb() + sum(workers.values()) / 1024
    profiles = len(set(result.assignment.values()))
    print(f"machine: {machine()}")
    print(f"{'measure':<34}{'value':>14}")
    for label, value in (
        ("fixture records", len(load())),
        ("fixture pairwise precision", f"{quality.precision:.4f}"),
        ("fixture pairwise recall", f"{quality.recall:.4f}"),
        ("records", f"{len(rows):,}"),
        ("profiles", f"{profiles:,}"),
        ("joins refused / shared identifiers", f"{len(result.refused)} / {len(result.shared)}"),
        ("normalise wall s (2 workers)", f"{normalise_s:.2f}"),
        ("normalise CPU us per record", f"{cpu / max(1, len(rows)) * 1e6:.1f}"),
        ("resolve s", f"{resolve_s:.2f}"),
        ("total s", f"{total_s:.2f}"),
        ("records per s", f"{len(rows) / total_s:,.0f}"),
        ("peak RSS MB (all processes)", f"{peak:.0f}"),
    ):
        print(f"{label:<34}{value:>14}")
    print(
        result_line(
            records=len(rows),
            precision=f"{quality.precision:.4f}",
            recall=f"{quality.recall:.4f}",
            normalise_s=f"{normalise_s:.2f}",
            resolve_s=f"{resolve_s:.2f}",
            total_s=f"{total_s:.2f}",
            records_per_s=f"{len(rows) / total_s:.0f}",
            peak_rss_mb=f"{peak:.0f}",
        )
    )


if __name__ == "__main__":
    main()
