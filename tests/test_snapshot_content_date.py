"""A feed dated by its content (`date.source: content`, the newest editDate): a file is known by its diff, not
its name and date.

Found by review: HRSA's export has one fixed name; a day that only removes entities moves no editDate, so the
new export had the (date, name) of the one applied before, was reported `already_applied`, and its deletes
waited, unsaid, for a later export, which then dated them wrongly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lakehouse.apply.snapshot import SnapshotRefused, apply_snapshot, refusals_pending, refuse
from lakehouse.config import Config
from lakehouse.sources.opais_synth import write_export

NAME = "OPA_CE_DAILY_PUBLIC.JSON"


def content_dated(root: Path) -> Config:
    return Config.model_validate(
        {
            "paths": {"landing": str(root / "landing"), "lake": str(root / "lake"), "checkpoints": str(root / "cp")},
            "snapshots": {"opais": {"kind": "opais", "path": str(root / "landing"), "date": {"source": "content"}}},
        }
    )


def edits(entity: dict) -> list[str]:
    return [entity["editDate"], *[c["editDate"] for c in entity.get("contractPharmacies") or [] if c.get("editDate")]]


def test_a_new_export_with_the_same_newest_edit_and_name_is_refused_and_the_same_file_is_already_applied(
    spark, tmp_path
):
    config = content_dated(tmp_path)
    path = tmp_path / "landing" / NAME
    path.parent.mkdir(parents=True)
    write_export(path, entities=12, seed=5, day=0)
    assert apply_snapshot(spark, config, "opais", str(path)).status == "applied"
    assert apply_snapshot(spark, config, "opais", str(path)).status == "already_applied"  # the same file again

    export = json.loads(path.read_text(encoding="utf-8-sig"))
    entities = export["coveredEntities"]
    newest = max(max(edits(e)) for e in entities)  # the content date: the newest edit of an entity or a contract
    gone = next(e for e in entities if max(edits(e)) < newest)
    export["coveredEntities"] = [e for e in entities if e is not gone]  # a day of one removal: no newer edit
    path.write_text(json.dumps(export), encoding="utf-8")

    with pytest.raises(SnapshotRefused, match=r"content differs \(\d+ changes against latest\)") as refused:
        apply_snapshot(spark, config, "opais", str(path))
    assert str(refused.value.day) == newest[:10]
    # Logged, and pending: the retry of the run (the file is in its checkpoint) must fail too, until a newer day.
    refuse(spark, config, "opais", str(path), refused.value)
    assert "is still not applied" in refusals_pending(lambda: spark, config, "opais")

    # A newer export applies (and resolves the refusal); the first file again (a batch replayed after a crash) is
    # an older day's: applied.
    newer = tmp_path / "landing" / "newer" / NAME
    newer.parent.mkdir()
    write_export(newer, entities=12, seed=5, day=30)
    assert apply_snapshot(spark, config, "opais", str(newer)).status == "applied"
    assert refusals_pending(lambda: spark, config, "opais") is None
    write_export(path, entities=12, seed=5, day=0)
    assert apply_snapshot(spark, config, "opais", str(path)).status == "already_applied"


def test_exports_of_several_days_in_one_batch_apply_oldest_content_first(spark, tmp_path):
    """Found by review: HRSA names every export alike, so a backfill of two days landed at once had one sort key;
    applied in listing order, the newer day first, the older one was refused and its day never reached history.
    The batch's content-dated files are ordered by their content dates (a parse each) whatever their folders."""
    from lakehouse.runner import run_once

    config = content_dated(tmp_path)
    for folder, day in (("a-newer", 30), ("b-older", 0)):  # the path order is the wrong order
        (tmp_path / "landing" / folder).mkdir(parents=True)
        write_export(tmp_path / "landing" / folder / NAME, entities=12, seed=5, day=day)
    runs = run_once(spark, config)
    assert all(r.ok for r in runs), [r.error for r in runs]
    log = spark.read.format("delta").load(f"{config.paths.lake}/_snapshots/opais").orderBy("snapshot_date").collect()
    assert [r.status for r in log] == ["applied", "applied"]
    assert log[0].snapshot_date < log[1].snapshot_date
