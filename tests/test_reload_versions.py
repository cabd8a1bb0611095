"""A table reload's second delivery of a LOAD file name sorts after the first (found by review).

DMS "Reload table data" writes LOAD00000001.csv again under the same name. Within one open hourly folder the
landing router copies that second version to `version=<UTC yyyymmddHHMMSSffffff>-<id>/LOAD00000001.csv` beside
the first. Without a TimestampColumnName (the DMS default) and without a change-seq, a full-load row's sequence
was the file's name and the row's position only, so both deliveries gave the same sequence: a changed row was
quarantined twice as `duplicate_sequence`, a row that moved took the value of whichever load held the higher
position, and a reload applied after the load was dropped as a replay. The version folder's time now orders it.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from lakehouse.config import Config
from tests import test_deploy_lambdas as lambdas
from tests.conftest import make_config, write_dms_csv
from tests.dms_tables import read, run

# The router tests' moto setup (landing and in-process buckets, control item, dedup table).
lambda_env = lambdas.lambda_env
router = lambdas.router

FIRST = "20260401080000000000-3HL4kqtJlcpXroDTDmJ"  # a version folder as the router names it: time, then id
LATER = "20260402080000000000-0aZ9"


def defaults_config(root: Path) -> Config:
    """A MySQL-like task with the DMS defaults: no TimestampColumnName, no change-seq column."""
    table = {"primary_key": ["id"], "source": {"kind": "dms", "columns": {"id": "bigint", "name": "string"}}}
    return make_config(root, {"people": table})


def folder(config: Config, version: str | None = None) -> Path:
    path = Path(config.tables["people"].source.path)
    return path / f"version={version}" if version else path


def latest(spark, config: Config) -> dict[int, str]:
    return {r.id: r.name for r in read(spark, config, "latest").collect()}


def test_a_reload_in_the_same_batch_is_latest_and_nothing_is_a_duplicate_sequence(spark, tmp_path):
    """(a) A key whose row changed between the load and its reload: both rows had one sequence, both quarantined."""
    config = defaults_config(tmp_path)
    write_dms_csv(folder(config), "LOAD00000001.csv", [["1", "Ann"], ["2", "Bob"]])
    write_dms_csv(folder(config, FIRST), "LOAD00000001.csv", [["1", "Ann Reloaded"], ["2", "Bob"]])

    (batch,) = run(spark, config).batches

    assert batch.quarantine_reasons == {}
    assert latest(spark, config) == {1: "Ann Reloaded", 2: "Bob"}
    (reload,) = batch.reloaded_files  # still told as a reload against the first delivery
    assert reload.startswith("LOAD00000001.csv = batch 0, ") and reload.endswith("/people/LOAD00000001.csv")


def test_a_reload_whose_rows_moved_wins_whatever_the_positions(spark, tmp_path):
    """(b) Rows at other positions in the reload: the higher position won, so the load's stale value could."""
    config = defaults_config(tmp_path)
    write_dms_csv(folder(config), "LOAD00000001.csv", [["1", "Ann"], ["2", "Bob"]])
    write_dms_csv(folder(config, FIRST), "LOAD00000001.csv", [["2", "Bob Reloaded"], ["1", "Ann Reloaded"]])

    (batch,) = run(spark, config).batches

    assert batch.quarantine_reasons == {}
    assert latest(spark, config) == {1: "Ann Reloaded", 2: "Bob Reloaded"}


def test_a_reload_moved_to_another_load_file_wins_over_the_first_delivery(spark, tmp_path):
    """The reload's order leads the file name: a key moved from LOAD00000002 to LOAD00000001 takes the reload's."""
    config = defaults_config(tmp_path)
    write_dms_csv(folder(config), "LOAD00000001.csv", [["1", "Ann"]])
    write_dms_csv(folder(config), "LOAD00000002.csv", [["2", "Bob"]])
    write_dms_csv(folder(config, FIRST), "LOAD00000001.csv", [["2", "Bob Reloaded"], ["1", "Ann"]])

    run(spark, config)

    assert latest(spark, config) == {1: "Ann", 2: "Bob Reloaded"}


