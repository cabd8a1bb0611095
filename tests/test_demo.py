"""The demo generator writes DMS CSV files exactly as `config/local.yaml` describes them (no Spark)."""

from __future__ import annotations

import csv
import re
from itertools import pairwise
from pathlib import Path

import pytest
import yaml

from lakehouse.demo import generate, main

CONFIG = Path(__file__).resolve().parents[1] / "config" / "local.yaml"
SEQ = re.compile(r"^\d{35}$")
COMMIT_TS = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")
CDC_NAME = re.compile(r"^\d{8}-\d{9}\.csv$")
DMS_REAL = re.compile(r"^[+-]\d\.\d{8}e[+-]\d\d$")


def _all_tables() -> dict[str, dict]:
    return yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["tables"]


def _tables() -> dict[str, dict]:
    """The tables of the demo's main DMS task (the one with the change-seq add-column rule)."""
    return {n: t for n, t in _all_tables().items() if "change_seq_column" in t["source"]}


def _folder(landing: Path, source: dict) -> Path:
    return landing / source["path"].split("/landing/", 1)[1]


def _files(landing: Path, source: dict) -> list[Path]:
    files = _folder(landing, source).glob("*.csv")
    return sorted(files, key=lambda p: (not p.name.startswith("LOAD"), p.name))


def _records(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f, strict=True))


def _rows(landing: Path, table: str) -> list[dict[str, str]]:
    """Every row of a table as a dict (plus _op and _file), mapped by its field count to a layout."""
    source = _tables()[table]["source"]
    known = [list(source["columns"]), *source.get("previous_layouts", [])]
    layouts = {len(layout): layout for layout in known}
    rows = []
    for path in _files(landing, source):
        has_op = not path.name.startswith("LOAD") or source["op_in_full_load"]
        for record in _records(path):
            values = record[1:] if has_op else record
            row = dict(zip(layouts[len(values)], values, strict=True))
            rows.append({**row, "_op": record[0] if has_op else "", "_file": path.name})
    return rows


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("landing")
    generate(root, seed=7, patients=60, days=3)
    return root


def test_files_are_where_the_config_says(landing: Path) -> None:
    folders = set()
    for table in ("patients", "devices", "therapy_sessions"):
        source = _tables()[table]["source"]
        names = [p.name for p in _files(landing, source)]
        folders.add(_folder(landing, source))
        assert names[:2] == ["LOAD00000001.csv", "LOAD00000002.csv"]
        cdc = names[2:]
        assert all(CDC_NAME.match(n) for n in cdc), cdc
        assert {n[:8] for n in cdc} == {"20260301", "20260302", "20260303"}, f"{table}: files on every day"
        assert len(cdc) >= 6, f"{table}: several CDC files per day"
    consents = _folder(landing, _all_tables()["consents"]["source"])
    assert {p.parent for p in landing.rglob("*") if p.is_file()} == {*folders, consents}


