"""The two Lambda handlers against a moto server over real HTTP: routing, snapshot trigger, idempotency."""

from __future__ import annotations

import importlib
import sys
import uuid
from datetime import UTC
from pathlib import Path
from urllib.parse import quote_plus

import boto3
import pytest

LAMBDAS = Path(__file__).resolve().parents[1] / "deploy" / "lambdas"
REGION = "us-east-1"


@pytest.fixture
def lambda_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Fake credentials and every boto3 client of the handlers pointed at the moto server."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_server,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(LAMBDAS))
    for module in ("landing_router", "snapshot_trigger"):
        if module in sys.modules:
            sys.modules[module]._clients.cache_clear()
    return moto_server


def client(service: str, endpoint: str):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# Event shapes as AWS documents them (S3 event notification 2.1; EventBridge "Object Created").
def s3_notification(*objects: tuple[str, str, dict]) -> dict:
    """objects: (bucket, key as stored, put_object response); the key is URL-encoded as S3 does."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": "2026-11-23T10:15:00.000Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:AIDAEXAMPLE:dms"},
                "requestParameters": {"sourceIPAddress": "10.0.0.1"},
                "responseElements": {
                    "x-amz-request-id": "C3D13FE58DE4C810",
                    "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "landing-router",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": 1024,
                        "eTag": put["ETag"].strip('"'),
                        **({"versionId": put["VersionId"]} if put.get("VersionId") else {}),
                        "sequencer": "0055AED6DCD90281E5",
                    },
                },
            }
            for bucket, key, put in objects
        ]
    }


def eventbridge_object_created(bucket: str, key: str, put: dict) -> dict:
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-23T10:15:00Z",
        "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": quote_plus(key, safe="/"),
                "size": 5,
                "etag": put["ETag"].strip('"'),
                **({"version-id": put["VersionId"]} if put.get("VersionId") else {}),
                "sequencer": "617f08299329d189",
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "source-ip-address": "1.2.3.4",
            "reason": "PutObject",
        },
    }


def versioned_bucket(s3, name: str) -> str:
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def dedup_table(dynamodb) -> str:
    name = unique("dedup")
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


# ---------------------------------------------------------------------------------------------- router


@pytest.fixture
def router(lambda_env: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Landing and in-process buckets, a control item at 2026-11-23 hour 09, the router's environment."""
    s3, dynamodb = client("s3", lambda_env), client("dynamodb", lambda_env)
    landing, target = versioned_bucket(s3, unique("landing")), versioned_bucket(s3, unique("inprocess"))
    control = unique("control")
    dynamodb.create_table(
        TableName=control,
        KeySchema=[{"AttributeName": "pipeline", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pipeline", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(
        TableName=control, Item={"pipeline": {"S": "cpap"}, "p_date": {"S": "2026-11-23"}, "p_hour": {"S": "09"}}
    )
    env = {
        "CONTROL_TABLE": control,
        "PIPELINE": "cpap",
        "TARGET_BUCKET": target,
        "TARGET_PREFIX": "dms",
        "SOURCE_PREFIX": "dms/",
        "DEDUP_TABLE": dedup_table(dynamodb),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    module = importlib.import_module("landing_router")
    module._clients.cache_clear()
    return {"module": module, "s3": s3, "dynamodb": dynamodb, "landing": landing, "target": target, **env}


def land(ctx: dict, key: str, body: bytes = b"I,2026-11-23 09:00:01,1,Ada\n") -> dict:
    return ctx["s3"].put_object(Bucket=ctx["landing"], Key=key, Body=body, ContentType="text/csv")


def target_keys(ctx: dict) -> list[str]:
    listed = ctx["s3"].list_object_versions(Bucket=ctx["target"]).get("Versions", [])
    return sorted(v["Key"] for v in listed)


def test_router_copies_every_record_into_the_hour_folder_of_the_control_item(router: dict) -> None:
    a = land(router, "dms/cpap/patients/LOAD00000001.csv")
    b = land(router, "dms/cpap/devices/20261123-091500123.csv")
    event = s3_notification(
        (router["landing"], "dms/cpap/patients/LOAD00000001.csv", a),
        (router["landing"], "dms/cpap/devices/20261123-091500123.csv", b),
    )

    result = router["module"].handler(event, None)

    assert [r["outcome"] for r in result["routed"]] == ["copied", "copied"]
    assert target_keys(router) == [
        "dms/p_date=2026-11-23/p_hour=09/cpap/devices/20261123-091500123.csv",
        "dms/p_date=2026-11-23/p_hour=09/cpap/patients/LOAD00000001.csv",
    ]
    copied = router["s3"].get_object(
        Bucket=router["target"], Key="dms/p_date=2026-11-23/p_hour=09/cpap/patients/LOAD00000001.csv"
    )
    assert copied["Body"].read() == b"I,2026-11-23 09:00:01,1,Ada\n"
    assert copied["ContentType"] == "text/csv"
    assert copied["Metadata"]["source-etag"] == a["ETag"].strip('"')


def test_router_accepts_the_eventbridge_object_created_shape(router: dict) -> None:
    put = land(router, "dms/cpap/therapy_sessions/20261123-091501000.csv")
    event = eventbridge_object_created(router["landing"], "dms/cpap/therapy_sessions/20261123-091501000.csv", put)

    router["module"].handler(event, None)

    assert target_keys(router) == ["dms/p_date=2026-11-23/p_hour=09/cpap/therapy_sessions/20261123-091501000.csv"]


def test_router_redelivery_copies_to_the_same_key_once_even_after_the_hour_moved_on(router: dict) -> None:
    put = land(router, "dms/cpap/patients/20261123-091700000.csv")
    event = s3_notification((router["landing"], "dms/cpap/patients/20261123-091700000.csv", put))
    router["module"].handler(event, None)
    router["dynamodb"].put_item(
        TableName=router["CONTROL_TABLE"],
        Item={"pipeline": {"S": "cpap"}, "p_date": {"S": "2026-11-23"}, "p_hour": {"N": "10"}},
    )

    again = router["module"].handler(event, None)

    assert again["routed"][0]["outcome"] == "already there"
    assert target_keys(router) == ["dms/p_date=2026-11-23/p_hour=09/cpap/patients/20261123-091700000.csv"]


def test_router_keeps_each_version_of_a_key_rewritten_while_its_folder_is_open(router: dict) -> None:
    """Found by review: DMS rewrites LOAD files under their first names on a reload. The new version was copied over
    the first (the stream, which knows files by path, never read it), and a late redelivery of the first version
    copied that back over the reload."""
    key = "dms/cpap/patients/LOAD00000001.csv"
    first = land(router, key, b"I,2026-11-23 09:00:01,1,Ada\n")
    router["module"].handler(s3_notification((router["landing"], key, first)), None)
    reload = land(router, key, b"I,2026-11-23 09:30:00,1,Ada Lovelace\n")
    router["module"].handler(s3_notification((router["landing"], key, reload)), None)
    router["module"].handler(s3_notification((router["landing"], key, first)), None)  # late, redelivered

    folder = "dms/p_date=2026-11-23/p_hour=09/cpap/patients"
    written = router["s3"].head_object(Bucket=router["landing"], Key=key, VersionId=reload["VersionId"])
    stamp = written["LastModified"].astimezone(UTC).strftime("%Y%m%d%H%M%S%f")  # the folder sorts by time, then id
    beside = f"{folder}/version={stamp}-{reload['VersionId']}/LOAD00000001.csv"
    assert target_keys(router) == sorted([f"{folder}/LOAD00000001.csv", beside])
    body = {k: router["s3"].get_object(Bucket=router["target"], Key=k)["Body"].read() for k in target_keys(router)}
    assert body == {
        f"{folder}/LOAD00000001.csv": b"I,2026-11-23 09:00:01,1,Ada\n",
        beside: b"I,2026-11-23 09:30:00,1,Ada Lovelace\n",
    }
    listed = router["s3"].list_object_versions(Bucket=router["target"]).get("Versions", [])
    assert len(listed) == 2  # nothing was copied over another version


def test_router_puts_a_reload_landing_after_its_loads_folder_closed_in_a_version_folder(router: dict) -> None:
    """Found by review: a reload in a later hourly folder kept its plain name, so without a timestamp column its rows
    took the first load's sequences (quarantined as ties, or read as replays). A CDC file, never rewritten, is not
    listed for versions."""
    key = "dms/cpap/patients/LOAD00000001.csv"
    first = land(router, key, b"I,2026-11-23 09:00:01,1,Ada\n")
    router["module"].handler(s3_notification((router["landing"], key, first)), None)
    router["dynamodb"].put_item(
        TableName=router["CONTROL_TABLE"],
        Item={"pipeline": {"S": "cpap"}, "p_date": {"S": "2026-11-23"}, "p_hour": {"S": "10"}},
    )
    reload = land(router, key, b"I,2026-11-23 10:30:00,1,Ada Lovelace\n")
    router["module"].handler(s3_notification((router["landing"], key, reload)), None)
    cdc = "dms/cpap/patients/20261123-103100000.csv"
    router["module"].handler(s3_notification((router["landing"], cdc, land(router, cdc))), None)

    written = router["s3"].head_object(Bucket=router["landing"], Key=key, VersionId=reload["VersionId"])
    stamp = written["LastModified"].astimezone(UTC).strftime("%Y%m%d%H%M%S%f")
    assert target_keys(router) == [
        "dms/p_date=2026-11-23/p_hour=09/cpap/patients/LOAD00000001.csv",
        "dms/p_date=2026-11-23/p_hour=10/cpap/patients/20261123-103100000.csv",
        f"dms/p_date=2026-11-23/p_hour=10/cpap/patients/version={stamp}-{reload['VersionId']}/LOAD00000001.csv",
    ]


@pytest.mark.parametrize("name", ["LOAD0000000A.csv", "SEGMENT2_LOAD00000001.csv", "p2026_03/LOAD00000010.csv"])
def test_router_versions_a_reload_of_any_dms_load_name_landing_after_its_folder_closed(router: dict, name: str) -> None:
    """Found by review: the router knew load files as LOAD<decimal digits>, so a reload of LOAD0000000A.csv (DMS counts
    load files in hexadecimal) or SEGMENT2_LOAD00000001.csv in a later folder kept its plain name and took the first
    load's sequences."""
    key = f"dms/cpap/patients/{name}"
    first = land(router, key, b"1,Ada\n")
    router["module"].handler(s3_notification((router["landing"], key, first)), None)
    router["dynamodb"].put_item(
        TableName=router["CONTROL_TABLE"],
        Item={"pipeline": {"S": "cpap"}, "p_date": {"S": "2026-11-23"}, "p_hour": {"S": "10"}},
    )
    reload = land(router, key, b"1,Ada Lovelace\n")
    router["module"].handler(s3_notification((router["landing"], key, reload)), None)

    written = router["s3"].head_object(Bucket=router["landing"], Key=key, VersionId=reload["VersionId"])
    stamp = written["LastModified"].astimezone(UTC).strftime("%Y%m%d%H%M%S%f")
    folder, _, file = f"cpap/patients/{name}".rpartition("/")
    assert target_keys(router) == [
        f"dms/p_date=2026-11-23/p_hour=09/cpap/patients/{name}",
        f"dms/p_date=2026-11-23/p_hour=10/{folder}/version={stamp}-{reload['VersionId']}/{file}",
    ]


# Names DMS writes into a table's folder, and others: the router and the engine must take the same ones as loads.
NAMES = [
    "LOAD00000001.csv", "LOAD00000009.csv", "LOAD0000000A.csv", "LOAD0000000F.parquet", "LOAD00000010.csv.gz",
    "load0000000b.csv", "SEGMENT1_LOAD00000001.csv", "SEGMENT3_LOAD0000000A.csv", "SEGMENT12_LOAD00000002.parquet",
    "LOAD_1_00000001.csv", "20261123-091500123.csv", "20141029-1134010000.csv", "LOAD 0001+extra.csv", "LOADER.csv",
    "LOAD.csv", "SEGMENTA_LOAD00000001.csv", "x_LOAD00000001.csv", "LOAD00000001", "CDC_TXN-20201117153046033.csv",
]  # fmt: skip


def test_router_and_engine_agree_on_which_names_are_full_load_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Lambda is packaged without lakehouse, so it holds a copy of the engine's matcher."""
    from lakehouse.sources import dms_files

    monkeypatch.syspath_prepend(str(LAMBDAS))
    module = importlib.import_module("landing_router")

    assert module.LOAD_NAME.pattern == dms_files.LOAD_NAME.pattern
    assert module.LOAD_NAME.flags == dms_files.LOAD_NAME.flags
    for folder in ("dms/cpap/patients/", "dms/cpap/patients/p2026_03/", ""):
        router = [n for n in NAMES if module._is_load_file(folder + n)]
        engine = [n for n in NAMES if dms_files.is_load_file(f"s3://landing/{folder}{n}")]
        assert router == engine
    assert len(router) == 10


def test_router_recopies_a_destination_lost_after_the_first_delivery(router: dict) -> None:
    put = land(router, "dms/cpap/devices/20261123-092000000.csv")
    event = s3_notification((router["landing"], "dms/cpap/devices/20261123-092000000.csv", put))
    router["module"].handler(event, None)
    destination = "dms/p_date=2026-11-23/p_hour=09/cpap/devices/20261123-092000000.csv"
    router["s3"].delete_object(Bucket=router["target"], Key=destination)

    again = router["module"].handler(event, None)

    assert again["routed"][0]["outcome"] == "copied"
    assert router["s3"].head_object(Bucket=router["target"], Key=destination)["ContentLength"] > 0


def test_router_decodes_url_encoded_keys_with_spaces_and_plus_signs(router: dict) -> None:
    key = "dms/cpap/patients/LOAD 0001+extra.csv"
    put = land(router, key)
    event = s3_notification((router["landing"], key, put))
    assert event["Records"][0]["s3"]["object"]["key"] == "dms/cpap/patients/LOAD+0001%2Bextra.csv"

    router["module"].handler(event, None)

    assert target_keys(router) == ["dms/p_date=2026-11-23/p_hour=09/cpap/patients/LOAD 0001+extra.csv"]


def test_router_falls_back_to_the_key_as_written_for_a_sender_that_did_not_encode_it(router: dict) -> None:
    key = "dms/cpap/patients/a+b.csv"
    put = land(router, key)
    event = eventbridge_object_created(router["landing"], key, put)
    event["detail"]["object"]["key"] = key  # plain: unquote_plus would read "a b.csv"

    router["module"].handler(event, None)

    assert target_keys(router) == ["dms/p_date=2026-11-23/p_hour=09/cpap/patients/a+b.csv"]


def test_router_skips_objects_outside_the_source_prefix(router: dict) -> None:
    put = land(router, "opais/340b/export.zip")
    result = router["module"].handler(s3_notification((router["landing"], "opais/340b/export.zip", put)), None)

    assert result["routed"][0]["outcome"] == "skipped"
    assert target_keys(router) == []


@pytest.mark.parametrize(
    ("event", "says"),
    [
        ({}, "unrecognised event with keys []"),
        ({"Records": []}, "empty Records list"),
        ({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}, "Records[0] is not an S3 record"),
        ({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete", "s3": {}}]}, "ObjectRemoved"),
        (
            {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {}, "object": {"key": "k"}}},
            "detail.bucket.name",
        ),
        ("not an event", "of type str"),
    ],
)
def test_router_rejects_other_event_shapes_saying_what_it_expected(router: dict, event: object, says: str) -> None:
    with pytest.raises(ValueError, match=r"expected|ObjectCreated") as raised:
        router["module"].handler(event, None)
    assert says in str(raised.value)


def test_router_without_a_control_item_names_the_item_and_what_to_do(router: dict) -> None:
    router["dynamodb"].delete_item(TableName=router["CONTROL_TABLE"], Key={"pipeline": {"S": "cpap"}})
    put = land(router, "dms/cpap/patients/20261123-093000000.csv")

    with pytest.raises(router["module"].ControlItemError, match="no control item pipeline='cpap'") as raised:
        router["module"].handler(
            s3_notification((router["landing"], "dms/cpap/patients/20261123-093000000.csv", put)), None
        )

    assert router["CONTROL_TABLE"] in str(raised.value)
    assert "first job" in str(raised.value)
    assert target_keys(router) == []


def test_router_rejects_a_malformed_control_item(router: dict) -> None:
    router["dynamodb"].put_item(
        TableName=router["CONTROL_TABLE"],
        Item={"pipeline": {"S": "cpap"}, "p_date": {"S": "2026-11-23"}, "p_hour": {"S": "25"}},
    )
    put = land(router, "dms/cpap/patients/x.csv")

    with pytest.raises(router["module"].ControlItemError, match="p_hour must be an hour 0-23"):
        router["module"].handler(s3_notification((router["landing"], "dms/cpap/patients/x.csv", put)), None)


def test_router_names_a_missing_environment_variable(router: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TARGET_BUCKET")
    put = land(router, "dms/cpap/patients/y.csv")

    with pytest.raises(RuntimeError, match="TARGET_BUCKET is not set"):
        router["module"].handler(s3_notification((router["landing"], "dms/cpap/patients/y.csv", put)), None)


def test_router_ignores_the_s3_test_event(router: dict) -> None:
    event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-23T10:00:00.000Z", "Bucket": "b"}
    assert router["module"].handler(event, None) == {"routed": []}


# ------------------------------------------------------------------------------------- snapshot trigger


@pytest.fixture
def trigger(lambda_env: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A landing bucket, the snapshot-load Glue job in moto, the trigger's environment."""
    s3, glue, dynamodb = client("s3", lambda_env), client("glue", lambda_env), client("dynamodb", lambda_env)
    landing = versioned_bucket(s3, unique("landing"))
    job = unique("snapshot-load")
    env = {"GLUE_JOB_NAME": job, "SNAPSHOT_PREFIX": "opais/340b/", "DEDUP_TABLE": dedup_table(dynamodb)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    module = importlib.import_module("snapshot_trigger")
    module._clients.cache_clear()
    ctx = {"module": module, "s3": s3, "glue": glue, "dynamodb": dynamodb, "landing": landing, **env}
    create_job(ctx)
    return ctx


def create_job(ctx: dict) -> None:
    ctx["glue"].create_job(
        Name=ctx["GLUE_JOB_NAME"],
        Role="arn:aws:iam::123456789012:role/lakehouse-test-glue",
        Command={
            "Name": "glueetl",
            "ScriptLocation": "s3://artifacts/jobs/batch/snapshot_load.py",
            "PythonVersion": "3",
        },
        GlueVersion="5.0",
        ExecutionProperty={"MaxConcurrentRuns": 1},
    )


def runs(ctx: dict) -> list[dict]:
    return ctx["glue"].get_job_runs(JobName=ctx["GLUE_JOB_NAME"])["JobRuns"]


def export(ctx: dict, key: str) -> dict:
    return ctx["s3"].put_object(Bucket=ctx["landing"], Key=key, Body=b'{"coveredEntities": []}')


def test_trigger_starts_the_snapshot_job_with_bucket_and_key(trigger: dict) -> None:
    key = "opais/340b/OPA_CE_DAILY_PUBLIC_2026-11-23.json"
    event = eventbridge_object_created(trigger["landing"], key, export(trigger, key))

    result = trigger["module"].handler(event, None)

    assert result["snapshots"][0]["outcome"] == "started"
    [run] = runs(trigger)
    assert run["Id"] == result["snapshots"][0]["job_run_id"]
    assert run["Arguments"] == {"--bucket": trigger["landing"], "--key": key}


def test_trigger_redelivered_event_starts_no_second_run(trigger: dict) -> None:
    key = "opais/340b/OPA_CE_DAILY_PUBLIC_2026-11-24.zip"
    event = eventbridge_object_created(trigger["landing"], key, export(trigger, key))
    first = trigger["module"].handler(event, None)

    again = trigger["module"].handler(event, None)

    assert again["snapshots"][0] == {
        "source": f"s3://{trigger['landing']}/{key}",
        "outcome": "already started",
        "job_run_id": first["snapshots"][0]["job_run_id"],
    }
    assert len(runs(trigger)) == 1


def test_trigger_a_new_version_of_the_same_key_is_a_new_snapshot(trigger: dict) -> None:
    key = "opais/340b/latest.json"
    trigger["module"].handler(eventbridge_object_created(trigger["landing"], key, export(trigger, key)), None)

    trigger["module"].handler(eventbridge_object_created(trigger["landing"], key, export(trigger, key)), None)

    assert len(runs(trigger)) == 2


@pytest.mark.parametrize(
    ("key", "reason"),
    [("opais/other/export.zip", "outside SNAPSHOT_PREFIX"), ("opais/340b/readme.txt", "not a snapshot export")],
)
def test_trigger_ignores_other_folders_and_file_types(trigger: dict, key: str, reason: str) -> None:
    result = trigger["module"].handler(eventbridge_object_created(trigger["landing"], key, export(trigger, key)), None)

    assert result["snapshots"][0]["outcome"] == "ignored"
    assert reason in result["snapshots"][0]["reason"]
    assert runs(trigger) == []


def test_trigger_decodes_url_encoded_keys(trigger: dict) -> None:
    key = "opais/340b/OPA CE export+1.JSON"
    trigger["module"].handler(s3_notification((trigger["landing"], key, export(trigger, key))), None)

    assert runs(trigger)[0]["Arguments"]["--key"] == key


def test_trigger_rejects_other_event_shapes(trigger: dict) -> None:
    event = {"source": "aws.s3", "detail-type": "Object Deleted", "detail": {}}
    with pytest.raises(ValueError, match=r"unrecognised event .* expected an S3 event notification"):
        trigger["module"].handler(event, None)


def test_trigger_releases_its_claim_when_glue_refuses_so_a_retry_starts_the_run(trigger: dict) -> None:
    trigger["glue"].delete_job(JobName=trigger["GLUE_JOB_NAME"])
    key = "opais/340b/OPA_CE_DAILY_PUBLIC_2026-11-25.json"
    event = eventbridge_object_created(trigger["landing"], key, export(trigger, key))

    with pytest.raises(trigger["module"].SnapshotStartError, match="claim was released"):
        trigger["module"].handler(event, None)
    create_job(trigger)
    retried = trigger["module"].handler(event, None)

    assert retried["snapshots"][0]["outcome"] == "started"
    assert len(runs(trigger)) == 1
