"""The Terraform of deploy/terraform: it parses, it holds what the pipeline needs, its IAM is least
privilege (a rule of this test, shown able to fail), and checkov finds nothing that is not skipped
with a reason. Nothing is planned against AWS; where a terraform binary and the AWS provider are installed,
`terraform validate` runs, and `terraform test` plans against a mocked provider."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.hcl_eval import evaluate
from tests.terraform_values import TERRAFORM, parse_dir

ROOT = Path(__file__).resolve().parents[1]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"

# Allow statements that may name Resource "*", by Sid: AWS offers no resource to scope them to.
STAR_RESOURCE_ALLOWED = {
    "KeyPolicyAccountAdministration": "in a KMS key policy, Resource * means this key",
    "KeyPolicyCloudWatchLogs": "in a KMS key policy, Resource * means this key",
    "KeyPolicyEventsAndAlarms": "in a KMS key policy, Resource * means this key",
    "PublishMetricsNeedsStar": "cloudwatch:PutMetricData has no resource-level permissions (namespace condition)",
    "LogDeliveryNeedsStar": "Step Functions log delivery actions have no resource-level permissions",
    "CreateTaggedClusterNeedsStar": "RunJobFlow has no resource before the cluster exists (request tag condition)",
    "DescribeNetworkNeedsStar": "ec2:Describe* of a Glue network connection have no resource-level permissions",
}
# The one AWS managed policy attached, and why (see emr.tf).
MANAGED_POLICIES_ALLOWED = {"arn:${local.partition}:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"}


@pytest.fixture(scope="module")
def tf() -> dict[str, dict]:
    return parse_dir(TERRAFORM)


def blocks(parsed: dict[str, dict], kind: str) -> dict[str, dict]:
    """{"<type>.<name>": body} of every `resource` or `data` block in every file."""
    found = {}
    for document in parsed.values():
        for block in document.get(kind, []):
            for type_, named in block.items():
                for name, body in named.items():
                    found[f"{type_}.{name}"] = body
    return found


def variables(parsed: dict[str, dict]) -> dict[str, dict]:
    return {name: body for d in parsed.values() for block in d.get("variable", []) for name, body in block.items()}


def locals_(parsed: dict[str, dict]) -> dict[str, Any]:
    return {k: v for d in parsed.values() for block in d.get("locals", []) for k, v in block.items()}


def one(body: dict, key: str) -> dict:
    """python-hcl2 gives nested blocks as lists of one dict."""
    value = body[key]
    return value[0] if isinstance(value, list) else value


# ------------------------------------------------------------------------------------------ contents


def test_every_file_parses_and_is_terraform_fmt_clean(tf: dict[str, dict]) -> None:
    assert {"versions.tf", "variables.tf", "s3.tf", "iam_glue.tf", "stepfunctions.tf", "athena.tf"} <= set(tf)
    terraform = shutil.which("terraform")
    if terraform:  # fmt needs no providers, so it runs offline where a binary is installed
        result = subprocess.run(
            [terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)], capture_output=True, text=True
        )
        assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}{result.stderr}"


def test_names_follow_project_environment_purpose(tf: dict[str, dict]) -> None:
    declared = variables(tf)
    assert {"project", "environment", "dms_tables", "snapshot_feeds", "masking_key_secret_name"} <= set(declared)
    assert locals_(tf)["name"] == "${var.project}-${var.environment}"
    tables = locals_(tf)["dynamodb_tables"]
    assert tables == {
        t: f"${{local.name}}-{t.replace('_', '-')}" for t in ("policy", "control", "dedup", "leases", "delta_log")
    }
    named = {
        "aws_dynamodb_table.policy": "${local.dynamodb_tables.policy}",
        "aws_dynamodb_table.control": "${local.dynamodb_tables.control}",
        "aws_sns_topic.alerts": "${local.name}-alerts",
        "aws_sfn_state_machine.glue_flow": "${local.name}-glue-flow",
        "aws_sfn_state_machine.emr_flow": "${local.name}-emr-flow",
        "aws_lambda_function.landing_router": "${local.name}-landing-router",
    }
    resources = blocks(tf, "resource")
    for address, name in named.items():
        assert resources[address]["name" if "function" not in address else "function_name"] == name, address


def test_default_tables_are_the_demo_and_the_340b_dimensions_in_write_units(tf: dict[str, dict]) -> None:
    declared = variables(tf)
    assert declared["dms_tables"]["default"] == ["consents", "patients", "devices", "therapy_sessions"]
    assert declared["snapshot_feeds"]["default"] == {
        "opais": [
            "dim_ce",
            "dim_ce_medicaid",
            "dim_ce_npi",
            "dim_ce_street_address",
            "dim_ce_billing_address",
            "dim_ce_shipping_address",
            "dim_ce_contract_pharmacy",
            "dim_pharmacy",
        ],
        "pecos_clinicians": ["pecos_clinicians"],
    }
    # the state machines fan out over write units (a feed once, whatever its number of tables)
    assert locals_(tf)["glue_flow_vars"]["apply_units"] == '${join(",", local.apply_units)}'
    assert locals_(tf)["emr_flow_vars"]["apply_units"] == '${join(",", local.apply_units)}'


def test_buckets_are_encrypted_versioned_private_tls_only_and_logged(tf: dict[str, dict]) -> None:
    resources = blocks(tf, "resource")
    assert set(locals_(tf)["buckets"]) == {"landing", "in_process", "phi_lake", "nonphi_lake", "artifacts"}
    for kind in ("server_side_encryption_configuration", "versioning", "public_access_block", "policy", "logging"):
        assert resources[f"aws_s3_bucket_{kind}.pipeline"]["for_each"] == "${aws_s3_bucket.pipeline}", kind
    sse = one(
        one(resources["aws_s3_bucket_server_side_encryption_configuration.pipeline"], "rule"),
        "apply_server_side_encryption_by_default",
    )
    assert sse == {"sse_algorithm": "aws:kms", "kms_master_key_id": "${aws_kms_key.pipeline.arn}"}
    block = resources["aws_s3_bucket_public_access_block.pipeline"]
    assert all(
        block[flag] is True
        for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    )
    tls = one(blocks(tf, "data")["aws_iam_policy_document.tls_only"], "statement")
    assert (tls["effect"], tls["actions"]) == ("Deny", ["s3:*"])
    assert one(tls, "condition") == {"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]}


def test_dynamodb_tables_have_pitr_and_kms_and_the_policy_key(tf: dict[str, dict]) -> None:
    resources = blocks(tf, "resource")
    for table in ("policy", "control", "dedup"):
        body = resources[f"aws_dynamodb_table.{table}"]
        assert one(body, "point_in_time_recovery") == {"enabled": True}, table
        assert one(body, "server_side_encryption")["enabled"] is True, table
    policy = resources["aws_dynamodb_table.policy"]
    assert (policy["hash_key"], policy["range_key"]) == ("patient_id", "device_id")
    assert resources["aws_dynamodb_table.control"]["hash_key"] == "pipeline"
    assert one(resources["aws_dynamodb_table.dedup"], "ttl") == {"attribute_name": "expires_at", "enabled": True}


def test_glue_jobs_run_the_batch_scripts_with_delta_and_the_wheel(tf: dict[str, dict]) -> None:
    jobs = locals_(tf)["glue_jobs"]
    assert {job: spec["script"] for job, spec in jobs.items()} == {
        "policy_build": "batch/policy_build.py",
        "apply_once": "batch/apply_once.py",
        "snapshot_load": "batch/snapshot_load.py",
        "export_postgres": "batch/export_postgres.py",
        "privacy": "batch/privacy.py",
    }
    # a worker count for each job; var.glue_workers overrides some (test_a_glue_workers_map_naming_some_jobs...)
    assert all(spec["workers"] >= 2 for spec in jobs.values()) and variables(tf)["glue_workers"]["default"] == {}
    job = blocks(tf, "resource")["aws_glue_job.batch"]
    assert job["glue_version"] == "${var.glue_version}" and variables(tf)["glue_version"]["default"] in {"5.0", "5.1"}
    assert one(job, "command")["name"] == "glueetl"
    assert one(job, "command")["script_location"] == "${local.jobs_uri}/${each.value.script}"
    arguments = job["default_arguments"]
    assert arguments["--datalake-formats"] == "delta"
    assert arguments["--conf"] == "${local.spark_delta_conf}"
    settings = locals_(tf)["spark_delta_settings"]
    assert settings["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    # commits to s3:// go through Delta's DynamoDB log store, whose jar the job gets from the artifacts bucket
    assert settings["spark.delta.logStore.s3.impl"] == "io.delta.storage.S3DynamoDBLogStore"
    assert settings["spark.io.delta.storage.S3DynamoDBLogStore.ddb.tableName"] == "${local.dynamodb_tables.delta_log}"
    assert arguments["--extra-jars"] == "${local.log_store_uri}"
    assert arguments["--additional-python-modules"] == "${local.wheel_uri}"
    assert locals_(tf)["wheel_uri"] == "${local.artifacts_uri}/wheels/${var.wheel_file}"
    # Secrets travel as ARNs; their values are read by the job at run time, never by Terraform.
    assert arguments["--postgres_secret_arn"] == "${data.aws_secretsmanager_secret.postgres.arn}"
    assert not [k for k in blocks(tf, "data") if k.startswith("aws_secretsmanager_secret_version")]


def test_state_machines_are_standard_workflows_rendered_from_the_asl_files(tf: dict[str, dict]) -> None:
    resources = blocks(tf, "resource")
    for flow in ("glue_flow", "emr_flow"):
        machine = resources[f"aws_sfn_state_machine.{flow}"]
        assert machine["type"] == "STANDARD"
        assert machine["definition"] == (
            f'${{templatefile("${{path.module}}/../stepfunctions/{flow}.asl.json", local.{flow}_vars)}}'
        )


def role_statements(parsed: dict[str, dict], role: str) -> list[dict]:
    """Every statement of the inline policies of `aws_iam_role.<role>`, those of their source documents included."""
    resources, data = blocks(parsed, "resource"), blocks(parsed, "data")
    documents = [
        re.fullmatch(r"\$\{data\.(aws_iam_policy_document\.\w+)\.json\}", body["policy"]).group(1)
        for address, body in resources.items()
        if address.startswith("aws_iam_role_policy.") and body["role"] == f"${{aws_iam_role.{role}.id}}"
    ]
    found = []
    while documents:
        document = data[documents.pop()]
        found += document.get("statement", [])
        for source in document.get("source_policy_documents", []):
            documents += re.findall(r"data\.(aws_iam_policy_document\.\w+)\.json", source)
    return found


def test_each_state_machine_starts_with_its_guard_and_its_role_may_list_its_own_executions(tf: dict[str, dict]) -> None:
    """Found by review: the flows' timeouts (37 h, 56 h) outlast the daily schedule and nothing kept a second execution
    from starting beside a running one. Each ASL file's first state now lists the RUNNING executions of its own
    machine ($$.StateMachine.Id) as the machine's role: that role, and only on that machine, must allow it. The ARN
    names the machine without referencing the resource, so the policy is not ordered after the machine."""
    from tests.terraform_values import Terraform

    terraform = Terraform({"environment": "test"})
    prefix = "arn:${local.partition}:states:${local.region}:${local.account_id}:stateMachine:"
    for flow in ("glue_flow", "emr_flow"):
        machine = blocks(tf, "resource")[f"aws_sfn_state_machine.{flow}"]
        asl_file = re.search(r"/stepfunctions/([\w.]+)\"", machine["definition"]).group(1)
        asl = json.loads((ROOT / "deploy" / "stepfunctions" / asl_file).read_text())
        guard = asl["States"][asl["StartAt"]]
        assert guard["Resource"] == "arn:aws:states:::aws-sdk:sfn:listExecutions", (flow, asl["StartAt"])
        assert guard["Parameters"]["StateMachineArn.$"] == "$$.StateMachine.Id"

        role = re.fullmatch(r"\$\{aws_iam_role\.(\w+)\.arn\}", machine["role_arn"]).group(1)
        grants = [s for s in role_statements(tf, role) if "states:ListExecutions" in s.get("actions", [])]
        assert len(grants) == 1 and grants[0].get("effect", "Allow") == "Allow", (flow, grants)
        [arn] = grants[0]["resources"]
        assert arn.startswith(prefix) and "aws_sfn_state_machine" not in arn, arn
        assert terraform.evaluate(arn.removeprefix(prefix)) == terraform.evaluate(machine["name"])
        assert terraform.evaluate(machine["name"]) == f"lakehouse-test-{flow.replace('_', '-')}"


def test_lambdas_eventbridge_and_sns_are_wired(tf: dict[str, dict]) -> None:
    resources, data = blocks(tf, "resource"), blocks(tf, "data")
    assert data["archive_file.lambdas"]["source_dir"] == "${path.module}/../lambdas"
    assert resources["aws_lambda_function.landing_router"]["handler"] == "${local.lambdas.landing_router.handler}"
    assert locals_(tf)["lambdas"]["snapshot_trigger"]["handler"] == "snapshot_trigger.handler"
    pattern = resources["aws_cloudwatch_event_rule.snapshot_created"]["event_pattern"]
    assert '"detail-type" = ["Object Created"]' in pattern and "prefix = var.snapshot_prefix" in pattern
    assert resources["aws_cloudwatch_event_target.snapshot_trigger"]["arn"] == (
        "${aws_lambda_function.snapshot_trigger.arn}"
    )
    assert (
        resources["aws_cloudwatch_event_rule.glue_flow_schedule"]["schedule_expression"] == "${var.glue_flow_schedule}"
    )
    assert resources["aws_s3_bucket_notification.landing"]["eventbridge"] is True
    assert resources["aws_sns_topic.alerts"]["kms_master_key_id"] == "${aws_kms_key.pipeline.arn}"


def test_alarms_watch_glue_failures_executions_and_the_lakehouse_metrics(tf: dict[str, dict]) -> None:
    resources = blocks(tf, "resource")
    assert resources["aws_cloudwatch_metric_alarm.glue_job_failed_tasks"]["namespace"] == "Glue"
    assert resources["aws_cloudwatch_metric_alarm.state_machine"]["namespace"] == "AWS/States"
    assert set(locals_(tf)["sfn_failure_metrics"].values()) == {
        "ExecutionsFailed",
        "ExecutionsTimedOut",
        "ExecutionsAborted",
    }
    engine = resources["aws_cloudwatch_metric_alarm.engine"]
    assert engine["namespace"] == "lakehouse"
    assert "QuarantinedRows" in locals_(tf)["engine_metrics"].values()
    # The stream's failed policy builds and consent syncs: the names the engine counts them under.
    from lakehouse.metrics import CONSENT_SYNC, POLICY_BUILD, STREAM_TASK_FAILURES

    failing = resources["aws_cloudwatch_metric_alarm.stream_task_failed"]
    assert (failing["namespace"], failing["metric_name"]) == ("lakehouse", STREAM_TASK_FAILURES)
    assert failing["dimensions"] == {"Environment": "${var.environment}", "Task": "${each.value}"}
    assert locals_(tf)["stream_tasks"] == [POLICY_BUILD, CONSENT_SYNC]
    assert '"Glue Job State Change"' in resources["aws_cloudwatch_event_rule.glue_job_failed"]["event_pattern"]


def test_catalog_tables_are_native_delta_tables_athena_reads(tf: dict[str, dict]) -> None:
    table = blocks(tf, "resource")["aws_glue_catalog_table.delta"]
    assert table["table_type"] == "EXTERNAL_TABLE"
    assert table["parameters"]["spark.sql.sources.provider"] == "delta"
    storage = one(table, "storage_descriptor")
    assert storage["location"] == "${each.value.location}"
    assert one(storage, "ser_de_info")["parameters"]["path"] == "${each.value.location}"
    catalog = locals_(tf)["catalog_tables"]
    assert 'location = "s3://${bucket}/${entry[0]}/${entry[1]}"' in catalog
    assert '["history", "latest"]' in catalog
    assert locals_(tf)["zone_tables"] == {"phi": "${local.tables}", "nonphi": "${var.non_phi_tables}"}
    assert locals_(tf)["tables"] == "${concat(var.dms_tables, flatten(values(var.snapshot_feeds)))}"


def test_saved_queries_answer_as_of_from_the_validity_columns(tf: dict[str, dict]) -> None:
    queries = locals_(tf)["as_of_queries"]
    assert "WHERE _valid_from <= TIMESTAMP '${local.as_of}'" in queries
    assert "(_valid_to IS NULL OR _valid_to > TIMESTAMP '${local.as_of}')" in queries
    assert "WHERE effective_stp <= TIMESTAMP '${local.as_of}'" in queries
    assert "expiration_stp > TIMESTAMP '${local.as_of}'" in queries
    workgroup = blocks(tf, "resource")["aws_athena_workgroup.zone"]
    engine = one(one(workgroup, "configuration"), "engine_version")
    assert engine["selected_engine_version"] == "Athena engine version 3"


# ---------------------------------------------------------------------------------- least privilege


def statements(parsed: dict[str, dict]) -> Iterator[tuple[str, dict]]:
    for address, body in blocks(parsed, "data").items():
        if address.startswith("aws_iam_policy_document."):
            for statement in body.get("statement", []):
                yield address, statement


def broken_copy(tmp_path: Path, name: str, old: str, new: str) -> dict[str, dict]:
    """The Terraform parsed from a copy in `tmp_path` whose file `name` has its first `old` replaced by `new`."""
    for path in TERRAFORM.glob("*.tf"):
        shutil.copy(path, tmp_path / path.name)
    source = (tmp_path / name).read_text()
    broken = source.replace(old, new, 1)
    assert broken != source, f"{old!r} is not in {name}"
    (tmp_path / name).write_text(broken)
    return parse_dir(tmp_path)


def least_privilege_violations(parsed: dict[str, dict]) -> list[str]:
    """Allow statements with a wildcard action, or Resource "*" outside STAR_RESOURCE_ALLOWED; policies
    written inline (jsonencode) where this check cannot see them; managed policies not allowed above."""
    found = []
    for address, statement in statements(parsed):
        if statement.get("effect", "Allow") != "Allow":
            continue  # a Deny narrows access, whatever its wildcards
        where = f"{address} statement {statement.get('sid', '(no sid)')}"
        for action in statement.get("actions", []):
            if "*" in action:
                found.append(f"{where}: wildcard action {action!r}")
        if "not_actions" in statement or "not_resources" in statement:
            found.append(f"{where}: NotAction/NotResource grant more than they name")
        if "*" in statement.get("resources", []) and statement.get("sid") not in STAR_RESOURCE_ALLOWED:
            found.append(f"{where}: Resource '*' (add it to STAR_RESOURCE_ALLOWED only if AWS requires it)")
        for resource in statement.get("resources", []):
            if re.fullmatch(r"arn:\$\{local\.partition\}:s3:::\*.*", resource):
                found.append(f"{where}: {resource!r} is not one of the pipeline's buckets")
    for address, body in blocks(parsed, "resource").items():
        if "jsonencode" in str(body.get("policy", "")) or "jsonencode" in str(body.get("assume_role_policy", "")):
            found.append(f"{address}: inline policy; write it as an aws_iam_policy_document")
        if address.startswith("aws_iam_role_policy_attachment.") and body["policy_arn"] not in MANAGED_POLICIES_ALLOWED:
            found.append(f"{address}: managed policy {body['policy_arn']}")
    return found


def test_iam_policies_are_least_privilege(tf: dict[str, dict]) -> None:
    assert least_privilege_violations(tf) == []
    assert len(list(statements(tf))) > 30  # the check looked at the real policies


PIPELINE_KEY = "${aws_kms_key.pipeline.arn}"


def undelegated_key_actions(parsed: dict[str, dict]) -> list[str]:
    """KMS actions a role is granted on the pipeline key that the key's policy does not delegate to the account's
    IAM: AWS ignores such a grant (a key policy must allow what IAM allows), so the call is denied on AWS."""
    key_policy = {s.get("sid"): s for s in blocks(parsed, "data")["aws_iam_policy_document.kms_key"]["statement"]}
    delegated = set(key_policy["KeyPolicyAccountAdministration"]["actions"])
    found = []
    for address, statement in statements(parsed):
        if address == "aws_iam_policy_document.kms_key" or PIPELINE_KEY not in statement.get("resources", []):
            continue
        for action in statement.get("actions", []):
            if action.startswith("kms:") and action not in delegated:
                found.append(f"{address} statement {statement.get('sid')}: {action}")
    return found


def test_every_kms_action_granted_on_the_pipeline_key_is_delegated_by_its_key_policy(tf: dict[str, dict]) -> None:
    # EMR's EBS encryption needs GenerateDataKeyWithoutPlaintext: granted to its role, it was not in the key policy.
    assert undelegated_key_actions(tf) == []
    granted = [s for _, s in statements(tf) if PIPELINE_KEY in s.get("resources", [])]
    assert len(granted) >= 5  # the check looked at the real grants


def test_landing_writers_may_upload_where_the_pipeline_reads_with_the_pipeline_key(tf: dict[str, dict]) -> None:
    # Found by review: the landing bucket encrypts with the pipeline key, whose key policy leaves its use to IAM, and
    # nothing granted it to the bucket's writers (DMS's target role, the 340B and PECOS uploaders): every upload
    # was refused. Terraform now makes the policy they are given (deploy/README.md section 1).
    writer = {s["sid"]: s for a, s in statements(tf) if a == "aws_iam_policy_document.landing_writer"}
    landing = '${aws_s3_bucket.pipeline["landing"].arn}'
    folders = ("dms_prefix", "snapshot_prefix", "pecos_prefix")
    assert writer["PutLandingFiles"]["resources"] == [f"{landing}/${{var.{folder}}}*" for folder in folders]
    assert "s3:PutObject" in writer["PutLandingFiles"]["actions"]
    assert writer["DmsClearsItsFolders"]["resources"] == [f"{landing}/${{var.dms_prefix}}*"]
    key = writer["EncryptLandingFilesWithThePipelineKey"]
    assert key["resources"] == [PIPELINE_KEY] and {"kms:GenerateDataKey", "kms:Encrypt"} <= set(key["actions"])
    assert one(key, "condition")["variable"] == "kms:ViaService"
    # the folders are the ones the router, the 340B trigger and the configuration's feeds use
    resources = blocks(tf, "resource")
    assert one(resources["aws_s3_bucket_notification.landing"], "lambda_function")["filter_prefix"] == (
        "${var.dms_prefix}"
    )
    assert "prefix = var.snapshot_prefix" in resources["aws_cloudwatch_event_rule.snapshot_created"]["event_pattern"]
    values = locals_(tf)["config_values"]
    assert (values["SNAPSHOT_PREFIX"], values["PECOS_PREFIX"]) == (
        '${trimsuffix(var.snapshot_prefix, "/")}',
        '${trimsuffix(var.pecos_prefix, "/")}',
    )
    # a policy to attach, and its ARN and document among the outputs
    policy = resources["aws_iam_policy.landing_writer"]["policy"]
    assert policy == "${data.aws_iam_policy_document.landing_writer.json}"
    outputs = {name for d in tf.values() for block in d.get("output", []) for name in block}
    assert {"landing_writer_policy_arn", "landing_writer_policy", "kms_key_arn"} <= outputs


def test_the_key_policy_check_fails_on_an_action_the_key_does_not_delegate(tmp_path: Path) -> None:
    broken = broken_copy(tmp_path, "kms.tf", '      "kms:GenerateDataKeyWithoutPlaintext",\n', "")
    assert any("GenerateDataKeyWithoutPlaintext" in v for v in undelegated_key_actions(broken))


def test_whoever_starts_an_encrypted_state_machine_may_use_its_key(tf: dict[str, dict]) -> None:
    # StartExecution encrypts the execution's input with the state machine's key: the nightly schedule's role
    # had states:StartExecution only, so every scheduled run failed on AWS (FailedInvocations, no alarm).
    machines = {
        f"${{{address}.arn}}": one(body, "encryption_configuration")["kms_key_id"]
        for address, body in blocks(tf, "resource").items()
        if address.startswith("aws_sfn_state_machine.")
    }
    assert set(machines.values()) == {PIPELINE_KEY}
    starters = 0
    for address, body in blocks(tf, "data").items():
        if not address.startswith("aws_iam_policy_document."):
            continue
        grants = body.get("statement", [])
        started = [r for s in grants if "states:StartExecution" in s.get("actions", []) for r in s["resources"]]
        for machine in started:
            starters += 1
            on_key = {a for s in grants if machines[machine] in s.get("resources", []) for a in s["actions"]}
            assert {"kms:GenerateDataKey", "kms:Decrypt"} <= on_key, (address, machine)
    assert starters >= 1


def test_least_privilege_check_fails_on_a_wildcard_action(tmp_path: Path) -> None:
    broken = broken_copy(tmp_path, "iam_lambda.tf", 'actions   = ["glue:StartJobRun"]', 'actions   = ["glue:*"]')

    violations = least_privilege_violations(broken)

    assert violations == [
        "aws_iam_policy_document.snapshot_trigger statement StartSnapshotLoad: wildcard action 'glue:*'"
    ]


def test_least_privilege_check_fails_on_an_unexplained_star_resource(tmp_path: Path) -> None:
    broken = broken_copy(
        tmp_path, "iam_lambda.tf", 'resources = [aws_glue_job.batch["snapshot_load"].arn]', 'resources = ["*"]'
    )

    assert [v for v in least_privilege_violations(broken) if "Resource '*'" in v]


# ------------------------------------------------------------------------------------------- checkov


@pytest.fixture(scope="module")
def checkov_report() -> dict:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run `make .venv-checkov/.installed` (checkov==3.3.30 in its own venv)")
    result = subprocess.run(
        [str(CHECKOV), "--config-file", str(TERRAFORM / ".checkov.yaml"), "-d", str(TERRAFORM), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.stdout.strip(), f"checkov printed no report (exit {result.returncode}):\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    return next(r for r in report if r["check_type"] == "terraform") if isinstance(report, list) else report


def test_checkov_finds_no_failed_check(checkov_report: dict) -> None:
    summary = checkov_report["summary"]
    failed = [
        f"{f['check_id']} {f['check_name']}: {f['resource']} ({f['file_path']}:{f['file_line_range'][0]})"
        for f in checkov_report["results"].get("failed_checks", [])
    ]
    assert failed == [], "checkov failed checks (fix them, or skip with a reason in .checkov.yaml):\n" + "\n".join(
        failed
    )
    assert summary["parsing_errors"] == 0 and summary["passed"] > 300 and summary["resource_count"] > 50


def test_every_checkov_skip_has_a_reason(checkov_report: dict) -> None:
    config_lines = (TERRAFORM / ".checkov.yaml").read_text().splitlines()
    skipped = yaml.safe_load("\n".join(config_lines))["skip-check"]
    for check in skipped:
        index = config_lines.index(f"  - {check}")
        above = config_lines[index - 1].strip()
        assert above.startswith("#") or above.startswith("- CKV"), f"{check} in .checkov.yaml has no reason above it"
    inline = [
        match
        for path in TERRAFORM.glob("*.tf")
        for match in re.findall(r"#\s*checkov:skip=(CKV2?_AWS_\d+):(.*)", path.read_text())
    ]
    assert all(len(reason.strip()) > 20 for _, reason in inline), inline
    assert checkov_report["summary"]["skipped"] == len(inline)


def test_the_emr_bootstrap_script_the_flow_names_exists_and_parses() -> None:
    script = ROOT / "deploy" / "emr" / "install-wheel.sh"
    assert locals_(parse_dir(TERRAFORM))["bootstrap_uri"].endswith("/emr/install-wheel.sh")
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------- the deploy's gaps


def test_the_glue_catalog_has_every_table_the_engine_writes(tf: dict[str, dict]) -> None:
    from tests.terraform_values import Terraform

    terraform = Terraform({"environment": "test"})
    tables = [*terraform.vars["dms_tables"], *(t for ts in terraform.vars["snapshot_feeds"].values() for t in ts)]
    assert {"consents", "pecos_clinicians"} <= set(tables)
    assert len(tables) == len(set(tables)) == 13
    assert set(terraform.vars["non_phi_tables"]) <= set(tables)


def test_the_emr_flow_role_may_create_emrs_cleanup_service_linked_role(tf: dict[str, dict]) -> None:
    statements_ = {s.get("sid"): s for a, s in statements(tf) if a == "aws_iam_policy_document.sfn_emr_flow"}
    role = statements_["EmrCleanupServiceLinkedRole"]
    assert role["actions"] == ["iam:CreateServiceLinkedRole"]
    assert role["resources"][0].endswith(
        "role/aws-service-role/elasticmapreduce.amazonaws.com*/AWSServiceRoleForEMRCleanup*"
    )
    assert one(role, "condition")["variable"] == "iam:AWSServiceName"


def test_jobs_may_take_leases_and_commit_through_the_delta_log_table(tf: dict[str, dict]) -> None:
    jobs = {s.get("sid"): s for a, s in statements(tf) if a == "aws_iam_policy_document.spark_jobs"}
    assert jobs["WriterLeases"]["resources"] == ["${aws_dynamodb_table.leases.arn}"]
    assert jobs["DeltaCommitLog"]["resources"] == ["${aws_dynamodb_table.delta_log.arn}"]
    delta_log = blocks(tf, "resource")["aws_dynamodb_table.delta_log"]
    assert (delta_log["hash_key"], delta_log["range_key"]) == ("tablePath", "fileName")
    assert one(delta_log, "ttl")["attribute_name"] == "expireTime"


def test_the_export_job_reaches_postgres_through_its_own_security_group(tf: dict[str, dict]) -> None:
    resources = blocks(tf, "resource")
    into_postgres = resources["aws_vpc_security_group_ingress_rule.postgres_from_glue"]
    assert into_postgres["security_group_id"] == "${var.postgres_security_group_id}"
    assert into_postgres["referenced_security_group_id"] == "${aws_security_group.glue_jobs[0].id}"
    assert (into_postgres["from_port"], into_postgres["to_port"]) == ("${var.postgres_port}", "${var.postgres_port}")
    connection = one(resources["aws_glue_connection.postgres_network"], "physical_connection_requirements")
    assert "aws_security_group.glue_jobs[*].id" in connection["security_group_id_list"]
    assert resources["aws_vpc_endpoint.interface"]["for_each"] == "${local.interface_services}"
    assert "secretsmanager" in locals_(tf)["interface_services"]
    # Found by review: the job's security configuration has it encrypt with the pipeline key, and in a subnet without
    # NAT it had no route to KMS.
    assert '"kms"' in locals_(tf)["interface_services"]
    # Found by review: the group has no default egress, and its S3 and DynamoDB rules existed only when Terraform
    # made the gateway endpoints (the variable says the account may have them): the job could not read its script.
    # Nor could Glue reach PyPI for the wheel's dependencies through the subnet's NAT.
    gateways = resources["aws_vpc_security_group_egress_rule.glue_to_gateways"]
    assert gateways["for_each"] == "${data.aws_prefix_list.gateway}"
    assert blocks(tf, "data")["aws_prefix_list.gateway"]["for_each"].startswith("${local.glue_vpc == 1 ?")
    https_out = resources["aws_vpc_security_group_egress_rule.glue_https_out"]
    assert (https_out["cidr_ipv4"], https_out["from_port"]) == ("${var.glue_jobs_https_egress_cidr}", 443)


def test_the_emr_flows_export_step_reaches_postgres_when_its_cluster_is_in_the_databases_vpc(
    tf: dict[str, dict],
) -> None:
    """Found by review: only the Glue export job's group was let into PostgreSQL, so the EMR flow's export step (on its
    transient cluster, with EMR's own groups) could not connect; in PostgreSQL's VPC its nodes would also resolve
    Secrets Manager and KMS to interface endpoints that refused them."""
    resources = blocks(tf, "resource")
    nodes = resources["aws_security_group.emr_nodes"]
    assert "count" not in nodes and nodes["vpc_id"] == "${data.aws_subnet.emr.vpc_id}"  # the cluster's own VPC
    assert nodes["tags"]["for-use-with-amazon-emr-managed-policies"] == "true"  # AmazonEMRServicePolicy_v2 uses it
    assert "data.aws_subnet.emr.vpc_id == var.vpc_id" in locals_(tf)["emr_in_postgres_vpc"]
    for rule, target, port, count in (
        (
            "postgres_from_emr",
            "${var.postgres_security_group_id}",
            "${var.postgres_port}",
            "local.emr_in_postgres_vpc *",
        ),
        (
            "endpoints_from_emr",
            "${aws_security_group.endpoints[0].id}",
            443,
            "local.emr_in_postgres_vpc * local.glue_vpc",
        ),
    ):
        body = resources[f"aws_vpc_security_group_ingress_rule.{rule}"]
        assert body["count"].startswith("${" + count), (rule, body["count"])
        assert body["security_group_id"] == target
        assert body["referenced_security_group_id"] == "${aws_security_group.emr_nodes.id}"
        assert (body["from_port"], body["to_port"]) == (port, port)
    assert locals_(tf)["emr_flow_vars"]["emr_security_group"] == "${aws_security_group.emr_nodes.id}"
    asl = (ROOT / "deploy" / "stepfunctions" / "emr_flow.asl.json").read_text()
    for kind in ("Master", "Slave"):
        assert f'"Additional{kind}SecurityGroups": ["${{emr_security_group}}"],' in asl


PLUGINS = Path("/opt/tf-plugins")
TF_ENV = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}


def initialized_copy(tmp_path: Path) -> tuple[str, Path]:
    """deploy/ copied into `tmp_path` and `terraform init` run with the AWS provider from a local plugin folder (no
    registry here): (the terraform binary, the copy's terraform folder). The archive provider is not in that folder,
    so its one data source is swapped for a local of the same shape in the copy."""
    terraform = shutil.which("terraform")
    if not terraform or not (PLUGINS / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
        pytest.skip("needs a terraform binary and the AWS provider in /opt/tf-plugins (not installable here)")
    shutil.copytree(ROOT / "deploy" / "stepfunctions", tmp_path / "stepfunctions")
    shutil.copytree(TERRAFORM, tmp_path / "terraform", ignore=shutil.ignore_patterns(".terraform*", "build"))
    folder = tmp_path / "terraform"
    lambda_tf = (folder / "lambda.tf").read_text()
    start = lambda_tf.index('data "archive_file" "lambdas" {')
    end = lambda_tf.index("\n}\n", start) + 3
    stub = 'locals {\n  lambdas_zip = { output_path = "lambdas.zip", output_base64sha256 = "x" }\n}\n'
    (folder / "lambda.tf").write_text(
        lambda_tf[:start] + stub + lambda_tf[end:].replace("data.archive_file.lambdas.", "local.lambdas_zip.")
    )
    versions = (folder / "versions.tf").read_text()
    start = versions.index("    archive = {")
    (folder / "versions.tf").write_text(versions[:start] + versions[versions.index("\n    }\n", start) + 7 :])
    init = subprocess.run(
        [terraform, "init", "-backend=false", "-input=false", "-no-color", f"-plugin-dir={PLUGINS}"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env=TF_ENV,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    return terraform, folder


def test_terraform_validate_accepts_the_configuration(tmp_path: Path) -> None:
    """`terraform validate`: every expression, type and reference checked by Terraform itself."""
    terraform, folder = initialized_copy(tmp_path)
    validate = subprocess.run(
        [terraform, "validate", "-no-color"], cwd=folder, capture_output=True, text=True, timeout=300, env=TF_ENV
    )
    assert validate.returncode == 0 and "The configuration is valid" in validate.stdout, (
        validate.stdout + validate.stderr
    )


# `terraform test` plans against this mocked AWS provider, offline: generated values, except where the provider
# checks them at plan time (policy JSON) or the configuration builds ARNs from them.
MOCKED_AWS = r"""
mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
}

variables {
  environment             = "test"
  masking_key_secret_name = "lakehouse/test/masking-key"
  postgres_secret_name    = "lakehouse/test/postgres"
  emr_subnet_id           = "subnet-0123456789abcdef0"
}
"""


def terraform_test(tmp_path: Path, runs: str) -> subprocess.CompletedProcess:
    """`terraform test` of `runs` (HCL run blocks) with MOCKED_AWS, on an initialized copy of deploy/terraform."""
    terraform, folder = initialized_copy(tmp_path)
    (folder / "tests").mkdir()
    (folder / "tests" / "offline.tftest.hcl").write_text(MOCKED_AWS + runs)
    return subprocess.run(
        [terraform, "test", "-no-color"], cwd=folder, capture_output=True, text=True, timeout=600, env=TF_ENV
    )


GLUE_WORKER_DEFAULTS = {"policy_build": 2, "apply_once": 4, "snapshot_load": 4, "export_postgres": 2, "privacy": 2}


def workers_asserted(expected: dict[str, int]) -> str:
    return "".join(
        f"""
  assert {{
    condition     = aws_glue_job.batch["{job}"].number_of_workers == {n}
    error_message = "{job}: ${{aws_glue_job.batch["{job}"].number_of_workers}} workers, not {n}"
  }}"""
        for job, n in expected.items()
    )


def test_terraform_plans_a_glue_workers_map_written_before_the_privacy_job(tmp_path: Path) -> None:
    """Found by review: glue.tf read var.glue_workers[each.key], so a deployment whose tfvars set glue_workers for the
    four jobs there were failed `terraform plan` (Invalid index) once the privacy job was added. Planned by Terraform
    itself against a mocked provider: a job the map does not name keeps its default; a map naming a job that does not
    exist, or fewer than 2 workers, is refused."""
    before_privacy = {"policy_build": 2, "apply_once": 8, "snapshot_load": 4, "export_postgres": 2}
    runs = f"""
run "defaults" {{
  command = plan
{workers_asserted(GLUE_WORKER_DEFAULTS)}
}}

run "tfvars_written_before_the_privacy_job" {{
  command = plan
  variables {{
    glue_workers = {{ {", ".join(f"{job} = {n}" for job, n in before_privacy.items())} }}
  }}
{workers_asserted(GLUE_WORKER_DEFAULTS | before_privacy)}
}}

run "a_job_that_does_not_exist" {{
  command = plan
  variables {{
    glue_workers = {{ "apply-once" = 8 }}
  }}
  expect_failures = [aws_glue_job.batch]
}}

run "fewer_than_two_workers" {{
  command = plan
  variables {{
    glue_workers = {{ privacy = 1 }}
  }}
  expect_failures = [var.glue_workers]
}}
"""
    result = terraform_test(tmp_path, runs)

    assert result.returncode == 0 and "Success! 4 passed, 0 failed." in result.stdout, result.stdout + result.stderr


def test_a_glue_workers_map_naming_some_jobs_keeps_the_others_defaults(tf: dict[str, dict]) -> None:
    """The same as the `terraform test` above, where no terraform binary is: number_of_workers evaluated per job."""
    from tests.hcl_eval import Scope
    from tests.terraform_values import Terraform

    expression = blocks(tf, "resource")["aws_glue_job.batch"]["number_of_workers"]
    before_privacy = {"policy_build": 2, "apply_once": 8, "snapshot_load": 4, "export_postgres": 2}
    for override, expected in [(None, GLUE_WORKER_DEFAULTS), (before_privacy, GLUE_WORKER_DEFAULTS | before_privacy)]:
        deployed = Terraform({"environment": "test"} | ({"glue_workers": override} if override else {}))
        jobs = deployed.local("glue_jobs")
        scope: Scope = deployed.scope
        workers = {
            job: evaluate(expression, scope.child(each={"key": job, "value": spec})) for job, spec in jobs.items()
        }
        assert workers == expected, override


def test_the_policy_table_has_the_keys_the_engine_writes(tf: dict[str, dict], aws) -> None:
    """The engine's own table (DynamoDbPolicyStore) against Terraform's: a key of another type refuses every write."""
    from lakehouse.policy.store import DynamoDbPolicyStore

    store = DynamoDbPolicyStore("engine-policy", aws.client("dynamodb"))
    store.create_table_if_missing()
    engine = aws.client("dynamodb").describe_table(TableName="engine-policy")["Table"]
    body = blocks(tf, "resource")["aws_dynamodb_table.policy"]
    attributes = body["attribute"] if isinstance(body["attribute"], list) else [body["attribute"]]

    assert {(a["AttributeName"], a["AttributeType"]) for a in engine["AttributeDefinitions"]} == {
        (a["name"], a["type"]) for a in attributes
    }
    assert {(k["AttributeName"], k["KeyType"]) for k in engine["KeySchema"]} == {
        (body["hash_key"], "HASH"),
        (body["range_key"], "RANGE"),
    }


def test_the_lag_alarm_watches_a_metric_the_engine_publishes(tf: dict[str, dict]) -> None:
    from lakehouse.metrics import BatchMetrics, CloudWatchMetrics

    alarm = blocks(tf, "resource")["aws_cloudwatch_metric_alarm.stream_lag"]
    published = CloudWatchMetrics(None, namespace="lakehouse", environment="prod").data(
        BatchMetrics(table="devices", batch_id=0, lag_seconds=12.5)
    )
    metric = next(m for m in published if m["MetricName"] == alarm["metric_name"])
    assert alarm["namespace"] == "lakehouse" and metric["Unit"] == "Seconds" and metric["Value"] == 12.5
    assert {d["Name"] for d in metric["Dimensions"]} == set(alarm["dimensions"])
    assert alarm["statistic"] == "Maximum" and alarm["comparison_operator"] == "GreaterThanThreshold"


# --------------------------------------------------------------------------------- the stream's liveness


def matches(pattern: dict, event: dict) -> bool:
    """EventBridge's matching for the pattern forms the deploy uses: lists of exact values or of {"prefix": ...},
    and nested objects; a field the event lacks matches nothing."""
    for key, wanted in pattern.items():
        if key not in event:
            return False
        value = event[key]
        if isinstance(wanted, dict):
            if not isinstance(value, dict) or not matches(wanted, value):
                return False
        elif not any(value.startswith(w["prefix"]) if isinstance(w, dict) else value == w for w in wanted):
            return False
    return True


def readme_stream_step_name() -> str:
    """The step name of README section 5's `aws emr add-steps` command (the prod example)."""
    readme = (ROOT / "deploy" / "README.md").read_text()
    command = readme[readme.index("aws emr add-steps") :]
    return re.search(r'"Name": "([^"]+)"', command).group(1)


def stream_step_event(**detail: str) -> dict:
    """An EMR Step Status Change event in the shape EMR sends (its documentation's example, fields renamed)."""
    return {
        "source": "aws.emr",
        "detail-type": "EMR Step Status Change",
        "detail": {
            "severity": "ERROR",
            "actionOnFailure": "CONTINUE",
            "stepId": "s-ZYXWVUTSRQPON",
            "name": readme_stream_step_name(),
            "clusterId": "j-123456789ABCD",
            "state": "FAILED",
            "message": "Step s-ZYXWVUTSRQPON (lakehouse-prod-dms-stream) in Amazon EMR cluster j-123456789ABCD "
            "(lakehouse-prod-stream) failed at 2026-12-02 03:00 UTC.",
            **detail,
        },
    }


def test_a_failed_stream_step_matches_the_stream_rule_and_nothing_else_does(tf: dict[str, dict]) -> None:
    # The stream is an EMR step with ActionOnFailure CONTINUE: one failed query (a LeaseLostError, input it
    # cannot read) stops it, the step ends FAILED and the cluster idles on. Its lag alarm sees missing data then,
    # as when nothing lands, so this rule is what says the stream is down.
    from tests.terraform_values import Terraform

    rule = blocks(tf, "resource")["aws_cloudwatch_event_rule.stream_step_failed"]
    pattern = json.loads(Terraform({"environment": "prod"}).evaluate(rule["event_pattern"]))
    assert matches(pattern, stream_step_event())  # the step README section 5 adds, as named there
    assert matches(pattern, stream_step_event(name=f"{readme_stream_step_name()}-patients"))  # one per --tables
    assert not matches(pattern, stream_step_event(state="COMPLETED"))
    assert not matches(pattern, stream_step_event(state="CANCELLED"))  # cancelled by hand (README section 5)
    # the EMR flow's own steps: the flow catches their failures and notifies itself
    asl = (ROOT / "deploy" / "stepfunctions" / "emr_flow.asl.json").read_text()
    flow_steps = re.findall(r"\"Name\.\$\": \"States\.Format\('([a-z_]+) \{\}'", asl)
    assert {"apply_once", "policy_build", "export_postgres", "snapshot_load"} <= set(flow_steps)
    for step in flow_steps:
        assert not matches(pattern, stream_step_event(name=f"{step} manual-20261202T030000"))
    assert not matches(pattern, {**stream_step_event(), "source": "aws.glue"})


def test_a_failed_stream_step_reaches_the_alerts_topic_readably(tf: dict[str, dict]) -> None:
    resources, data = blocks(tf, "resource"), blocks(tf, "data")
    target = resources["aws_cloudwatch_event_target.stream_step_failed"]
    assert target["rule"] == "${aws_cloudwatch_event_rule.stream_step_failed.name}"
    assert target["arn"] == "${aws_sns_topic.alerts.arn}"
    transformer = one(target, "input_transformer")
    event = stream_step_event()
    values = {}
    for name, path in transformer["input_paths"].items():
        value: Any = event
        for part in path.removeprefix("$.").split("."):
            value = value[part]
        values[name] = value
    text = transformer["input_template"]
    for name, value in values.items():
        text = text.replace(f"<{name}>", value)
    message = json.loads(text)  # a JSON string: SNS mails it as plain text
    for fact in ("j-123456789ABCD", readme_stream_step_name(), "FAILED", event["detail"]["message"]):
        assert fact in message, (fact, message)
    assert "<" not in message and "stream" in message

    # The topic is encrypted with the pipeline key: EventBridge needs the topic policy and the key policy.
    publish = [
        s
        for s in data["aws_iam_policy_document.alerts_topic"]["statement"]
        if "events.amazonaws.com" in one(s, "principals")["identifiers"]
    ]
    assert publish and publish[0]["actions"] == ["sns:Publish"]
    assert publish[0]["resources"] == ["${aws_sns_topic.alerts.arn}"]
    assert resources["aws_sns_topic.alerts"]["kms_master_key_id"] == "${aws_kms_key.pipeline.arn}"
    key_policy = {s.get("sid"): s for s in data["aws_iam_policy_document.kms_key"]["statement"]}
    events_on_key = key_policy["KeyPolicyEventsAndAlarms"]
    assert "events.amazonaws.com" in one(events_on_key, "principals")["identifiers"]
    assert {"kms:GenerateDataKey", "kms:Decrypt"} <= set(events_on_key["actions"])


# ------------------------------------------------------------------------------- what S3 keeps, how long


def lifecycle_rules(bucket: str) -> dict[str, dict]:
    """The lifecycle rules of one pipeline bucket by id, as Terraform renders them: `each.key` is the bucket's
    key in local.buckets, `dynamic "rule"` blocks are expanded."""
    from tests.terraform_values import Terraform

    terraform = Terraform({"environment": "test"})
    body = blocks(parse_dir(TERRAFORM), "resource")["aws_s3_bucket_lifecycle_configuration.pipeline"]
    scope = terraform.scope.child(each={"key": bucket, "value": {}})
    rules = [evaluate(rule, scope) for rule in body.get("rule", [])]
    for dynamic in body.get("dynamic", []):
        for name, block in dynamic.items():
            assert name == "rule", name
            for index, item in enumerate(evaluate(block["for_each"], scope)):
                rules.append(evaluate(one(block, "content"), scope.child(rule={"key": index, "value": item})))
    return {rule["id"]: rule for rule in rules}


def max_file_age_hours() -> float:
    """The stream's `max_file_age_hours` in config/aws.yaml, or the engine's default where it is not set."""
    from lakehouse.config import StreamSettings

    raw = yaml.safe_load((ROOT / "config" / "aws.yaml").read_text())
    default = StreamSettings.model_fields["max_file_age_hours"].default
    return float((raw.get("stream") or {}).get("max_file_age_hours", default))


def test_a_forgotten_patients_old_files_leave_the_nonphi_lake_a_day_after_vacuum() -> None:
    # A VACUUM after `privacy forget` only puts delete markers on a versioned bucket: the noncurrent versions
    # (Parquet files, cleaned _delta_log files) stayed readable by GetObjectVersion for 30 more days.
    nonphi = lifecycle_rules("nonphi_lake")["expire-noncurrent-versions"]
    assert one(nonphi, "filter") == {}
    assert one(nonphi, "noncurrent_version_expiration") == {"noncurrent_days": 1}
    assert one(nonphi, "expiration") == {"expired_object_delete_marker": True}
    # The PHI zone erases nothing by design (history keeps every version): its old versions stay a recovery net.
    phi = lifecycle_rules("phi_lake")["expire-noncurrent-versions"]
    assert one(phi, "noncurrent_version_expiration") == {"noncurrent_days": 30}
    # Neither lake ever expires a current object (that would delete live table files).
    expiring = [
        f"{lake}: {rule['id']}"
        for lake in ("phi_lake", "nonphi_lake")
        for rule in lifecycle_rules(lake).values()
        if "days" in (one(rule, "expiration") if "expiration" in rule else {})
    ]
    assert expiring == []


def test_the_routed_dms_copies_expire_well_after_the_streams_max_file_age() -> None:
    from tests.terraform_values import Terraform

    terraform = Terraform({"environment": "test"})
    copies = lifecycle_rules("in_process")["expire-routed-dms-copies"]
    prefix = one(copies, "filter")["prefix"]
    # the folder the landing router copies to, and the one every DMS table of config/aws.yaml reads
    router = locals_(parse_dir(TERRAFORM))["lambdas"]["landing_router"]["environment"]
    assert prefix == terraform.evaluate(router["TARGET_PREFIX"]) + "/"
    tables = yaml.safe_load((ROOT / "config" / "aws.yaml").read_text())["tables"]
    dms_paths = [t["source"]["path"] for t in tables.values() if t["source"]["kind"] == "dms"]
    folder = "s3://${IN_PROCESS_BUCKET}/${IN_PROCESS_PREFIX:-dms}/p_date=*/"  # rendered from config_values
    assert dms_paths and all(p.startswith(folder) for p in dms_paths)
    assert terraform.evaluate(locals_(parse_dir(TERRAFORM))["config_values"]["IN_PROCESS_PREFIX"]) + "/" == prefix
    # a file older than max_file_age is never taken again; the rest is the margin for an outage or a replay
    days = one(copies, "expiration")["days"]
    assert days == terraform.vars["in_process_expiration_days"] == 30
    assert days * 24 >= max_file_age_hours() + 21 * 24
    condition = one(variables(parse_dir(TERRAFORM))["in_process_expiration_days"], "validation")["condition"]
    floor = re.search(r"var\.in_process_expiration_days > (\d+)", condition)
    assert floor and int(floor.group(1)) * 24 >= max_file_age_hours(), condition
    # the copy is derived (the original stays in the landing bucket): its old versions go after a day
    assert one(copies, "noncurrent_version_expiration") == {"noncurrent_days": 1}
    assert one(lifecycle_rules("in_process")["expire-noncurrent-versions"], "noncurrent_version_expiration") == {
        "noncurrent_days": 1
    }


def test_athena_query_results_expire_from_the_artifacts_bucket() -> None:
    from tests.terraform_values import Terraform

    terraform = Terraform({"environment": "test"})
    results = lifecycle_rules("artifacts")["expire-athena-results"]
    workgroup = blocks(parse_dir(TERRAFORM), "resource")["aws_athena_workgroup.zone"]
    location = one(one(workgroup, "configuration"), "result_configuration")["output_location"]
    zones = terraform.evaluate(workgroup["for_each"])
    assert zones == {"phi": "lakehouse-test", "nonphi": "lakehouse-test-nonphi"}
    locations = {zone: terraform.evaluate(location.replace("${each.key}", zone)) for zone in zones}
    # One folder per zone's workgroup (its members see its results and query texts), both under the expiring prefix.
    prefix = f"{terraform.local('artifacts_uri')}/{one(results, 'filter')['prefix']}"
    assert locations == {"phi": f"{prefix}phi/", "nonphi": f"{prefix}nonphi/"}
    assert one(results, "expiration") == {"days": terraform.vars["athena_results_expiration_days"]}
    assert terraform.vars["athena_results_expiration_days"] == 7
    assert one(results, "noncurrent_version_expiration") == {"noncurrent_days": 1}
