"""The configuration the deployed jobs really get, and the contracts between the deploy's parts.

Every shipped configuration is loaded as its users load it: config/aws.yaml rendered exactly as
`make deploy-artifacts` renders it (deploy/artifacts.py, with the values Terraform's `config_values` output
gives), then read by the engine's loader and session factory. The landing router and the engine are checked
against each other by calling the real router handler and reading the real configuration.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from lakehouse.config import ConfigError, load_config
from tests.terraform_values import Terraform

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "config").glob("*.yaml"))
TF_VARS = {
    "environment": "test",
    "bucket_suffix": "-123456789012",
    "masking_key_secret_name": "lakehouse/test/masking-key",
    "postgres_secret_name": "lakehouse/test/postgres",
    "emr_subnet_id": "subnet-0123456789abcdef0",
}


def deploy_module():
    spec = importlib.util.spec_from_file_location("deploy_artifacts", ROOT / "deploy" / "artifacts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Terraform's folders, as shipped and as a deployment may set them: the router, the trigger, IAM and the lifecycle
# rules follow the variables, so the configuration the jobs read must follow them too.
FOLDERS = {
    "default-folders": {},
    "other-folders": {
        "dms_prefix": "replication/",
        "in_process_prefix": "cdc/routed",
        "snapshot_prefix": "hrsa/340b/",
        "pecos_prefix": "cms/pecos/",
    },
}


@pytest.fixture(scope="module", params=list(FOLDERS.values()), ids=list(FOLDERS))
def terraform(request: pytest.FixtureRequest) -> Terraform:
    return Terraform({**TF_VARS, **request.param})


@pytest.fixture
def deployed(terraform: Terraform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """config/aws.yaml as `make deploy-artifacts` renders and uploads it, loaded in an empty environment."""
    text = (ROOT / "config" / "aws.yaml").read_text(encoding="utf-8")
    rendered = deploy_module().render(text, terraform.local("config_values"))
    path = tmp_path / "aws.yaml"
    path.write_text(rendered, encoding="utf-8")
    for name in re.findall(r"\$\{(\w+)", text):
        monkeypatch.delenv(name, raising=False)  # the job's environment must not matter
    return rendered, load_config(path)


# ------------------------------------------------------------------- finding 1: keys written twice, local mode


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_no_shipped_config_writes_a_key_twice(path: Path, tmp_path: Path) -> None:
    from lakehouse.config import read_yaml

    read_yaml(path.read_text(encoding="utf-8"))  # raises on a key written twice in any mapping


def test_the_loader_refuses_a_key_written_twice_and_says_where(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(
        "paths: {landing: l, lake: k, checkpoints: c}\nspark:\n  conf: {a: '1'}\nstream: {trigger_seconds: 60}\n"
        "spark:\n  master: local[2]\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "key 'spark' appears twice" in str(error.value) and "lines 2 and 5" in str(error.value)
    assert str(path) in str(error.value)


def test_aws_config_as_deployed_runs_on_the_cluster_with_its_partitions_and_trigger(deployed) -> None:
    from lakehouse.session import LOCAL_CONF, session_settings

    rendered, config = deployed

    assert not re.search(r"\$\{\w+", rendered)  # rendered whole: nothing left to the job's environment
    master, conf = session_settings(config)
    assert config.environment == "aws"
    assert master is None  # Glue and EMR provide the master: never local mode on a cluster
    assert conf["spark.sql.shuffle.partitions"] == "64"
    assert not set(LOCAL_CONF) - {"spark.sql.shuffle.partitions"} & set(conf)  # no local-only settings
    assert config.stream.trigger_seconds == 60


def test_aws_config_as_deployed_names_what_terraform_made(deployed, terraform: Terraform) -> None:
    _, config = deployed
    buckets, tables = terraform.local("buckets"), terraform.local("dynamodb_tables")

    assert config.paths.landing == f"s3://{buckets['in_process']}/{terraform.vars['in_process_prefix']}"
    assert config.paths.lake == f"s3://{buckets['phi_lake']}"
    assert config.paths.non_phi_lake == f"s3://{buckets['nonphi_lake']}"
    assert config.policy.dynamodb_table == tables["policy"]
    assert (config.locks.store, config.locks.dynamodb_table) == ("dynamodb", tables["leases"])
    assert (config.handoff.control_table, config.handoff.pipeline) == (
        tables["control"],
        terraform.vars["pipeline_name"],
    )
    assert config.metrics.environment_name == TF_VARS["environment"]  # ${ENVIRONMENT} is rendered
    assert config.privacy.key_secret_id == TF_VARS["masking_key_secret_name"]
    assert config.postgres.secret_id == TF_VARS["postgres_secret_name"]
    assert config.postgres.sslrootcert == terraform.local("artifacts")["rds_ca_bundle"]


def test_local_config_runs_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    from lakehouse.session import session_settings

    monkeypatch.delenv("LAKEHOUSE_HOME", raising=False)
    master, conf = session_settings(load_config(ROOT / "config" / "local.yaml"))
    assert master == "local[2]" and conf["spark.sql.shuffle.partitions"] == "4"


def test_render_refuses_a_name_terraform_does_not_give() -> None:
    module = deploy_module()
    with pytest.raises(module.DeployError, match=r"names \['NOPE'\]"):
        module.render("a: ${NOPE}\nb: ${LANDING_BUCKET}\n", {"LANDING_BUCKET": "x"})


# ------------------------------------------------------- Terraform and the engine agree on tables and units


def test_terraform_deploys_every_table_and_write_unit_of_the_config(deployed, terraform: Terraform) -> None:
    _, config = deployed
    units = config.write_units()

    assert sorted(terraform.vars["dms_tables"]) == sorted(config.dms_tables())
    assert terraform.vars["snapshot_feeds"] == {feed: units[feed] for feed in config.snapshots}
    assert sorted(terraform.vars["non_phi_tables"]) == sorted(n for n, t in config.tables.items() if t.non_phi)
    assert terraform.vars["policy_source_table"] == config.policy.source_table
    # one apply-once run per unit, never one per table of a feed (eight writers of one checkpoint)
    source = terraform.vars["policy_source_table"]
    deployed_units = [t for t in terraform.vars["dms_tables"] if t != source] + list(terraform.vars["snapshot_feeds"])
    assert sorted(deployed_units) == sorted(u for u in units if u != config.policy.source_table)
    assert terraform.locals["apply_units"] == (
        "${concat([for t in var.dms_tables : t if t != var.policy_source_table], keys(var.snapshot_feeds))}"
    )


# -------------------------------------------------------- finding 2: the router writes where the engine reads


def hadoop_glob_matches(pattern: str, path: str) -> bool:
    """Whether `path` (a folder) matches a Hadoop glob segment by segment (a top-level {a,b} may hold `/`)."""
    body = re.fullmatch(r"(.*?)\{([^{}]*)\}(.*)", pattern)
    if body and "/" in body.group(2):
        return any(hadoop_glob_matches(body.group(1) + alt + body.group(3), path) for alt in body.group(2).split(","))
    parts, names = pattern.strip("/").split("/"), path.strip("/").split("/")
    return len(parts) == len(names) and all(fnmatchcase(n, p) for p, n in zip(parts, names, strict=True))


@pytest.fixture
def router(aws, terraform: Terraform, monkeypatch: pytest.MonkeyPatch):
    """The landing router's module with the environment Terraform gives it, its buckets and tables on moto."""
    lambdas = ROOT / "deploy" / "lambdas"
    monkeypatch.syspath_prepend(str(lambdas))
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    module = sys.modules.get("landing_router") or importlib.import_module("landing_router")
    module._clients.cache_clear()
    s3, dynamodb = aws.client("s3"), aws.client("dynamodb")
    buckets, tables = terraform.local("buckets"), terraform.local("dynamodb_tables")
    for bucket in (buckets["landing"], buckets["in_process"]):
        s3.create_bucket(Bucket=bucket)
    for table, key in ((tables["control"], "pipeline"), (tables["dedup"], "id")):
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    environment = {
        "CONTROL_TABLE": tables["control"],
        "PIPELINE": terraform.vars["pipeline_name"],
        "TARGET_BUCKET": buckets["in_process"],
        "TARGET_PREFIX": terraform.vars["in_process_prefix"],
        "SOURCE_PREFIX": terraform.vars["dms_prefix"],
        "DEDUP_TABLE": tables["dedup"],
    }
    lambda_locals = terraform.locals["lambdas"]["landing_router"]["environment"]
    assert set(lambda_locals) == set(environment)  # the same variables Terraform sets on the function
    for name in ("PIPELINE", "TARGET_PREFIX", "SOURCE_PREFIX"):  # the values of variables (the rest name resources)
        assert terraform.evaluate(lambda_locals[name]) == environment[name], name
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return module, s3, dynamodb, buckets, tables


