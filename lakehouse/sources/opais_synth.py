"""A synthetic HRSA 340B OPAIS covered-entity export, shaped like the real one (made up, not real data).

`write_export` streams `{"coveredEntities": [...]}` to a bare JSON file or a ZIP holding
OPA_CE_DAILY_PUBLIC.JSON, with the real file's quirks: ceId/contractId/pharmacyId as JSON numbers,
participating as the string "TRUE"/"FALSE", datetimes without zone and with 0, 3 or 7 fractional digits,
zips/NPIs/Medicaid numbers with leading zeros (a few NPIs as JSON numbers), arrays absent, null or [],
optional fields absent or null, free text with double and leading spaces, unknown extra fields, repeated
children, and pharmacies shared by many entities (a few with conflicting attributes). Contract counts are
heavy-tailed (most entities have a few, some thousands).

Size: 90,000 entities with 5 contracts each on average come to ~265 MB of compact JSON, since every
contract repeats its pharmacy's name, address and phone (~370 bytes a contract). The real export is said
to be ~200 MB: `contracts_per_entity=3` gives 198 MB with the same shape.

Everything follows from the seed. Day 0 is the first export; day d is the export d days later: each day
~1% of the entities are edited (fields, children added or removed, contracts added, terminated or gone),
~0.2% disappear and ~0.2% new ones appear. Example:

    python -m lakehouse.sources.opais_synth /tmp/opais-day0.zip --zip
    python -m lakehouse.sources.opais_synth /tmp/opais-day1.zip --zip --day 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

EXPORT_NAME = "OPA_CE_DAILY_PUBLIC.JSON"
DAY0 = dt.datetime(2024, 2, 16, 6, 0, 0)  # the date of the day-0 export
P_DELETE, P_EDIT, P_NEW = 0.002, 0.01, 0.002  # per entity and day
MAX_CONTRACTS = 3_000
CONTRACT_BLOCK = 10_000  # the contract ids of entity i are CONTRACT_BASE + i * CONTRACT_BLOCK + n
CONTRACT_BASE = 1_000
NEW_CONTRACTS = 5_000  # + 10 * day + n: the ids of the contracts an edit on `day` adds
CONFLICT_EVERY = 50  # one pharmacy in 50 has contracts that disagree on its attributes
WRITE_EVERY = 500  # entities per write
EDIT_DIGITS = (7, 7, 7, 7, 3, 0)  # fractional digits of editDates: mostly 7, like the real file

TYPES = ("DSH", "CAH", "CH", "FQHCLA", "RRC", "SCH", "PED", "CAN", "BL", "STD", "TB", "HM", "RWI", "RWIII", "FP")
STATES = ("MA", "CT", "NJ", "NY", "PA", "OH", "MI", "IL", "TX", "CA", "WA", "FL", "GA", "NC", "VA", "TN", "PR")
CITIES = ("BOSTON", "HARTFORD", "NEWARK", "ALBANY", "PITTSBURGH", "COLUMBUS", "DETROIT", "CHICAGO", "AUSTIN")
CITIES += ("FRESNO", "SPOKANE", "TAMPA", "MACON", "DURHAM", "ROANOKE", "KNOXVILLE", "SAN JUAN", "SPRINGFIELD")
STREETS = ("MAIN ST", "OAK AVENUE", "HOSPITAL DRIVE", "MEDICAL PARKWAY", "1ST STREET", "ELM ST", "MARKET STREET")
WORDS = ("REGIONAL", "COMMUNITY", "MEMORIAL", "GENERAL", "ST. MARY'S", "VALLEY", "MERCY", "UNITY", "COUNTY")
KINDS = ("HOSPITAL", "MEDICAL CENTER", "HEALTH CENTER", "CLINIC", "HEALTH SYSTEM", "FAMILY HEALTH", "CARE INC.")
PEOPLE = ("Maria Garcia", "James Smith", "Li Wei", "Fatima Khan", "John O'Neil", "Ana María Pérez", "Kim Nguyen")
TITLES = ("CEO", "CFO", "Director of Pharmacy", "340B Program Manager", "VP, Finance", "Executive  Director")
CHAINS = ("CVS PHARMACY", "WALGREENS", "WALMART PHARMACY", "KROGER PHARMACY", "RITE AID", "Genoa Healthcare")
CHAINS += ("ACCREDO HEALTH GROUP", "OPTUM SPECIALTY PHARMACY", "CENTERWELL PHARMACY", "PUBLIX PHARMACY")
REASONS = ("Voluntary Termination", "Failed to Recertify", "Entity closed", "Lost eligibility")
COMMENTS = ("Contract amended", "  Specialty only", "Mail order  pharmacy", "Replaces prior contract", "")


@dataclass(frozen=True)
class ExportStats:
    """What `write_export` wrote."""

    path: str
    day: int
    seed: int
    entities: int
    contracts: int
    json_bytes: int
    file_bytes: int
    seconds: float


# --- values with the export's quirks ----------------------------------------------------------------


def _when(rng: random.Random, start: dt.datetime, days: float, digits: int) -> str:
    """A datetime as the export writes it: no zone, 0, 3 or 7 fractional digits (100 ns ticks)."""
    text = (start + dt.timedelta(seconds=int(rng.random() * days * 86_400))).isoformat(timespec="seconds")
    if digits == 3:
        return f"{text}.{rng.randrange(1000):03d}"
    return f"{text}.{rng.randrange(10_000_000):07d}" if digits == 7 else text


def _date(rng: random.Random, start: dt.datetime, days: float) -> str:
    """A date as the export writes begin, start and termination dates: midnight, no fraction."""
    return (start + dt.timedelta(days=int(rng.random() * days))).isoformat(timespec="seconds")


def _edit_date(rng: random.Random, day: int) -> str:
    """An editDate of something last edited for export `day`: on the day before it (day 0: the months before)."""
    if day == 0:  # edited some time in the months before the first export
        return _when(rng, dt.datetime(2023, 6, 1), 250, rng.choice(EDIT_DIGITS))
    return _when(rng, DAY0 + dt.timedelta(days=day - 1), 1, rng.choice(EDIT_DIGITS))


def _text(rng: random.Random, text: str) -> str:
    """Free text as typed into OPAIS: now and then a double or a leading space."""
    u = rng.random()
    if u < 0.03:
        return text.replace(" ", "  ", 1)
    return " " + text if u < 0.04 else text


def _zip(rng: random.Random) -> str:
    return f"{rng.randrange(600, 99_950):05d}"  # New England and PR zips start with 0


def _phone(rng: random.Random) -> str:
    area, line = rng.randrange(201, 990), rng.randrange(10_000)
    return rng.choice((f"{area}555{line:04d}", f"({area}) 555-{line:04d}", f"{area}-555-{line:04d}"))


def _address(rng: random.Random, **extra: Any) -> dict[str, Any]:
    """An address; a missing addressLine2 or zip4 is null or left out."""
    address = {**extra, "addressLine1": f"{rng.randrange(1, 9999)} {rng.choice(STREETS)}"}
    _optional(
        rng, address, "addressLine2", rng.choice((None, None, None, f"STE {rng.randrange(100, 999)}", " BLDG  B"))
    )
    address |= {"city": rng.choice(CITIES), "state": rng.choice(STATES), "zip": _zip(rng)}
    _optional(rng, address, "zip4", rng.choice((None, f"{rng.randrange(10_000):04d}", f"{rng.randrange(1000):04d}")))
    return address


def _optional(rng: random.Random, obj: dict[str, Any], key: str, value: Any) -> None:
    """Set obj[key]; when the value is missing, write null or leave the key out, as the export does."""
    if value is not None or rng.random() < 0.5:
        obj[key] = value


def _array(rng: random.Random, entity: dict[str, Any], key: str, items: list[Any]) -> None:
    """Set entity[key] to items; an empty list is written as [], null or left out, like the export does."""
    if items:
        entity[key] = items
    elif (u := rng.random()) < 0.6:
        entity[key] = []
    elif u < 0.8:
        entity[key] = None


def _npi(rng: random.Random) -> dict[str, Any]:
    u = rng.random()
    number: Any = f"{rng.randrange(10**9, 3 * 10**9):010d}" if u < 0.98 else f"{rng.randrange(10**8):010d}"
    if u > 0.999:
        number = int(number)  # the export has a few NPIs as JSON numbers
    return {"npiNumber": number, "state": rng.choice(STATES)}


def _medicaid(rng: random.Random) -> dict[str, Any]:
    number = rng.choice((f"{rng.randrange(10**7):08d}", f"MC{rng.randrange(10**6):06d}", f"0{rng.randrange(10**5)}A"))
    return {"medicaidNumber": number, "state": rng.choice(STATES)}


# --- pharmacies and contracts ---------------------------------------------------------------------------


class _Pharmacies:
    """Pharmacy attributes by id, the same under every entity except for a few conflicting ids."""

    def __init__(self, seed: int, count: int) -> None:
        self.seed, self.count, self.cache = seed, count, {}

    def pick(self, rng: random.Random) -> int:
        return 1_000 + int(self.count * rng.random() ** 2)  # chains: low ids are contracted far more often

    def attributes(self, pharmacy_id: int, rng: random.Random) -> dict[str, Any]:
        if pharmacy_id not in self.cache:
            own = random.Random(f"{self.seed}:pharmacy:{pharmacy_id}")
            name = f"{own.choice(CHAINS)} #{own.randrange(1, 20_000)}"
            self.cache[pharmacy_id] = {"name": name, "address": _address(own), "phoneNumber": _phone(own)}
        attributes = self.cache[pharmacy_id]
        if pharmacy_id % CONFLICT_EVERY == 7 and rng.random() < 0.3:  # another entity's version of it
            return {**attributes, "name": attributes["name"].title(), "phoneNumber": _phone(rng)}
        return attributes


def _contract(rng: random.Random, pharmacies: _Pharmacies, contract_id: int, day: int) -> dict[str, Any]:
    pharmacy_id = pharmacies.pick(rng)
    begin = _date(rng, dt.datetime(2010, 4, 1), 4_900)
    contract = {"contractId": contract_id, "pharmacyId": pharmacy_id, **pharmacies.attributes(pharmacy_id, rng)}
    contract["beginDate"] = begin
    terminated = rng.random() < 0.1
    _optional(rng, contract, "terminationDate", _date(rng, dt.datetime(2022, 1, 1), 700) if terminated else None)
    contract["certifiedDecertifiedDate"] = _when(rng, dt.datetime(2023, 1, 1), 400, 3)
    contract["editDate"] = _edit_date(rng, day)
    if (u := rng.random()) < 0.1:
        contract["comments"] = _text(rng, rng.choice(COMMENTS))
    elif u < 0.4:
        contract["comments"] = None
    if rng.random() < 0.01:
        contract["wholesaler"] = {"name": "MCKESSON", "account": 12345}  # a field the parser does not know
    return contract


def _contract_count(rng: random.Random, mean: float) -> int:
    """Heavy-tailed like the real export: most entities have a few, a few hospitals have thousands."""
    if mean <= 0:
        return 0
    return min(MAX_CONTRACTS, int(rng.lognormvariate(0.0, 1.6) * mean / 3.6 + 0.5))


# --- entities -----------------------------------------------------------------------------------------


def _person(rng: random.Random, extension: bool) -> dict[str, Any]:
    person = {"name": _text(rng, rng.choice(PEOPLE)), "title": rng.choice(TITLES), "phoneNumber": _phone(rng)}
    if extension and rng.random() < 0.5:
        person["phoneNumberExtension"] = rng.choice((str(rng.randrange(1, 9999)), "0012", None, ""))
    return person


def _entity(seed: int, index: int, mean: float, pharmacies: _Pharmacies, born: int) -> dict[str, Any]:
    """Entity `index` as first exported on day `born`."""
    rng = random.Random(f"{seed}:entity:{index}")
    kind = rng.choice(TYPES)
    city = rng.choice(CITIES)
    participating = rng.random() < 0.85
    entity: dict[str, Any] = {"ceId": 10_000 + index, "id340B": f"{kind}{index:06d}{rng.choice(('', '', 'A', 'B'))}"}
    entity |= {"entityType": kind, "name": _text(rng, f"{city} {rng.choice(WORDS)} {rng.choice(KINDS)}")}
    if (u := rng.random()) < 0.5:
        entity["subName"] = _text(rng, f"{rng.choice(WORDS).title()} Campus")
    elif u < 0.8:
        entity["subName"] = None
    entity["participating"] = "TRUE" if participating else "FALSE"
    entity["participatingStartDate"] = _date(rng, dt.datetime(1995, 1, 1), 10_500)
    entity["terminationDate"] = None if participating else _date(rng, dt.datetime(2015, 1, 1), 3_000)
    if not participating:
        entity["terminationReason"] = rng.choice(REASONS)
    if kind in ("CH", "FQHCLA", "RWI", "RWIII", "STD", "FP"):
        entity["grantNumber"] = f"H80CS{rng.randrange(10**5):05d}"
    entity["certifiedDecertifiedDate"] = _when(rng, dt.datetime(2023, 1, 1), 400, 3)
    entity["editDate"] = _edit_date(rng, born)
    entity["authorizingOfficial"] = _person(rng, False)
    entity["primaryContact"] = _person(rng, True)
    entity["streetAddress"] = street = _address(rng)
    entity["billingAddress"] = _address(rng, organization=_text(rng, entity["name"].strip()))
    ships = [{**street, "is340BStreetAddress": True}] if rng.random() < 0.7 else []
    ships += [{**_address(rng), "is340BStreetAddress": False} for _ in range(rng.choice((0, 0, 0, 0, 1, 2)))]
    _array(rng, entity, "shippingAddresses", ships)
    _array(rng, entity, "medicaidNumbers", [_medicaid(rng) for _ in range(rng.choice((0, 1, 1, 2)))])
    npis = [_npi(rng) for _ in range(rng.choice((0, 1, 1, 2, 3)))]
    if npis and rng.random() < 0.005:
        npis.append(dict(npis[0]))  # the export repeats a child now and then
    _array(rng, entity, "npiNumbers", npis)
    contracts = [
        _contract(rng, pharmacies, CONTRACT_BASE + index * CONTRACT_BLOCK + n, born)
        for n in range(_contract_count(rng, mean))
    ]
    if contracts and (u := rng.random()) < 0.003:  # the same contract twice: identical, or not
        contracts.append(dict(contracts[-1]) if u < 0.002 else {**contracts[0], "comments": "other content"})
    _array(rng, entity, "contractPharmacies", contracts)
    if rng.random() < 0.01:
        entity["ceStatus"] = {"code": 3, "flags": [True, None]}  # a field the parser does not know
    return entity


def _edit(entity: dict[str, Any], rng: random.Random, pharmacies: _Pharmacies, day: int) -> None:
    """One day's edit of an entity in OPAIS: a field, a child, contracts; the editDates move."""
    entity["editDate"] = _edit_date(rng, day)
    u = rng.random()
    if u < 0.25:
        entity["primaryContact"] = _person(rng, True)
    elif u < 0.35 and entity["participating"] == "TRUE":
        entity |= {"participating": "FALSE", "terminationDate": _edit_date(rng, day)[:10] + "T00:00:00"}
        entity["terminationReason"] = rng.choice(REASONS)
    elif u < 0.5:
        entity["npiNumbers"] = [*(entity.get("npiNumbers") or [])[1:], _npi(rng)]
    elif u < 0.6:
        entity["medicaidNumbers"] = (entity.get("medicaidNumbers") or []) + [_medicaid(rng)]
    elif u < 0.7:
        entity["streetAddress"] = _address(rng)
    contracts = entity.get("contractPharmacies") or []
    if contracts and rng.random() < 0.5:
        del contracts[rng.randrange(len(contracts))]
    if contracts and rng.random() < 0.5:
        changed = contracts[rng.randrange(len(contracts))]
        changed |= {"terminationDate": _edit_date(rng, day)[:10] + "T00:00:00", "editDate": _edit_date(rng, day)}
    first = CONTRACT_BASE + (entity["ceId"] - 10_000) * CONTRACT_BLOCK + NEW_CONTRACTS + 10 * day  # never reused
    contracts += [_contract(rng, pharmacies, first + n, day) for n in range(rng.choice((0, 1, 1, 3)))]
    entity["contractPharmacies"] = contracts