def test_later_versions_win_in_the_order_of_their_times_not_their_ids(spark, tmp_path):
    config = defaults_config(tmp_path)
    write_dms_csv(folder(config), "LOAD00000001.csv", [["1", "Ann"]])
    write_dms_csv(folder(config, "20260403080000000000-AAAA"), "LOAD00000001.csv", [["1", "Ann third"]])
    write_dms_csv(folder(config, "20260402080000000000-ZZZZ"), "LOAD00000001.csv", [["1", "Ann second"]])

    (batch,) = run(spark, config).batches

    assert batch.quarantine_reasons == {}
    assert latest(spark, config) == {1: "Ann third"}
    history = read(spark, config, "history").orderBy("_sequence").collect()
    assert [r.name for r in history] == ["Ann", "Ann second", "Ann third"]


def test_a_reload_applied_after_its_load_is_a_new_version_not_a_replay(spark, tmp_path):
    """Across batches the reload's rows had the applied rows' sequences: planned as replays and dropped."""
    config = defaults_config(tmp_path)
    write_dms_csv(folder(config), "LOAD00000001.csv", [["1", "Ann"], ["2", "Bob"]])
    run(spark, config)
    write_dms_csv(folder(config, LATER), "LOAD00000001.csv", [["1", "Ann Reloaded"], ["2", "Bob"]])

    (batch,) = run(spark, config).batches

    assert latest(spark, config) == {1: "Ann Reloaded", 2: "Bob"}
    assert (batch.applied, batch.replayed) == (1, 0)  # Ann's new version; Bob's row changes nothing
    assert [r.startswith("LOAD00000001.csv = batch 0, ") for r in batch.reloaded_files] == [True]


def test_a_cdc_file_delivered_again_in_a_version_folder_is_a_replay_not_new_versions(spark, tmp_path):
    """Found by review: a CDC file's second delivery (the router's version folder) took `~<time>/<name>` as its file
    part, so its rows, already applied, were new versions (history B, C, B, C, D for B, C, D)."""
    config = defaults_config(tmp_path)
    write_dms_csv(folder(config), "LOAD00000001.csv", [["1", "Ann"]])
    run(spark, config)
    write_dms_csv(folder(config), "20260301-0900000000.csv", [["U", "1", "B"], ["U", "1", "C"]])
    run(spark, config)
    again = [["U", "1", "B"], ["U", "1", "C"], ["U", "1", "D"]]
    write_dms_csv(folder(config, LATER), "20260301-0900000000.csv", again)

    (batch,) = run(spark, config).batches

    assert (batch.applied, batch.replayed, batch.replay_conflicts) == (1, 2, 0)
    history = read(spark, config, "history").orderBy("_sequence").collect()
    assert [r.name for r in history] == ["Ann", "B", "C", "D"]
    assert latest(spark, config) == {1: "D"}


def test_a_plain_load_files_sequence_is_as_it_was(spark, tmp_path):
    """Files outside a version folder keep today's sequence exactly (tables already applied keep their order), and
    so does a version folder of the router's earlier form (`version=<id>`, no time): it cannot be ordered."""
    config = defaults_config(tmp_path)
    write_dms_csv(folder(config), "LOAD00000001.csv", [["1", "Ann"]])
    write_dms_csv(folder(config, "3HL4kqtJlcpXroDTDmJ"), "LOAD00000002.csv", [["2", "Bob"]])
    write_dms_csv(folder(config, LATER), "LOAD00000003.csv", [["3", "Cy"]])

    run(spark, config)

    sequences = {r.id: r._sequence for r in read(spark, config, "latest").collect()}
    head = "0-19700101000000000000-" + "0" * 35 + "-"
    assert sequences == {
        1: head + "LOAD00000001.csv".ljust(48) + "-000000000000",
        2: head + "LOAD00000002.csv".ljust(48) + "-000000000000",
        3: head + f"~{LATER[:20]}/LOAD00000003.csv".ljust(48) + "-000000000000",
    }