def test_consents_are_insert_events_with_withdrawals(landing: Path) -> None:
    source = _all_tables()["consents"]["source"]
    files = _files(landing, source)
    load = _records(files[0])
    cdc = [r for path in files[1:] for r in _records(path)]
    assert files[0].name == "LOAD00000001.csv" and len(load) == 60  # one record per patient
    assert all(len(r) == len(source["columns"]) for r in load)
    assert {r[0] for r in cdc} == {"I"} and {r[5] for r in cdc} == {"t", "f"}  # grants and withdrawals
    assert {r[4] for r in load} == {"t", "f"}


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    counts = [generate(tmp_path / run, seed=3, patients=30, days=2) for run in ("a", "b")]
    assert counts[0] == counts[1]
    first = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.csv"))
    second = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.csv"))
    assert first == second
    assert all((tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes() for p in first)
    generate(tmp_path / "c", seed=4, patients=30, days=2)
    assert any(
        (tmp_path / "c" / p).read_bytes() != (tmp_path / "a" / p).read_bytes()
        for p in first
        if (tmp_path / "c" / p).exists()
    )


def test_every_record_has_the_field_count_of_its_file_layout(landing: Path) -> None:
    for table, spec in _tables().items():
        source = spec["source"]
        current, previous = len(source["columns"]), [len(p) for p in source.get("previous_layouts", [])]
        seen = []
        for path in _files(landing, source):
            counts = {len(r) for r in _records(path)}
            assert len(counts) == 1, f"{path.name}: one layout per file"
            count = counts.pop()
            if path.name.startswith("LOAD"):
                expected = [current + 1] if source["op_in_full_load"] else [current]
                if table == "devices":
                    expected = [n + 1 for n in previous]  # written before firmware_version existed
                assert count in expected, path.name
            else:
                assert count in [current + 1, *(n + 1 for n in previous)], path.name
                seen.append(count == current + 1)
        assert seen and seen[-1], f"{table}: the latest files carry the current layout"
        if table == "devices":
            assert not seen[0] and seen == sorted(seen), "devices: old layout first, then the new one"


def test_ops_and_change_sequence(landing: Path) -> None:
    for table in _tables():
        rows = _rows(landing, table)
        for row in rows:
            assert COMMIT_TS.match(row["dms_commit_ts"]), row
            if row["_file"].startswith("LOAD"):
                assert row["dms_change_seq"] == ""
                assert row["_op"] == ("I" if table == "devices" else "")
            else:
                assert SEQ.match(row["dms_change_seq"]), row
                assert row["_op"] in {"I", "U", "D"}
        assert {r["_op"] for r in rows if not r["_file"].startswith("LOAD")} >= {"I", "U"}


def test_change_sequence_restarts_once_while_commit_times_grow(landing: Path) -> None:
    cdc = [r for t in _tables() for r in _rows(landing, t) if not r["_file"].startswith("LOAD")]
    ordered = sorted(cdc, key=lambda r: (r["dms_commit_ts"], r["dms_change_seq"]))
    drops = [b for a, b in pairwise(ordered) if b["dms_change_seq"] < a["dms_change_seq"]]
    assert len(drops) == 1
    assert drops[0]["dms_commit_ts"].startswith("2026-03-02")


def test_deletes_carry_only_keys(landing: Path) -> None:
    deleted = 0
    for table, spec in _tables().items():
        keep = {*spec["primary_key"], "dms_commit_ts", "dms_change_seq", "_op", "_file"}
        prefix = spec["source"].get("before_image_prefix")
        for row in (r for r in _rows(landing, table) if r["_op"] == "D"):
            deleted += 1
            filled = {c for c, v in row.items() if v != ""}
            assert filled - keep <= {f"{prefix}{k}" for k in spec["primary_key"]}, row
            assert set(spec["primary_key"]) <= filled
    assert deleted >= 2


def test_patients_before_image(landing: Path) -> None:
    rows = _rows(landing, "patients")
    for row in rows:
        if row["_op"] in {"U", "D"}:
            assert row["BI_patient_id"] != ""
        else:
            assert row["BI_patient_id"] == ""
    moved = [r for r in rows if r["_op"] == "U" and r["patient_id"] != r["BI_patient_id"]]
    assert len(moved) == 1


def test_deleted_then_reinserted_key_is_updated(landing: Path) -> None:
    rows = _rows(landing, "patients")
    deleted = {r["patient_id"] for r in rows if r["_op"] == "D"}
    story = {k: [r["_op"] for r in rows if r["patient_id"] == k] for k in deleted}
    assert any(ops[:4] == ["I", "D", "I", "U"] for ops in story.values()), story
    by_file: dict[tuple[str, str], int] = {}
    for r in rows:
        if r["_op"] == "U":
            by_file[r["_file"], r["patient_id"]] = by_file.get((r["_file"], r["patient_id"]), 0) + 1
    assert max(by_file.values()) >= 3, "one key changed several times inside one file"


def test_realistic_quirks(landing: Path) -> None:
    patients = _rows(landing, "patients")
    sessions = _rows(landing, "therapy_sessions")
    assert any("\n" in r["notes"] for r in sessions)
    assert any('"' in r["notes"] for r in sessions)
    assert any("," in r["address_line1"] for r in patients)
    assert any('"' in r["first_name"] or '"' in r["address_line1"] for r in patients)
    assert any(not r["first_name"].isascii() for r in patients)
    assert any(r["zip"].startswith("0") for r in patients)
    assert any(r["phone"].startswith("0") for r in patients)
    filled = [r for r in sessions if r["_op"] != "D"]
    assert all(DMS_REAL.match(r["ahi"]) and DMS_REAL.match(r["leak_rate"]) for r in filled)
    pressures = {r["pressure_cm_h2o"] for r in filled}
    assert "" in pressures and all(re.match(r"^\d{1,2}\.\d$", p) for p in pressures - {""}), "NUMERIC(4,1) or NULL"
    assert all(
        r["email"].endswith((".example.com", "@example.com", "@example.org", "@example.net"))
        for r in patients
        if r["_op"] != "D"
    )


def test_counts_and_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    counts = generate(tmp_path / "x", patients=20, days=2)
    consents = sum(len(_records(p)) for p in _files(tmp_path / "x", _all_tables()["consents"]["source"]))
    assert counts == {**{t: len(_rows(tmp_path / "x", t)) for t in _tables()}, "consents": consents}
    assert main([str(tmp_path / "y"), "--patients", "20", "--days", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{t}: {n} rows" for t, n in counts.items()]
