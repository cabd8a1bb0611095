"""The non-PHI zone's tables left behind: a table renamed, removed or made PHI-only keeps its zone folders, which
withdrawals, forgets and VACUUM (all driven by the configured tables) never reach. Found by review; the run names
them on the zone tables' runs, on local disk and on S3 (moto server)."""

from __future__ import annotations

from pathlib import Path

from lakehouse.apply.non_phi import orphan_zone_tables
from lakehouse.config import Config, load_config
from lakehouse.runner import TableRun, _note_orphan_zone_tables
from tests.test_config import write, zone_document


def zone_config(tmp_path: Path, root: str) -> Config:
    data = zone_document({"id": "pseudonym", "name": "keep", "born": "birth_year"})
    data["paths"]["non_phi_lake"] = root
    return load_config(write(tmp_path, data))


def delta_table(root: Path, table: str, kind: str) -> None:
    (root / table / kind / "_delta_log").mkdir(parents=True)
    (root / table / kind / "_delta_log" / "00000000000000000000.json").write_text("{}")


def test_a_zone_folder_no_configured_table_owns_is_named_on_the_zone_tables_runs(tmp_path: Path) -> None:
    root = tmp_path / "non_phi"
    config = zone_config(tmp_path, str(root))
    assert orphan_zone_tables(config) == []  # no zone yet
    delta_table(root, "people", "history")
    delta_table(root, "people", "latest")
    (root / "scratch").mkdir()  # not a table: not named
    assert orphan_zone_tables(config) == []
    delta_table(root, "persons", "history")  # the table's name before a rename
    delta_table(root, "devices", "latest")  # a table made PHI-only
    assert orphan_zone_tables(config) == ["devices", "persons"]

    runs = [TableRun("people")]
    _note_orphan_zone_tables(config, runs)
    (note,) = runs[0].notes
    assert "devices, persons" in note and "withdrawals, forgets and VACUUM do not reach them" in note


def test_zone_folders_left_behind_are_found_on_s3(tmp_path: Path, aws, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="zone")
    for key in ("nonphi/people/history/_delta_log/0.json", "nonphi/persons/latest/_delta_log/0.json",
                "nonphi/notes/readme.txt", "elsewhere/old/history/_delta_log/0.json"):  # fmt: skip
        s3.put_object(Bucket="zone", Key=key, Body=b"{}")
    assert orphan_zone_tables(zone_config(tmp_path, "s3://zone/nonphi")) == ["persons"]