def test_the_router_names_a_second_version_by_its_time_so_versions_sort_in_time_order(router: dict) -> None:
    """(c) The router's folder for a new version of a key already in the open folder: `version=<UTC time>-<id>`,
    the time the source's LastModified, so the folders' names sort as the versions were written."""
    key = "dms/cpap/patients/LOAD00000001.csv"
    puts = []
    for body in (b"1,Ada\n", b"1,Ada Lovelace\n", b"1,Ada King\n"):
        if puts:
            time.sleep(1.1)  # S3's LastModified is to the second
        puts.append(lambdas.land(router, key, body))
        router["module"].handler(lambdas.s3_notification((router["landing"], key, puts[-1])), None)

    folder = "dms/p_date=2026-11-23/p_hour=09/cpap/patients"
    keys = lambdas.target_keys(router)
    assert len(keys) == 3 and keys[0] == f"{folder}/LOAD00000001.csv"
    s3 = router["s3"]
    for put, copied in zip(puts[1:], keys[1:], strict=True):
        modified = s3.head_object(Bucket=router["landing"], Key=key, VersionId=put["VersionId"])["LastModified"]
        stamp = modified.astimezone(UTC).strftime("%Y%m%d%H%M%S%f")
        assert copied == f"{folder}/version={stamp}-{put['VersionId']}/LOAD00000001.csv"
        assert re.fullmatch(r"version=\d{20}-[A-Za-z0-9._-]+", copied.split("/")[-2])
    bodies = [s3.get_object(Bucket=router["target"], Key=k)["Body"].read() for k in keys]
    assert bodies == [b"1,Ada\n", b"1,Ada Lovelace\n", b"1,Ada King\n"]  # the listing's order is the time order


def test_the_version_folders_time_is_utc_to_the_microsecond(router: dict) -> None:
    beside = router["module"].version_beside
    when = datetime(2026, 4, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))  # 10:00 UTC
    nested = beside("dms/t/LOAD00000001.csv", "a/b+c", when)
    assert nested == "dms/t/version=20260401100000123456-a_b_c/LOAD00000001.csv"
    assert beside("LOAD00000001.csv", "v1", when) == "version=20260401100000123456-v1/LOAD00000001.csv"


def test_an_older_versions_event_after_a_newer_ones_still_lands_the_versions_in_their_order(
    router: dict, caplog
) -> None:
    """Found by review: the newer version's event handled first put it under the plain name, and the older one went
    to a version folder, whose rows sort after: the stale load won. The newer one now sees the older version in the
    landing bucket and goes to its version folder; the older one takes the plain name."""
    key = "dms/cpap/patients/LOAD00000001.csv"
    old = lambdas.land(router, key, b"1,Ada\n")
    time.sleep(1.1)
    new = lambdas.land(router, key, b"1,Ada Lovelace\n")
    with caplog.at_level(logging.WARNING, logger="lakehouse.landing_router"):
        router["module"].handler(lambdas.s3_notification((router["landing"], key, new)), None)
        router["module"].handler(lambdas.s3_notification((router["landing"], key, old)), None)
        router["module"].handler(lambdas.s3_notification((router["landing"], key, old)), None)  # redelivered

    folder = "dms/p_date=2026-11-23/p_hour=09/cpap/patients"
    written = router["s3"].head_object(Bucket=router["landing"], Key=key, VersionId=new["VersionId"])
    stamp = written["LastModified"].astimezone(UTC).strftime("%Y%m%d%H%M%S%f")
    beside = f"{folder}/version={stamp}-{new['VersionId']}/LOAD00000001.csv"
    assert lambdas.target_keys(router) == [f"{folder}/LOAD00000001.csv", beside]
    body = {
        k: router["s3"].get_object(Bucket=router["target"], Key=k)["Body"].read() for k in lambdas.target_keys(router)
    }
    assert body == {f"{folder}/LOAD00000001.csv": b"1,Ada\n", beside: b"1,Ada Lovelace\n"}
    assert not [m for m in caplog.messages if "older_version_after_newer" in m]


