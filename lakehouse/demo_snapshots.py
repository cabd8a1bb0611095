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
# The header of the CMS Doctors and Clinicians national file (DAC_NationalDownloadableFile.csv).
PECOS_HEADER = [
    "NPI", "Ind_PAC_ID", "Ind_enrl_ID", "Provider Last Name", "Provider First Name", "Provider Middle Name", "suff",
    "gndr", "Cred", "Med_sch", "Grd_yr", "pri_spec", "sec_spec_1", "sec_spec_2", "sec_spec_3", "sec_spec_4",
    "sec_spec_all", "Telehlth", "Facility Name", "org_pac_id", "num_org_mem", "adr_ln_1", "adr_ln_2", "ln_2_sprs",
    "City/Town", "State", "ZIP Code", "Telephone Number", "ind_assgn", "grp_assgn", "adrs_id",
]  # fmt: skip
SPECIALTIES = ("INTERNAL MEDICINE", "FAMILY PRACTICE", "PULMONARY DISEASE", "SLEEP MEDICINE", "CARDIOLOGY")
PLACES = (("BOSTON", "MA", "02134"), ("AUSTIN", "TX", "73301"), ("NEWARK", "NJ", "07101"), ("DENVER", "CO", "80201"))
LAST = ("SMITH", "GARCIA", "NGUYEN", "OKAFOR", "MÜLLER", "O'BRIEN", "DE LA CRUZ")
FIRST = ("ANN", "JOSÉ", "WEI", "CHIDI", "ANNA", "SEAN", "MARIA")
SCHOOLS = ("OTHER", "HARVARD MEDICAL SCHOOL", "UNIVERSITY OF TEXAS MEDICAL BRANCH AT GALVESTON", "BAYLOR COLLEGE")
GROUPS = ("VALLEY SLEEP ASSOCIATES", "NORTHEAST PULMONARY GROUP, P.C.", "FAMILY HEALTH PARTNERS LLC", "CITY HOSPITAL")
# Columns of a clinician (the first 18) and of one practice location / group affiliation (the rest).
PERSON, LOCATION = slice(0, 18), slice(18, 31)


def _npi(rng: random.Random) -> str:
    first9 = str(rng.randint(100_000_000, 299_999_999))
    return next(first9 + d for d in "0123456789" if npi_is_valid(first9 + d))


def _clinician(rng: random.Random, npi: str) -> list[str]:
    specialty = rng.choice(SPECIALTIES)
    return [
        npi, str(rng.randint(10**9, 10**10 - 1)), f"I2{rng.randint(10**13, 2 * 10**13 - 1)}", rng.choice(LAST),
        rng.choice(FIRST), rng.choice(("", "A", "J")), rng.choice(("", "", "JR")), rng.choice("MF"),
        rng.choice(("MD", "DO", "NP", "")), rng.choice(SCHOOLS), str(rng.randint(1975, 2020)), specialty,
        "", "", "", "", specialty, rng.choice(("Y", "")),
    ]  # fmt: skip


def _location(rng: random.Random, groups: list[tuple[str, str, str]]) -> list[str]:
    """One practice location: in a group practice (its PAC id, name, size), or solo (no org_pac_id)."""
    city, state, zip5 = rng.choice(PLACES)
    name, pac_id, members = rng.choice(groups) if rng.random() < 0.8 else ("", "", "")
    street = f"{rng.randint(1, 999)} {rng.choice(('MAIN ST', 'OAK AVE', 'MEDICAL PKWY'))}"
    suite = rng.choice(("", "", "SUITE 200"))
    zip_code = zip5 + f"{rng.randint(0, 9999):04d}"
    return [
        name, pac_id, members, street, suite, "", city, state, zip_code,
        f"{rng.randint(200, 999)}555{rng.randint(0, 9999):04d}", "Y", "Y" if pac_id else "",
        f"{state}{zip_code}{street[:2].strip()}{rng.randint(100, 999)}",
    ]  # fmt: skip


def write_pecos(folder: Path, *, clinicians: int = 60, seed: int = 11) -> list[Path]:
    """Two daily CSV snapshots shaped like the national file: a clinician has a row per practice location.

    Day 2 adds and closes locations, changes a location's phone, drops clinicians and adds others; each
    day has one row whose NPI fails the check digit.
    """
    rng = random.Random(seed)
    groups = [(name, str(rng.randint(10**9, 10**10 - 1)), str(rng.randint(2, 400))) for name in GROUPS]
    people = {npi: _clinician(rng, npi) for npi in (_npi(rng) for _ in range(clinicians))}
    sites = {npi: [_location(rng, groups) for _ in range(rng.choice((1, 1, 2, 3)))] for npi in people}
    day1 = _rows(people, sites)
    for npi in rng.sample(sorted(sites), clinicians // 10):
        sites[npi].append(_location(rng, groups))  # a new practice location
    for npi in rng.sample([n for n in sorted(sites) if len(sites[n]) > 1], clinicians // 20):
        sites[npi].pop(0)  # a location closed
    for npi in rng.sample(sorted(sites), clinicians // 10):
        sites[npi][-1][9] = f"{rng.randint(200, 999)}555{rng.randint(0, 9999):04d}"  # a new phone number
    for npi in rng.sample(sorted(people), clinicians // 20):
        del people[npi], sites[npi]
    for npi in (_npi(rng) for _ in range(clinicians // 20)):
        people[npi], sites[npi] = _clinician(rng, npi), [_location(rng, groups)]
    day2 = _rows(people, sites)
    return [_write_csv(folder, DAY1 + timedelta(days=n), body) for n, body in enumerate((day1, day2))]


def _rows(people: dict[str, list[str]], sites: dict[str, list[list[str]]]) -> list[list[str]]:
    rows = [[*people[npi], *site] for npi in people for site in sites[npi]]
    return [*rows, ["1234567890", *rows[0][1:]]]  # a row whose NPI fails the check digit


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