@dataclass(frozen=True)
class _Plan:
    """Who exists on a day and what happened to them: ids born, edited, deleted, per day."""

    born: dict[int, int]
    deleted: dict[int, int]
    edits: dict[int, list[int]]
    total: int


def _plan(seed: int, entities: int, day: int) -> _Plan:
    born: dict[int, int] = {}
    deleted: dict[int, int] = {}
    edits: dict[int, list[int]] = {}
    total = entities
    for k in range(1, day + 1):
        rng = random.Random(f"{seed}:plan:{k}")
        for index in range(total):
            u = rng.random()  # drawn for every index, so one entity's fate does not shift the others'
            if index in deleted:
                continue
            if u < P_DELETE:
                deleted[index] = k
            elif u < P_DELETE + P_EDIT:
                edits.setdefault(index, []).append(k)
        new = max(1, round(entities * P_NEW))
        born |= {index: k for index in range(total, total + new)}
        total += new
    return _Plan(born, deleted, edits, total)


def iter_entities(
    *, entities: int = 90_000, contracts_per_entity: float = 5.0, seed: int = 0, day: int = 0
) -> Iterator[dict[str, Any]]:
    """The entities of the day-`day` export in file order (by ceId), one dict each, as JSON would give them."""
    plan = _plan(seed, entities, day)
    pharmacies = _Pharmacies(seed, max(10, entities // 3))
    for index in range(plan.total):
        if index in plan.deleted:
            continue
        entity = _entity(seed, index, contracts_per_entity, pharmacies, plan.born.get(index, 0))
        for k in plan.edits.get(index, []):
            _edit(entity, random.Random(f"{seed}:edit:{k}:{index}"), pharmacies, k)
        yield entity


# --- writing ------------------------------------------------------------------------------------------


@contextmanager
def _output(path: Path, zipped: bool, day: int) -> Iterator[IO[bytes]]:
    if not zipped:
        with path.open("wb") as out:
            yield out
        return
    member = zipfile.ZipInfo(EXPORT_NAME, date_time=(DAY0 + dt.timedelta(days=day)).timetuple()[:6])
    member.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w") as archive, archive.open(member, "w", force_zip64=True) as out:
        yield out


def write_export(
    path: str | Path,
    *,
    entities: int = 90_000,
    contracts_per_entity: float = 5.0,
    seed: int = 0,
    day: int = 0,
    zip: bool = False,
) -> ExportStats:
    """Write the synthetic day-`day` export to `path` (a ZIP holding OPA_CE_DAILY_PUBLIC.JSON when `zip`).

    Streamed entity by entity: memory stays small whatever the size. The same arguments give the same bytes.
    """
    if entities < 0 or day < 0 or contracts_per_entity < 0:
        raise ValueError("entities, day and contracts_per_entity must be >= 0")
    started, path = time.monotonic(), Path(path)
    count = contracts = json_bytes = 0
    with _output(path, zip, day) as out:
        parts = ['{"coveredEntities":[']
        for entity in iter_entities(entities=entities, contracts_per_entity=contracts_per_entity, seed=seed, day=day):
            parts.append(("," if count else "") + json.dumps(entity, ensure_ascii=False, separators=(",", ":")))
            count += 1
            contracts += len(entity.get("contractPharmacies") or ())
            if len(parts) >= WRITE_EVERY:
                json_bytes += out.write("".join(parts).encode())
                parts = []
        parts.append("]}")
        json_bytes += out.write("".join(parts).encode())
    seconds = round(time.monotonic() - started, 3)
    return ExportStats(str(path), day, seed, count, contracts, json_bytes, path.stat().st_size, seconds)


def main(argv: list[str] | None = None) -> None:
    """`python -m lakehouse.sources.opais_synth OUT [--entities N] [--day D] [--zip]`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="the file to write (.json, or .zip with --zip)")
    parser.add_argument("--entities", type=int, default=90_000, help="entities on day 0")
    parser.add_argument("--contracts-per-entity", type=float, default=5.0, help="mean contract pharmacies")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--day", type=int, default=0, help="0 is the first export; d is d days later")
    parser.add_argument("--zip", action="store_true", help="write a ZIP holding " + EXPORT_NAME)
    args = parser.parse_args(argv)
    stats = write_export(
        args.out,
        entities=args.entities,
        contracts_per_entity=args.contracts_per_entity,
        seed=args.seed,
        day=args.day,
        zip=args.zip,
    )
    print(
        f"{stats.path}: day {stats.day}, {stats.entities:,} entities, {stats.contracts:,} contracts, "
        f"{stats.json_bytes / 1e6:.1f} MB of JSON, {stats.file_bytes / 1e6:.1f} MB on disk, {stats.seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
