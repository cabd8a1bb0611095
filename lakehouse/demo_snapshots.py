"""Demo snapshot files: two days of a synthetic 340B OPAIS export and of a CMS Doctors and Clinicians file.

Synthetic data shaped like the real files (not real data). Day 2 changes a few rows, drops some and
adds some, so a run shows inserts, updates and deletes; file times are set oldest first, the order
the snapshot stream applies them in.
"""

from __future__ import annotations

import csv
import os
import random
from datetime import date, timedelta
from pathlib import Path

from lakehouse.sources.csv_snapshot import npi_is_valid

DAY1 = date(2026, 3, 1)
PECOS_HEADER = [
    "NPI", "Ind_PAC_ID", "Ind_enrl_ID", "Provider Last Name", "Provider First Name", "gndr", "Cred", "pri_spec",
    "Facility Name", "adr_ln_1", "City/Town", "State", "ZIP Code", "Telephone Number",
]  # fmt: skip
SPECIALTIES = ("INTERNAL MEDICINE", "FAMILY PRACTICE", "PULMONARY DISEASE", "SLEEP MEDICINE", "CARDIOLOGY")
PLACES = (("BOSTON", "MA", "02134"), ("AUSTIN", "TX", "73301"), ("NEWARK", "NJ", "07101"), ("DENVER", "CO", "80201"))
LAST = ("SMITH", "GARCIA", "NGUYEN", "OKAFOR", "MÜLLER", "O'BRIEN", "DE LA CRUZ")
FIRST = ("ANN", "JOSÉ", "WEI", "CHIDI", "ANNA", "SEAN", "MARIA")


def _npi(rng: random.Random) -> str:
    first9 = str(rng.randint(100_000_000, 299_999_999))
    return next(first9 + d for d in "0123456789" if npi_is_valid(first9 + d))


def _clinician(rng: random.Random, npi: str) -> list[str]:
    city, state, zip_code = rng.choice(PLACES)
    return [
        npi, str(rng.randint(10**9, 10**10 - 1)), f"I{rng.randint(10**13, 10**14 - 1)}", rng.choice(LAST),
        rng.choice(FIRST), rng.choice("MF"), rng.choice(("MD", "DO", "NP", "")), rng.choice(SPECIALTIES),
        "", f"{rng.randint(1, 999)} MAIN ST", city, state, zip_code,
        f"{rng.randint(200, 999)}555{rng.randint(0, 9999):04d}",
    ]  # fmt: skip


def write_pecos(folder: Path, *, clinicians: int = 60, seed: int = 11) -> list[Path]:
    """Two daily CSV snapshots; one row of each has an NPI that fails the check digit."""
    rng = random.Random(seed)
    rows = {npi: _clinician(rng, npi) for npi in (_npi(rng) for _ in range(clinicians))}
    day1 = [*rows.values(), ["1234567890", *rows[next(iter(rows))][1:]]]
    for npi in rng.sample(sorted(rows), clinicians // 10):
        rows[npi] = [*rows[npi][:10], *rng.choice(PLACES), rows[npi][13]]  # moved practice
    for npi in rng.sample(sorted(rows), clinicians // 20):
        del rows[npi]
    for npi in (_npi(rng) for _ in range(clinicians // 20)):
        rows[npi] = _clinician(rng, npi)
    day2 = [*rows.values(), ["1234567890", *next(iter(rows.values()))[1:]]]
    return [_write_csv(folder, DAY1 + timedelta(days=n), body) for n, body in enumerate((day1, day2))]


def _write_csv(folder: Path, day: date, rows: list[list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"DAC_NationalDownloadableFile_{day:%Y-%m-%d}.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([PECOS_HEADER, *rows])
    _set_time(path, day)
    return path


def write_opais(folder: Path, *, entities: int = 300, seed: int = 5) -> list[Path]:
    """Two daily 340B exports (ZIP, as HRSA publishes them) from the synthetic generator."""
    from lakehouse.sources.opais_synth import write_export

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for day in (0, 1):
        when = DAY1 + timedelta(days=day)
        path = folder / f"OPA_CE_DAILY_PUBLIC_{when:%Y-%m-%d}.zip"
        write_export(path, entities=entities, seed=seed, day=day, zip=True)
        _set_time(path, when)
        paths.append(path)
    return paths


def _set_time(path: Path, day: date) -> None:
    stamp = (day - date(1970, 1, 1)).days * 86_400 + 6 * 3600
    os.utime(path, (stamp, stamp))