def move_folder(dynamodb, table: str, pipeline: str, p_date: str, p_hour: str) -> None:
    item = {"pipeline": {"S": pipeline}, "p_date": {"S": p_date}, "p_hour": {"S": p_hour}}
    dynamodb.put_item(TableName=table, Item=item)


def test_router_writes_each_dms_file_where_the_engine_reads_it_once_its_folder_is_closed(
    deployed, router, terraform: Terraform
) -> None:  # `deployed` first: it clears the environment the router's variables are then set in
    from lakehouse.handoff import closed_source_path

    module, s3, dynamodb, buckets, tables = router
    _, config = deployed
    pipeline = terraform.vars["pipeline_name"]
    move_folder(dynamodb, tables["control"], pipeline, "2026-11-23", "09")

    for name, table in config.dms_tables().items():
        key = f"{terraform.vars['dms_prefix']}{pipeline}/{name}/LOAD00000001.csv"  # DMS: <folder>/<schema>/<table>/
        put = s3.put_object(Bucket=buckets["landing"], Key=key, Body=b"1,2\n")
        event = {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": buckets["landing"]}, "object": {"key": key, "eTag": put["ETag"]}},
                }
            ]
        }
        [routed] = module.handler(event, None)["routed"]
        destination = routed["destination"]
        assert destination.startswith(f"s3://{buckets['in_process']}/"), routed
        folder = destination.rsplit("/", 1)[0]
        source = table.source.path

        assert hadoop_glob_matches(source, folder), f"{name}: router wrote {destination}, the stream reads {source}"
        # the hand-off: while its folder is open no run reads it; once the item moved on, the next run does
        assert not hadoop_glob_matches(closed_source_path(source, "2026-11-23", "09"), folder), name
        assert hadoop_glob_matches(closed_source_path(source, "2026-11-23", "10"), folder), name
        assert hadoop_glob_matches(closed_source_path(source, "2026-11-24", "00"), folder), name


def test_snapshot_trigger_watches_the_folder_the_feed_reads(deployed, terraform: Terraform) -> None:
    _, config = deployed
    landing = terraform.local("buckets")["landing"]
    opais = config.snapshots["opais"].path
    assert opais.rstrip("/") + "/" == f"s3://{landing}/{terraform.vars['snapshot_prefix']}"
    # the PECOS files: where the landing writers' policy lets them be uploaded (deploy/terraform/iam_landing.tf)
    pecos = config.snapshots["pecos_clinicians"].path
    assert pecos.rstrip("/") + "/" == f"s3://{landing}/{terraform.vars['pecos_prefix']}"
