"""The policy never goes backwards: a build from an older consents version never overwrites a newer one.

Found by review: the policy build took no lease and the store overwrote whatever it held. A `lakehouse policy build`
that read the consents before a withdrawal, and wrote after the stream's build of that withdrawal, put the patient
back as "allowed" until the next consent batch, and the consent sync put the patient back into the non-PHI zone.
Builds now hold the consent source's lease, and the store records the consents version it was built from and
refuses an older one.
"""

from __future__ import annotations

import threading
from datetime import date, timedelta
from pathlib import Path

import pytest

from lakehouse.ownership import FileLease, UnitBusyError
from lakehouse.pending import table_version
from lakehouse.policy import job
from lakehouse.policy.job import build_policy_table
from lakehouse.policy.store import BuiltFrom, DynamoDbPolicyStore, LocalPolicyStore, PolicyRow
from lakehouse.tables import table_paths
from tests.privacy_lake import START, PrivacyLake, fresh_lake

P = 4301
ALLOWED = [PolicyRow(P, None, True, date(2026, 1, 1)), PolicyRow(P + 1, None, True, date(2026, 1, 1))]
WITHDRAWN = [PolicyRow(P, None, False, date(2026, 3, 1)), PolicyRow(P + 1, None, True, date(2026, 1, 1))]


@pytest.fixture
def dynamo_store(aws) -> DynamoDbPolicyStore:
    store = DynamoDbPolicyStore("policy", aws.client("dynamodb"), segments=2)
    store.create_table_if_missing()
    return store


def test_a_build_from_an_older_consents_version_written_last_leaves_the_newer_policy(dynamo_store, tmp_path):
    for store in (dynamo_store, LocalPolicyStore(tmp_path / "policy")):
        assert store.built_from() is None
        store.replace(WITHDRAWN, built_from=BuiltFrom("consents-id", 2))
        stats = store.replace(ALLOWED, built_from=BuiltFrom("consents-id", 1))  # read before the withdrawal
        assert stats.newer_stored == BuiltFrom("consents-id", 2) and stats.requests == 0
        assert set(store.snapshot()) == set(WITHDRAWN)  # the store's own record is not a policy row
        assert store.built_from() == BuiltFrom("consents-id", 2)


def test_a_build_from_the_same_or_a_newer_version_or_a_table_made_again_is_written(dynamo_store, tmp_path):
    for store in (dynamo_store, LocalPolicyStore(tmp_path / "policy")):
        store.replace(ALLOWED, built_from=BuiltFrom("consents-id", 5))
        assert store.replace(WITHDRAWN, built_from=BuiltFrom("consents-id", 5)).newer_stored is None  # a rerun
        assert store.replace(ALLOWED, built_from=BuiltFrom("consents-id", 6)).newer_stored is None
        assert set(store.snapshot()) == set(ALLOWED)
        # The consents table deleted and made again at its path starts at version 0 under another id.
        assert store.replace(WITHDRAWN, built_from=BuiltFrom("made-again", 0)).newer_stored is None
        assert set(store.snapshot()) == set(WITHDRAWN) and store.built_from() == BuiltFrom("made-again", 0)


@pytest.fixture
def lake(spark, tmp_path, monkeypatch) -> PrivacyLake:
    return fresh_lake(spark, tmp_path, monkeypatch)


class PausedStore:
    """The configured store; once `armed`, the next `replace` waits with its rows in hand until `resume` is set."""

    def __init__(self, store) -> None:
        self.store = store
        self.armed = False
        self.reached, self.resume = threading.Event(), threading.Event()

    def replace(self, rows, **options):
        rows = list(rows)
        if self.armed:
            self.armed = False
            self.reached.set()
            assert self.resume.wait(600)
        return self.store.replace(rows, **options)

    def __getattr__(self, name: str):
        return getattr(self.store, name)


def test_a_manual_build_that_read_the_consents_before_a_withdrawal_and_writes_last_is_refused(
    lake, spark, aws, monkeypatch
):
    """The review's sequence on the real build, Delta tables and the DynamoDB store on moto. The stream's build
    runs in this process (the lease is re-entrant here), as a build whose lease was lost would run beside it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    settings = lake.config.policy.model_copy(update={"store": "dynamodb", "dynamodb_table": "policy"})
    lake.config = lake.config.model_copy(update={"policy": settings})
    real = DynamoDbPolicyStore.connect("policy")
    real.create_table_if_missing()
    store = PausedStore(real)
    monkeypatch.setattr(job, "policy_store", lambda _settings: store)
    latest = table_paths(lake.config, lake.config.tables["consents"]).latest

    lake.consent(P, True, signed=START - timedelta(days=30))
    lake.run(["consents"])
    v1 = table_version(latest)
    store.armed = True  # the manual build reads version v1 ("allowed") and stops before writing
    manual: list[object] = []
    thread = threading.Thread(target=lambda: manual.append(build_policy_table(spark, lake.config)))
    thread.start()
    try:
        assert store.reached.wait(600), "the manual build never reached its write"
        lake.consent(P, False)  # the withdrawal, applied and built from meanwhile
        lake.run(["consents"])
        v2 = table_version(latest)
        assert v2 > v1 and [r.allow_enhanced_analytics for r in real.snapshot()] == [False]
    finally:
        store.resume.set()
        thread.join(600)
    assert len(manual) == 1, "the manual build failed"
    assert [r.allow_enhanced_analytics for r in real.snapshot()] == [False]  # still withdrawn
    assert manual[0].newer_stored.version == v2  # type: ignore[attr-defined]
    assert real.built_from().version == v2


def test_a_policy_build_beside_the_consent_sources_writer_is_refused_naming_it(lake, spark):
    """A stream holds the consents table's lease while it runs and rebuilds the policy itself after each batch of
    it: a build beside it could write an older policy last, so it is refused (as `privacy sync` is), writing
    nothing."""
    lake.consent(P, True, signed=START - timedelta(days=30))
    lake.run(["consents"])
    stored = LocalPolicyStore(lake.config.policy.local_path)
    before = (stored.snapshot(), stored.file.stat().st_mtime_ns)
    lock = Path(lake.config.paths.checkpoints) / "_locks" / "consents.lock"
    busy = r"policy is not rebuilt.*lakehouse stream emr-1 pid 7.*rebuilds the policy itself"
    with FileLease(lock, "consents", "lakehouse stream emr-1 pid 7"), pytest.raises(UnitBusyError, match=busy):
        build_policy_table(spark, lake.config)
    assert (stored.snapshot(), stored.file.stat().st_mtime_ns) == before  # not even rewritten


def test_a_run_says_when_its_policy_build_lost_to_a_newer_one():
    """Found by review: the run and the stream noted "policy rebuilt" for a build the store refused."""
    from lakehouse.policy.store import BuiltFrom, WriteStats
    from lakehouse.runner import _policy_note

    built = WriteStats(rows=3, requests=1, retries=0, retried_rows=0)
    refused = WriteStats(rows=3, requests=0, retries=0, retried_rows=0, newer_stored=BuiltFrom("table-id", 7))
    assert _policy_note(built) == "policy rebuilt: 3 rows"
    assert _policy_note(refused).startswith("policy not written") and "(7)" in _policy_note(refused)
