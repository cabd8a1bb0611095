"""Consent policy: build, stores (DynamoDB on moto over HTTP, local file), flags, snapshot, key loading."""

from __future__ import annotations

import json
import random
from datetime import date, datetime
from pathlib import Path

import pytest
from chispa import assert_df_equality

from lakehouse.config import load_config
from lakehouse.errors import ConfigError, InputError, RetryableError
from lakehouse.masking import MaskingKey, pseudonym
from lakehouse.policy import (
    FLAG_COL,
    FLAG_DATE_COL,
    MISSING_COL,
    DynamoDbPolicyStore,
    LocalPolicyStore,
    PolicyRow,
    PolicySnapshot,
    build_policy,
    flag_changes,
    policy_frame,
    policy_rows,
)
from lakehouse.policy.build import POLICY_SCHEMA
from lakehouse.secrets import masking_key

D = date.fromisoformat
CONSENT_SCHEMA = "pid bigint, serial string, ok string, signed_at timestamp"
KEY_TEXT = "0123456789abcdef" * 4
LOCAL_YAML = Path(__file__).resolve().parents[1] / "config" / "local.yaml"


def rows(n: int) -> list[PolicyRow]:
    return [
        PolicyRow(i // 2, None if i % 2 else f"dev-{i}", i % 3 == 0, D("2024-01-01") if i % 5 else None)
        for i in range(n)
    ]


# --- build_policy ----------------------------------------------------------------------------


def test_build_policy_keeps_the_newest_record_per_patient_and_device(spark):
    consents = spark.createDataFrame(
        [
            (1, "A", "Y", datetime(2024, 1, 1)),
            (1, "A", "N", datetime(2024, 3, 1, 8)),  # newest for (1, A): withdrawn
            (1, "A", "Y", datetime(2024, 2, 1)),
            (1, None, "Y", datetime(2024, 1, 5)),  # patient level, all devices
            (2, "B", "Y", datetime(2024, 5, 1)),
            (2, "B", "N", datetime(2024, 5, 1)),  # same instant: the refusal wins
            (3, "C", "maybe", datetime(2024, 1, 1)),  # not a yes: a refusal
            (4, "D", "Y", None),
            (4, "D", "N", datetime(2023, 1, 1)),  # a dated record beats an undated one
            (None, "E", "Y", datetime(2024, 1, 1)),  # no patient: dropped
        ],
        CONSENT_SCHEMA,
    )
    policy = build_policy(consents, patient_col="pid", device_col="serial", allowed_col="ok", date_col="signed_at")
    expected = spark.createDataFrame(
        [
            (1, "A", False, D("2024-03-01")),
            (1, None, True, D("2024-01-05")),
            (2, "B", False, D("2024-05-01")),
            (3, "C", False, D("2024-01-01")),
            (4, "D", False, D("2023-01-01")),
        ],
        POLICY_SCHEMA,
    )
    assert_df_equality(policy, expected, ignore_row_order=True, ignore_nullable=True)


def test_build_policy_a_refusal_without_a_date_wins_and_a_grant_without_one_loses_to_every_dated_record(spark):
    """Found by review: a record without a date ranked as the oldest, so a withdrawal whose date was missing lost to
    any dated grant and the patient stayed allowed: more permissive than the input. An undated refusal may be the
    newest record: it wins over every grant of its scope. An undated grant cannot say from when: it loses."""
    consents = spark.createDataFrame(
        [
            (5, None, "Y", datetime(2024, 1, 1)),
            (5, None, "N", None),  # withdrawn, the date missing: withdrawn
            (6, "F", "Y", datetime(2024, 6, 1)),
            (6, "F", "Y", None),
            (6, "F", None, None),  # not a yes, undated: a refusal that wins
            (7, None, "Y", None),
            (7, None, "Y", datetime(2024, 2, 1)),  # the dated grant wins over the undated one
            (8, "G", "Y", None),  # only an undated grant: kept as it is, and admits nothing (flag_changes)
        ],
        CONSENT_SCHEMA,
    )
    policy = build_policy(consents, patient_col="pid", device_col="serial", allowed_col="ok", date_col="signed_at")
    expected = spark.createDataFrame(
        [
            (5, None, False, None),
            (6, "F", False, None),
            (7, None, True, D("2024-02-01")),
            (8, "G", True, None),
        ],
        POLICY_SCHEMA,
    )
    assert_df_equality(policy, expected, ignore_row_order=True, ignore_nullable=True)


def test_build_policy_without_a_device_column_gives_patient_level_rows(spark):
    consents = spark.createDataFrame(
        [("7", True, "2024-02-03"), ("7", False, "2024-01-01")], "p string, a boolean, d string"
    )
    policy = build_policy(consents, patient_col="p", device_col=None, allowed_col="a", date_col="d")
    expected = spark.createDataFrame([(7, None, True, D("2024-02-03"))], POLICY_SCHEMA)
    assert_df_equality(policy, expected, ignore_nullable=True)


def test_build_policy_names_missing_columns(spark):
    consents = spark.createDataFrame([(1,)], "pid bigint")
    with pytest.raises(ConfigError, match="signed_at"):
        build_policy(consents, patient_col="pid", device_col=None, allowed_col="pid", date_col="signed_at")


# --- flag_changes ----------------------------------------------------------------------------

POLICY = [
    PolicyRow(1, None, True, D("2024-01-01")),  # patient 1: all devices allowed...
    PolicyRow(1, "A", False, D("2024-02-01")),  # ...but device A withdrawn later
    PolicyRow(2, "B", True, D("2024-01-01")),  # patient 2: device B allowed...
    PolicyRow(2, None, False, D("2024-03-01")),  # ...then everything withdrawn
    PolicyRow(3, "C", True, D("2024-01-01")),  # patient 3: only device C
]


def test_flag_changes_newest_applicable_policy_wins_and_missing_patients_are_not_consented(spark):
    changes = spark.createDataFrame(
        [(10, 1, "A"), (11, 1, "Z"), (12, 2, "B"), (13, 3, "C"), (14, 3, "Z"), (15, 9, "A"), (16, None, "A")],
        "id int, patient bigint, device string",
    )
    flagged = flag_changes(changes, policy_frame(spark, POLICY), patient_col="patient", device_col="device")
    expected = spark.createDataFrame(
        [
            (10, 1, "A", 0, D("2024-02-01"), False),
            (11, 1, "Z", 1, D("2024-01-01"), False),
            (12, 2, "B", 0, D("2024-03-01"), False),
            (13, 3, "C", 1, D("2024-01-01"), False),
            (14, 3, "Z", 0, None, True),
            (15, 9, "A", 0, None, True),
            (16, None, "A", 0, None, True),
        ],
        f"id int, patient bigint, device string, {FLAG_COL} int, {FLAG_DATE_COL} date, {MISSING_COL} boolean",
    )
    assert_df_equality(flagged, expected, ignore_row_order=True, ignore_nullable=True)


def test_flag_changes_an_undated_refusal_wins_at_either_level_and_an_undated_grant_consents_to_nothing(spark):
    """Found by review: an undated policy row ranked as the oldest against the other level's row, and an undated
    grant flagged 1 with no date. A refusal without a date now wins over every grant, of the patient or of the
    device; a grant without a date flags 0 (it cannot say from when the patient consented)."""
    policy = [
        PolicyRow(20, None, False, None),  # patient 20 withdrew, date missing...
        PolicyRow(20, "G", True, D("2024-05-01")),  # ...over a dated grant of one device
        PolicyRow(21, None, True, D("2024-01-01")),  # patient 21 consents for all devices...
        PolicyRow(21, "H", False, None),  # ...but withdrew device H, date missing
        PolicyRow(22, None, True, None),  # an undated grant alone
        PolicyRow(23, None, True, None),  # an undated grant...
        PolicyRow(23, "K", True, D("2024-02-01")),  # ...and a dated one for device K: from its day on
    ]
    changes = spark.createDataFrame(
        [(1, 20, "G"), (2, 21, "H"), (3, 21, "Z"), (4, 22, "Z"), (5, 23, "K"), (6, 23, "Z")],
        "id int, patient bigint, device string",
    )
    flagged = flag_changes(changes, policy_frame(spark, policy), patient_col="patient", device_col="device")
    expected = spark.createDataFrame(
        [
            (1, 20, "G", 0, None, False),
            (2, 21, "H", 0, None, False),
            (3, 21, "Z", 1, D("2024-01-01"), False),
            (4, 22, "Z", 0, None, False),
            (5, 23, "K", 1, D("2024-02-01"), False),
            (6, 23, "Z", 0, None, False),
        ],
        f"id int, patient bigint, device string, {FLAG_COL} int, {FLAG_DATE_COL} date, {MISSING_COL} boolean",
    )
    assert_df_equality(flagged, expected, ignore_row_order=True, ignore_nullable=True)


def test_the_zone_admits_no_version_on_a_grant_without_a_date(spark, monkeypatch):
    """Found by review: the zone took a NULL policy date as "consented since always" and admitted every version of
    a patient with an undated grant, those from before any consent too. No date, no version."""
    from lakehouse.apply.non_phi import ADMIT, admitted

    monkeypatch.setenv("LAKEHOUSE_HOME", "/tmp/lakehouse-home")
    patients = load_config(LOCAL_YAML).tables["patients"]  # consent: {patient_column: patient_id}
    versions = spark.createDataFrame(
        [(30, datetime(2023, 6, 1)), (31, datetime(2023, 6, 1)), (31, datetime(2024, 6, 1))],
        "patient_id bigint, _valid_from timestamp",
    )
    policy = policy_frame(spark, [PolicyRow(30, None, True, None), PolicyRow(31, None, True, D("2024-01-01"))])
    rows = admitted(versions, table=patients, policy=policy, consented_only=True)
    assert sorted((r.patient_id, r._valid_from.year, r[ADMIT]) for r in rows.collect()) == [
        (30, 2023, False),
        (31, 2023, False),
        (31, 2024, True),
    ]


def test_flag_changes_without_device_uses_patient_level_rows_only_and_broadcasts(spark):
    changes = spark.createDataFrame([(1,), (2,), (3,), (3,)], "patient bigint")
    flagged = flag_changes(changes, policy_frame(spark, POLICY), patient_col="patient")
    assert sorted(tuple(r) for r in flagged.collect()) == [
        (1, 1, D("2024-01-01"), False),
        (2, 0, D("2024-03-01"), False),
        (3, 0, None, True),
        (3, 0, None, True),
    ]
    assert "BroadcastHashJoin" in flagged._jdf.queryExecution().executedPlan().toString()


def test_flag_changes_refuses_to_overwrite_existing_flag_columns(spark):
    changes = spark.createDataFrame([(1, 1)], f"patient bigint, {FLAG_COL} int")
    with pytest.raises(ConfigError, match=FLAG_COL):
        flag_changes(changes, policy_frame(spark, POLICY), patient_col="patient")


# --- DynamoDB store on the moto server ------------------------------------------------------


@pytest.fixture
def dynamo_store(aws):
    store = DynamoDbPolicyStore("policy", aws.client("dynamodb"), segments=4, page_size=7)
    assert store.create_table_if_missing() is True
    assert store.create_table_if_missing() is False
    return store


def test_dynamodb_write_then_parallel_scan_round_trips(dynamo_store):
    written = rows(60)
    stats = dynamo_store.write(written)
    assert (stats.rows, stats.requests, stats.retries) == (60, 3, 0)
    assert dynamo_store.snapshot() == sorted(
        written, key=lambda r: (r.patient_id, r.device_id is not None, r.device_id)
    )


def test_dynamodb_rewrite_is_idempotent_and_overwrites_changed_rows(dynamo_store):
    dynamo_store.write(rows(30))
    first = dynamo_store.snapshot()
    dynamo_store.write(rows(30))
    assert dynamo_store.snapshot() == first
    changed = PolicyRow(0, "dev-0", False, D("2020-01-01"))  # an older date still overwrites
    dynamo_store.write([changed])
    assert [r for r in dynamo_store.snapshot() if (r.patient_id, r.device_id) == (0, "dev-0")] == [changed]
    assert len(dynamo_store.snapshot()) == 30


class ThrottlingClient:
    """Passes calls to a real client, but on the first `throttle` writes processes only `keep` items."""

    def __init__(self, client, *, throttle: int, keep: int = 10) -> None:
        self._client = client
        self.throttle = throttle
        self.keep = keep
        self.batch_sizes: list[int] = []

    def batch_write_item(self, RequestItems):
        ((table, requests),) = RequestItems.items()
        self.batch_sizes.append(len(requests))
        if self.throttle:
            self.throttle -= 1
            kept, unprocessed = requests[: self.keep], requests[self.keep :]
            if kept:
                self._client.batch_write_item(RequestItems={table: kept})
            return {"UnprocessedItems": {table: unprocessed} if unprocessed else {}}
        return self._client.batch_write_item(RequestItems=RequestItems)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_dynamodb_write_retries_unprocessed_items_with_backoff(aws, dynamo_store):
    client = ThrottlingClient(aws.client("dynamodb"), throttle=2)
    sleeps: list[float] = []
    store = DynamoDbPolicyStore("policy", client, writers=1, sleep=sleeps.append, rng=random.Random(1))
    stats = store.write(rows(25))
    assert client.batch_sizes == [25, 15, 5]
    assert (stats.requests, stats.retries, stats.retried_rows) == (3, 2, 20)
    assert len(sleeps) == 2 and all(0 <= s <= 0.05 * 2**n for n, s in enumerate(sleeps, 1))
    assert len(store.snapshot()) == 25


def test_dynamodb_write_gives_up_after_max_retries_with_a_retryable_error(aws, dynamo_store):
    client = ThrottlingClient(aws.client("dynamodb"), throttle=100, keep=0)
    store = DynamoDbPolicyStore("policy", client, writers=1, max_retries=3, sleep=lambda s: None)
    with pytest.raises(RetryableError, match="still throttles 25 policy rows after 3 retries"):
        store.write(rows(25))
    assert client.batch_sizes == [25, 25, 25, 25]


def test_dynamodb_refuses_two_different_rows_for_one_key(dynamo_store):
    with pytest.raises(InputError, match="patient 1, device None"):
        dynamo_store.write([PolicyRow(1, None, True, None), PolicyRow(1, None, False, None)])


def test_dynamodb_missing_table_is_a_config_error(aws):
    store = DynamoDbPolicyStore("nope", aws.client("dynamodb"))
    with pytest.raises(ConfigError, match="nope does not exist"):
        store.snapshot()


def test_aws_client_honors_aws_endpoint_url_and_uses_adaptive_retries(aws, monkeypatch):
    from lakehouse.aws import client

    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    dynamodb = client("dynamodb", region="us-east-1")
    assert dynamodb.meta.endpoint_url == aws.endpoint_url
    assert dynamodb.meta.config.retries["mode"] == "adaptive"
    assert dynamodb.list_tables()["TableNames"] == []


# --- local store --------------------------------------------------------------------------


def test_local_store_round_trips_and_upserts_atomically(tmp_path):
    store = LocalPolicyStore(tmp_path / "policy")
    assert store.snapshot() == []
    store.write(rows(10))
    changed = PolicyRow(0, "dev-0", False, D("2025-01-01"))
    stats = store.write([changed])
    assert stats.rows == 1
    snapshot = store.snapshot()
    assert len(snapshot) == 10 and changed in snapshot
    assert [p.name for p in (tmp_path / "policy").iterdir()] == ["policy.jsonl"]
    assert json.loads((tmp_path / "policy" / "policy.jsonl").read_text().splitlines()[0])["patient_id"] == 0


def test_replace_removes_the_keys_a_build_no_longer_has_in_both_stores(aws, dynamo_store, tmp_path):
    """Found by review: the build only upserted, so a patient whose consent records were deleted at the source kept
    the old "allowed" row for good. A build now replaces the policy: a key it no longer has is gone (not consented)."""
    for store in (LocalPolicyStore(tmp_path / "policy"), dynamo_store):
        store.replace(rows(60))  # more than two DynamoDB batches
        kept = [PolicyRow(0, "dev-0", False, D("2025-01-01")), *rows(60)[1:20]]  # one changed, 19 as they were
        stats = store.replace(kept)
        assert (stats.rows, stats.deleted) == (20, 40)
        assert set(store.snapshot()) == set(kept)
        assert store.replace([]).deleted == 20 and store.snapshot() == []


def test_replace_writes_only_the_rows_that_changed(dynamo_store):
    """A stream rebuilds the policy after each batch of its consent source: a rebuild that changes one row of
    sixty puts one row, not sixty (BatchWriteItem requests, 25 rows each)."""
    dynamo_store.replace(rows(60))
    assert dynamo_store.replace(rows(60)).requests == 0
    changed = [PolicyRow(0, "dev-0", False, D("2025-01-01")), *rows(60)[1:]]
    stats = dynamo_store.replace(changed)
    assert (stats.rows, stats.requests, stats.deleted) == (60, 1, 0)
    assert set(dynamo_store.snapshot()) == set(changed)


def test_policy_built_in_spark_round_trips_through_a_store(spark, tmp_path):
    store = LocalPolicyStore(tmp_path)
    store.write(policy_rows(policy_frame(spark, POLICY)))
    assert_df_equality(policy_frame(spark, store.snapshot()), policy_frame(spark, POLICY), ignore_row_order=True)


# --- PolicySnapshot -----------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_policy_snapshot_is_read_again_only_after_the_refresh_interval(spark, tmp_path):
    store = LocalPolicyStore(tmp_path)
    store.write(POLICY[:2])
    clock = FakeClock()
    snapshot = PolicySnapshot(store, refresh_seconds=60, clock=clock)
    first = snapshot.current(spark)
    store.write(POLICY)
    clock.now += 59
    assert snapshot.current(spark) is first and first.count() == 2
    clock.now += 1
    assert snapshot.current(spark).count() == 5
    assert (snapshot.loads, snapshot.rows) == (2, 5)
    snapshot.invalidate()
    snapshot.current(spark)
    assert snapshot.loads == 3


# --- the masking key ----------------------------------------------------------------------


def test_masking_key_from_an_environment_variable(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_MASKING_KEY", KEY_TEXT + "\n")
    key = masking_key(env_var="LAKEHOUSE_MASKING_KEY", secret_id=None)
    assert pseudonym("1", key) == pseudonym("1", MaskingKey(KEY_TEXT.encode()))


def test_masking_key_too_short_names_where_it_came_from_not_its_text(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_MASKING_KEY", "short-key")
    with pytest.raises(ConfigError, match="LAKEHOUSE_MASKING_KEY is 9 bytes") as info:
        masking_key(env_var="LAKEHOUSE_MASKING_KEY", secret_id=None)
    assert "short-key" not in str(info.value)


def test_masking_key_unset_variable_and_no_secret_refuses_to_start(monkeypatch):
    monkeypatch.delenv("LAKEHOUSE_MASKING_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"LAKEHOUSE_MASKING_KEY is not set.*refuses to start"):
        masking_key(env_var="LAKEHOUSE_MASKING_KEY", secret_id=None)


def test_masking_key_from_secrets_manager_raw_and_json(aws, monkeypatch):
    monkeypatch.delenv("LAKEHOUSE_MASKING_KEY", raising=False)
    sm = aws.client("secretsmanager")
    sm.create_secret(Name="raw", SecretString=KEY_TEXT)
    sm.create_secret(Name="doc", SecretString=json.dumps({"masking_key": KEY_TEXT, "other": "x"}))
    expected = pseudonym("1", MaskingKey(KEY_TEXT.encode()))
    raw = masking_key(env_var="LAKEHOUSE_MASKING_KEY", secret_id="raw", client=sm)
    doc = masking_key(env_var=None, secret_id="doc", json_field="masking_key", client=sm)
    assert pseudonym("1", raw) == pseudonym("1", doc) == expected
    with pytest.raises(ConfigError, match="no string field 'missing'"):
        masking_key(env_var=None, secret_id="doc", json_field="missing", client=sm)
    with pytest.raises(ConfigError, match="secret absent: ResourceNotFoundException"):
        masking_key(env_var=None, secret_id="absent", client=sm)


def test_masking_key_environment_variable_wins_over_the_secret(aws, monkeypatch):
    sm = aws.client("secretsmanager")
    sm.create_secret(Name="raw", SecretString="s" * 40)
    monkeypatch.setenv("LAKEHOUSE_MASKING_KEY", KEY_TEXT)
    key = masking_key(env_var="LAKEHOUSE_MASKING_KEY", secret_id="raw", client=sm)
    assert key.reveal() == KEY_TEXT.encode()