def test_a_partitioned_parallel_load_is_not_a_reload_of_itself(spark, tmp_path):
    """Found by review: a partitioned parallel load writes LOAD00000001.csv into the folder of every partition, and the
    ledger told reloads by the file's name alone: p2's file was reported as a reload of p1's (a warning, and a run
    note telling the operator to rebuild the table)."""
    config = defaults_config(tmp_path)
    write_dms_csv(folder(config) / "p2026_01", "LOAD00000001.csv", [["1", "Ann"]])
    write_dms_csv(folder(config) / "p2026_02", "LOAD00000001.csv", [["2", "Bob"]])
    (first,) = run(spark, config).batches
    write_dms_csv(folder(config) / "p2026_03", "LOAD00000001.csv", [["3", "Cy"]])  # a partition loaded later
    (second,) = run(spark, config).batches

    assert (first.reloaded_files, second.reloaded_files) == ([], [])
    assert latest(spark, config) == {1: "Ann", 2: "Bob", 3: "Cy"}


def test_a_reload_of_one_partition_or_of_a_date_folder_is_still_told(spark, tmp_path):
    config = defaults_config(tmp_path)
    write_dms_csv(folder(config) / "p2026_01", "LOAD00000001.csv", [["1", "Ann"]])
    write_dms_csv(folder(config) / "p2026_02", "LOAD00000001.csv", [["2", "Bob"]])
    write_dms_csv(folder(config) / "2026" / "04" / "01", "LOAD00000002.csv", [["4", "Dee"]])  # DatePartitionEnabled
    run(spark, config)
    write_dms_csv(folder(config) / "p2026_02" / f"version={LATER}", "LOAD00000001.csv", [["2", "Bob Reloaded"]])
    write_dms_csv(folder(config) / "2026" / "04" / "02", "LOAD00000002.csv", [["4", "Dee Reloaded"]])

    (batch,) = run(spark, config).batches

    told = dict(reload.split(" = ") for reload in batch.reloaded_files)
    assert sorted(told) == ["LOAD00000001.csv", "LOAD00000002.csv"]
    assert told["LOAD00000001.csv"].startswith("batch 0, ") and told["LOAD00000001.csv"].endswith(
        "/people/p2026_02/LOAD00000001.csv"
    )
    assert told["LOAD00000002.csv"].endswith("/people/2026/04/01/LOAD00000002.csv")


def test_two_load_files_are_one_file_of_the_table_by_name_and_folder_whatever_folders_delivered_them():
    from lakehouse.apply.ledger import same_load_file

    hour = "s3://in-process/dms/p_date=2026-11-23/p_hour={}/cpap/patients/{}"
    assert same_load_file(hour.format("09", "LOAD00000001.csv"), hour.format("10", "LOAD00000001.csv"))
    assert same_load_file(
        hour.format("09", "p1/LOAD00000001.csv"), hour.format("09", f"p1/version={LATER}/LOAD00000001.csv")
    )
    assert same_load_file("/l/people/2026/04/01/LOAD00000001.csv", "/l/people/20260402/LOAD00000001.csv")
    assert same_load_file("/l/people/LOAD00000001.csv", "/l/people/p1/LOAD00000001.csv")  # the table loaded again
    assert not same_load_file(hour.format("09", "p1/LOAD00000001.csv"), hour.format("10", "p2/LOAD00000001.csv"))
    assert not same_load_file("/l/people/LOAD00000001.csv", "/l/people/LOAD00000002.csv")
