"""The hand-off of the landing router's hourly folders: a run-once job reads the closed folders only.

The glob of closed folders is checked against the order it stands for, on any two folders (Hypothesis), and a
real `run_once` with the control item on a moto server reads what landed before the open folder and leaves
the open folder's files for the run after the item moved on.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from lakehouse.config import Config
from lakehouse.handoff import closed_folders, closed_source_path
from lakehouse.runner import run_once
from tests.conftest import make_config, write_dms_csv
from tests.dms_tables import PEOPLE, seq
from tests.test_deploy_config import hadoop_glob_matches

folders = st.tuples(st.dates(dt.date(1990, 1, 1), dt.date(2100, 12, 31)), st.integers(0, 23))


def folder(day: dt.date, hour: int) -> str:
    return f"p_date={day.isoformat()}/p_hour={hour:02d}"  # as the landing router names it


@given(folders, folders)
@example((dt.date(2026, 11, 23), 9), (dt.date(2026, 11, 23), 9))  # the open folder itself
@example((dt.date(2026, 11, 22), 23), (dt.date(2026, 11, 23), 0))  # the hour before midnight
@example((dt.date(2026, 1, 9), 0), (dt.date(2026, 1, 10), 0))  # a digit that carries
def test_the_closed_folders_glob_matches_exactly_the_folders_before_the_open_one(landed, open_) -> None:
    glob = closed_folders(open_[0].isoformat(), f"{open_[1]:02d}")
    assert hadoop_glob_matches(f"dms/{glob}/cpap/t", f"dms/{folder(*landed)}/cpap/t") == (landed < open_)


def handoff_config(root: Path, aws) -> Config:
    dynamodb = aws.client("dynamodb")
    dynamodb.create_table(
        TableName="lakehouse-test-control",
        KeySchema=[{"AttributeName": "pipeline", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pipeline", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    table = copy.deepcopy(PEOPLE)
    table["source"]["path"] = str(root / "landing" / "dms" / "p_date=*" / "p_hour=*" / "cpap" / "people")
    config = make_config(root, {"people": table})
    handoff = {"control_table": "lakehouse-test-control", "pipeline": "cpap"}
    return Config.model_validate({**config.model_dump(by_alias=True, exclude={"source_file"}), "handoff": handoff})


def move_folder(aws, p_date: str, p_hour: str) -> None:
    item = {"pipeline": {"S": "cpap"}, "p_date": {"S": p_date}, "p_hour": {"S": p_hour}}
    aws.client("dynamodb").put_item(TableName="lakehouse-test-control", Item=item)


def test_run_once_reads_the_closed_folders_and_leaves_the_open_one_for_the_next_run(
    tmp_path: Path, aws, spark, monkeypatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    config = handoff_config(tmp_path, aws)
    landing = tmp_path / "landing" / "dms"
    for hour, (key, name) in {"08": (1, "Ann"), "09": (2, "Bo")}.items():
        records = [["I", f"2026-11-23 {hour}:00:00", str(key), name, "1", seq(key), ""]]
        write_dms_csv(landing / f"p_date=2026-11-23/p_hour={hour}/cpap/people", f"2026112{key}-000000000.csv", records)
    assert closed_source_path(config.tables["people"].source.path, "2026-11-23", "09").count("{") == 1

    move_folder(aws, "2026-11-23", "09")  # 09 is open: the router still writes into it
    [first] = run_once(spark, config)
    move_folder(aws, "2026-11-23", "10")  # the next run's first step closed it
    [second] = run_once(spark, config)

    assert first.ok and second.ok, (first.error, second.error)
    assert [m.rows_read for m in first.batches] == [1] and first.batches[0].inserted == 1
    assert [m.rows_read for m in second.batches] == [1]  # only the newly closed folder, nothing twice
    latest = spark.read.format("delta").load(str(tmp_path / "lake" / "people" / "latest"))
    assert sorted(r.name for r in latest.collect()) == ["Ann", "Bo"]
