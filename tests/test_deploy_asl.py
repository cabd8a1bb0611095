"""The Step Functions state machines: valid States Language, the right integrations, and flows that behave.

Each ASL file is rendered the way Terraform's templatefile renders it, then checked by two independent
validators (asl-validator from npm, statelint from PyPI), by structural assertions (task ARNs, retries,
catches, timeouts, every EMR error path reaching the teardown), and by running the flows on moto's
Step Functions interpreter with the long-running integrations swapped for their request-response
counterparts (moto cannot run ``.sync`` integrations).
"""

from __future__ import annotations

import datetime
import itertools
import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[1]
ASL_DIR = ROOT / "deploy" / "stepfunctions"
ASL_VALIDATOR = ROOT / "deploy" / "node_modules" / ".bin" / "asl-validator"
STATELINT = Path(sys.executable).with_name("statelint")
REGION = "us-east-1"
ACCOUNT = "123456789012"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:lakehouse-test-alerts"
CONTROL_TABLE = "lakehouse-test-control"

SNAPSHOT = {"bucket": "lakehouse-test-landing", "key": "opais/340b/OPA_CE_DAILY_PUBLIC_2026-11-23.zip"}
GLUE_SYNC = "arn:aws:states:::glue:startJobRun.sync"
SNS_PUBLISH = "arn:aws:states:::sns:publish"
DYNAMODB_UPDATE = "arn:aws:states:::dynamodb:updateItem"
LIST_EXECUTIONS = "arn:aws:states:::aws-sdk:sfn:listExecutions"
EMR = "arn:aws:states:::elasticmapreduce:"

# The values Terraform passes to templatefile (deploy/terraform/stepfunctions.tf), with test names.
VARIABLES = {
    "glue_flow.asl.json": {
        "apply_units": "patients,devices,therapy_sessions",
        "policy_source_table": "consents",
        "control_table": CONTROL_TABLE,
        "pipeline": "cpap",
        "policy_build_job": "lakehouse-test-policy-build",
        "apply_once_job": "lakehouse-test-apply-once",
        "export_job": "lakehouse-test-export-postgres",
        "sns_topic_arn": TOPIC,
    },
    "emr_flow.asl.json": {
        "apply_units": "patients,devices",
        "policy_source_table": "consents",
        "control_table": CONTROL_TABLE,
        "pipeline": "cpap",
        "delta_log_table": "lakehouse-test-delta-log",
        "region": REGION,
        "log_store_jar_uri": "s3://lakehouse-test-artifacts/jars/delta-storage-s3-dynamodb-3.3.2.jar",
        "sns_topic_arn": TOPIC,
        "cluster_name": "lakehouse-test",
        "emr_release_label": "emr-7.12.0",
        "emr_service_role": "lakehouse-test-emr-service",
        "emr_instance_profile": "lakehouse-test-emr-instance",
        "emr_security_configuration": "lakehouse-test-emr",
        "emr_log_uri": "s3://lakehouse-test-artifacts/emr-logs/",
        "subnet_id": "subnet-0123456789abcdef0",
        "emr_security_group": "sg-0123456789abcdef0",
        "primary_instance_type": "m7g.xlarge",
        "core_instance_type": "r7g.2xlarge",
        "bootstrap_script_uri": "s3://lakehouse-test-artifacts/emr/install-wheel.sh",
        "wheel_uri": "s3://lakehouse-test-artifacts/wheels/lakehouse-0.1.0-py3-none-any.whl",
        "jobs_uri": "s3://lakehouse-test-artifacts/jobs",
        "config_uri": "s3://lakehouse-test-artifacts/config/aws.yaml",
        "project": "lakehouse",
        "environment": "test",
    },
}
ASL_FILES = sorted(VARIABLES)


def placeholders(text: str) -> set[str]:
    return set(re.findall(r"\$\{(\w+)\}", text))


def render(name: str, variables: dict[str, str] | None = None) -> str:
    """Fill ${...} as Terraform's templatefile does; an unknown or missing variable is an error there too."""
    text = (ASL_DIR / name).read_text()
    assert "%{" not in text and "$${" not in text, f"{name}: templatefile directives are not expected in ASL"
    # templatefile reads every ${...} as an expression: only plain variable names may follow "${".
    assert text.count("${") == len(re.findall(r"\$\{\w+\}", text)), f"{name}: a ${{ that is not ${{name}}"
    values = variables or VARIABLES[name]
    missing = placeholders(text) - set(values)
    assert not missing, f"{name}: placeholders without a value: {sorted(missing)}"
    return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)


def load(name: str) -> dict:
    return json.loads(render(name))


def all_states(states: dict) -> Iterator[tuple[str, dict]]:
    """Every state, including those inside Map item processors and Parallel branches."""
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from all_states(branch["States"])
        if "ItemProcessor" in state:
            yield from all_states(state["ItemProcessor"]["States"])


def tasks(definition: dict) -> dict[str, dict]:
    return {name: s for name, s in all_states(definition["States"]) if s["Type"] == "Task"}


# ------------------------------------------------------------------------------------------ validators


def run_validators(path: Path) -> dict[str, subprocess.CompletedProcess]:
    if not ASL_VALIDATOR.exists():
        pytest.fail(f"{ASL_VALIDATOR} is missing: run `make deploy/node_modules/.installed` (npm ci --prefix deploy)")
    if not STATELINT.exists():
        pytest.fail(f"{STATELINT} is missing: install the dev extra (pip install -e '.[dev]')")
    return {
        "asl-validator": subprocess.run(
            [str(ASL_VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, timeout=60
        ),
        "statelint": subprocess.run([str(STATELINT), str(path)], capture_output=True, text=True, timeout=60),
    }


@pytest.mark.parametrize("name", ASL_FILES)
def test_rendered_definition_passes_both_validators(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_text(render(name))
    for tool, result in run_validators(path).items():
        assert result.returncode == 0, f"{tool} rejected {name}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize(
    ("breakage", "rejected_by"),
    [
        ("jitter", {"statelint"}),  # asl-validator 4.0.0 does not check JitterStrategy's values
        ("dangling_next", {"asl-validator", "statelint"}),
    ],
)
def test_validators_reject_a_broken_definition(breakage: str, rejected_by: set[str], tmp_path: Path) -> None:
    definition = load("glue_flow.asl.json")
    if breakage == "jitter":
        definition["States"]["BuildPolicy"]["Retry"][0]["JitterStrategy"] = "PARTIAL"
    else:
        definition["States"]["BuildPolicy"]["Next"] = "NoSuchState"
    path = tmp_path / "broken.asl.json"
    path.write_text(json.dumps(definition, indent=2))

    results = run_validators(path)

    assert {tool for tool, result in results.items() if result.returncode != 0} == rejected_by, {
        tool: result.stdout + result.stderr for tool, result in results.items()
    }


@pytest.mark.parametrize("name", ASL_FILES)
def test_placeholders_are_exactly_the_variables_terraform_passes(name: str) -> None:
    import hcl2

    with (ROOT / "deploy" / "terraform" / "stepfunctions.tf").open() as f:
        parsed = hcl2.load(f, serialization_options=hcl2.SerializationOptions(with_comments=False))
    local_name = name.removesuffix(".asl.json") + "_vars"
    passed = next(block[local_name] for block in parsed["locals"] if local_name in block)
    assert placeholders((ASL_DIR / name).read_text()) == set(passed) == set(VARIABLES[name])


# ----------------------------------------------------------------------------------------- structure


@pytest.mark.parametrize("name", ASL_FILES)
def test_every_task_has_retry_with_full_jitter_a_catch_and_a_timeout(name: str) -> None:
    for state_name, task in tasks(load(name)).items():
        assert task.get("TimeoutSeconds", 0) > 0, f"{name}: {state_name} has no TimeoutSeconds"
        assert task.get("Catch"), f"{name}: {state_name} has no Catch"
        assert task["Catch"][-1]["ErrorEquals"] == ["States.ALL"], f"{name}: {state_name} must catch everything"
        assert task.get("Retry"), f"{name}: {state_name} has no Retry"
        for retrier in task["Retry"]:
            assert (retrier["MaxAttempts"], retrier["BackoffRate"], retrier["JitterStrategy"]) == (3, 2.0, "FULL"), (
                f"{name}: {state_name} retries {retrier}"
            )


def task_seconds(task: dict) -> float:
    """The longest a task can take, retries included: each attempt up to its TimeoutSeconds, each retrier's
    attempts and (jittered, so at most) back-off waits; a task failing with several retried errors uses them all."""
    attempts, waits = 1, 0.0
    for retrier in task.get("Retry", []):
        interval, rate = retrier.get("IntervalSeconds", 1), retrier.get("BackoffRate", 2.0)
        attempts += retrier.get("MaxAttempts", 3)
        waits += sum(
            min(interval * rate**k, retrier.get("MaxDelaySeconds", math.inf))
            for k in range(retrier.get("MaxAttempts", 3))
        )
    return attempts * task["TimeoutSeconds"] + waits


def longest_run_seconds(states: dict, name: str, units: int, path: tuple[str, ...] = ()) -> float:
    """The longest an execution can take from state `name` on, over every Next, Default, choice and catch, with
    `units` items for each Map (in ceil(units / MaxConcurrency) rounds of its longest item)."""
    assert name not in path, f"a loop {(*path, name)}: no execution timeout could cover its retries"
    state = states[name]
    own = 0.0
    if state["Type"] == "Task":
        own = task_seconds(state)
    elif state["Type"] == "Wait":
        own = state["Seconds"]  # a SecondsPath / TimestampPath wait would be unbounded: KeyError here
    elif state["Type"] == "Map":
        processor = state["ItemProcessor"]
        rounds = math.ceil(units / (state.get("MaxConcurrency") or units))
        own = rounds * longest_run_seconds(processor["States"], processor["StartAt"], units)
    elif state["Type"] == "Parallel":
        own = max(longest_run_seconds(b["States"], b["StartAt"], units) for b in state["Branches"])
    following = [state.get("Next"), state.get("Default")]
    following += [c["Next"] for c in state.get("Catch", []) + state.get("Choices", [])]
    return own + max((longest_run_seconds(states, n, units, (*path, name)) for n in following if n), default=0.0)


@pytest.mark.parametrize("name", ASL_FILES)
def test_the_execution_timeout_outlasts_every_retry_the_flow_allows(name: str) -> None:
    """Found by review: the Glue flow timed out at 8 hours while one unit's four 110-minute attempts (a Glue TIMEOUT
    is a States.TaskFailed, which is retried) and the rest could take longer, cutting the export, the summary and
    the notices (and in the EMR flow the teardown). The timeout is derived from the deployed units and the retries."""
    from tests.terraform_values import Terraform, parse_dir

    deployed = Terraform({"environment": "test"}).vars  # local.apply_units, as tests/test_deploy_config.py reads it
    units = len([t for t in deployed["dms_tables"] if t != deployed["policy_source_table"]]) + len(
        deployed["snapshot_feeds"]
    )
    definition = load(name)
    longest = longest_run_seconds(definition["States"], definition["StartAt"], units)
    assert longest <= definition["TimeoutSeconds"] < longest + 3600, (name, longest)
    assert math.ceil(8 / 4) == math.ceil(units / 4)  # the Comment's promise: up to 8 units fit the same rounds

    # A Glue run ends by its own job timeout (TIMEOUT, retried as States.TaskFailed) within its task's timeout, so
    # the task's timeout is the bound of an attempt used above.
    stepfunctions = (ROOT / "deploy/terraform/stepfunctions.tf").read_text()
    jobs = dict(re.findall(r'(\w+)\s*=\s*aws_glue_job\.batch\["(\w+)"\]\.name', stepfunctions))
    glue_jobs = {k: v for d in parse_dir().values() for b in d.get("locals", []) for k, v in b.items()}["glue_jobs"]
    raw = json.loads((ASL_DIR / name).read_text())  # the placeholders are inside strings
    for state_name, task in tasks(raw).items():
        if task["Resource"] == GLUE_SYNC:
            job = jobs[task["Parameters"]["JobName"].removeprefix("${").removesuffix("}")]
            assert glue_jobs[job]["timeout"] * 60 < task["TimeoutSeconds"], (state_name, job)


def test_glue_flow_moves_the_folder_applies_consents_builds_the_policy_then_every_unit_then_the_export() -> None:
    definition = load("glue_flow.asl.json")
    states = definition["States"]
    by_resource = {name: t["Resource"] for name, t in tasks(definition).items()}

    assert {r for r in by_resource.values()} == {GLUE_SYNC, SNS_PUBLISH, DYNAMODB_UPDATE, LIST_EXECUTIONS}
    for here, there in itertools.pairwise(["DeployedTables", "AdvanceFolder", "ApplyConsents", "BuildPolicy"]):
        assert states[here]["Next"] == there
    assert states["ApplyConsents"]["Parameters"] == {
        "JobName": "lakehouse-test-apply-once",
        "Arguments": {"--table": "consents"},
    }
    assert states["ApplyConsents"]["Catch"][0]["Next"] == "NotifyPolicyFailed"  # no table on a stale policy
    assert states["BuildPolicy"]["Parameters"]["JobName"] == "lakehouse-test-policy-build"
    assert states["BuildPolicy"]["Next"] == "ApplyTables"
    apply = states["ApplyTables"]
    assert apply["Type"] == "Map" and apply["ItemsPath"] == "$.table_list.names"
    assert apply["Next"] == "ExportToPostgres"
    apply_once = apply["ItemProcessor"]["States"]["ApplyOnce"]
    assert apply_once["Resource"] == GLUE_SYNC
    assert apply_once["Parameters"] == {"JobName": "lakehouse-test-apply-once", "Arguments": {"--table.$": "$.table"}}
    assert states["ExportToPostgres"]["Parameters"]["JobName"] == "lakehouse-test-export-postgres"
    assert states["DeployedTables"]["Parameters"]["names.$"] == (
        "States.StringSplit('patients,devices,therapy_sessions', ',')"
    )


def test_glue_flow_catches_a_table_failure_inside_its_own_iteration() -> None:
    iteration = load("glue_flow.asl.json")["States"]["ApplyTables"]["ItemProcessor"]["States"]
    catch = iteration["ApplyOnce"]["Catch"][0]
    notify = iteration[catch["Next"]]

    assert catch["ResultPath"] == "$.error"  # keeps $.table for the message
    assert notify["Resource"] == SNS_PUBLISH
    message = notify["Parameters"]["Message.$"]
    assert message.startswith("States.Format(") and "$.table" in message and "$.error.Cause" in message
    assert iteration[notify["Next"]] == {
        "Type": "Pass",
        "Parameters": {"table.$": "$.table", "status": "FAILED", "error.$": "$.error.Error"},
        "End": True,
    }


def test_glue_flow_ends_failed_after_notifying_when_anything_failed() -> None:
    states = load("glue_flow.asl.json")["States"]
    partial = states["AllSucceeded"]["Choices"][0]

    assert states[partial["Next"]]["Resource"] == SNS_PUBLISH
    assert states[states[partial["Next"]]["Next"]]["Type"] == "Fail"
    assert states[states[states["AllSucceeded"]["Default"]]["Next"]]["Type"] == "Succeed"


def successors(state: dict, *, catches: bool = True) -> set[str]:
    nexts = {state.get("Next"), state.get("Default")} | {c["Next"] for c in state.get("Choices", [])}
    if catches:
        nexts |= {c["Next"] for c in state.get("Catch", [])}
    return {n for n in nexts if n}


def reachable(states: dict, start: str, *, catches: bool = True) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(successors(states[name], catches=catches))
    return seen


def test_emr_flow_creates_a_delta_cluster_protects_it_runs_steps_in_parallel_and_terminates() -> None:
    definition = load("emr_flow.asl.json")
    states = definition["States"]
    create = states["CreateCluster"]

    assert create["Resource"] == EMR + "createCluster.sync"
    assert {"Classification": "delta-defaults", "Properties": {"delta.enabled": "true"}} in create["Parameters"][
        "Configurations"
    ]
    assert create["Parameters"]["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    assert create["Parameters"]["AutoTerminationPolicy"]["IdleTimeout"] > 0
    happy = ["AdvanceFolder", "CreateCluster", "CheckClusterReady", "IsClusterReady", "ProtectCluster"]
    happy += ["ApplyConsentsStep", "PolicyBuildStep", "HasSnapshot", "SnapshotLoadStep", "SnapshotLoadSucceeded"]
    happy += ["RunSteps", "StepsDone", "ExportStep", "UnprotectCluster", "TerminateCluster", "WrapUp"]
    for here, there in itertools.pairwise(happy):
        assert there in successors(states[here]), f"{here} does not lead to {there}"
    assert states["CheckClusterReady"]["Resource"] == "arn:aws:states:::aws-sdk:emr:describeCluster"
    assert states["ProtectCluster"]["Parameters"]["TerminationProtected"] is True
    assert states["UnprotectCluster"]["Parameters"]["TerminationProtected"] is False
    assert states["TerminateCluster"]["Resource"] == EMR + "terminateCluster.sync"
    assert states["RunSteps"]["Type"] == "Map" and states["RunSteps"]["ItemsPath"] == "$.table_list.names"
    steps = {n: t for n, t in tasks(definition).items() if t["Resource"] == EMR + "addStep.sync"}
    assert set(steps) == {"ApplyConsentsStep", "PolicyBuildStep", "ApplyOnceStep", "SnapshotLoadStep", "ExportStep"}
    for name, step in steps.items():
        assert step["Parameters"]["Step"]["ActionOnFailure"] == "CONTINUE", name
        assert step["Parameters"]["Step"]["HadoopJarStep"]["Jar"] == "command-runner.jar", name
        args = step["Parameters"]["Step"]["HadoopJarStep"]["Args.$"]
        assert args.startswith("States.Array('spark-submit'") and "s3://lakehouse-test-artifacts/jobs/batch/" in args
    assert "'--table', $.table)" in steps["ApplyOnceStep"]["Parameters"]["Step"]["HadoopJarStep"]["Args.$"]
    snapshot_args = steps["SnapshotLoadStep"]["Parameters"]["Step"]["HadoopJarStep"]["Args.$"]
    assert "'--bucket', $.snapshot.bucket, '--key', $.snapshot.key)" in snapshot_args


def test_every_emr_error_path_notifies_and_reaches_the_cluster_teardown() -> None:
    states = load("emr_flow.asl.json")["States"]
    terminate = {n for n, s in states.items() if s.get("Resource") == EMR + "terminateCluster.sync"}
    # The states that run while the cluster is up: those whose normal path still leads to its termination.
    catchers = {
        n: s
        for n, s in states.items()
        if s.get("Catch") and n not in terminate and reachable(states, n, catches=False) & terminate
    }
    catchers.pop("CreateCluster")  # no cluster exists yet when creation fails: checked below
    catchers.pop("AdvanceFolder")  # nor before it (checked by test_each_flow_moves_the_landing_folder_first...)
    catchers.pop("ListRunning")  # nor before the guard lets the execution go on (test_each_flow_starts_with_a_guard...)
    assert {"CheckClusterReady", "ProtectCluster", "ApplyConsentsStep", "PolicyBuildStep", "RunSteps"} <= set(catchers)
    assert {"ExportStep", "UnprotectCluster"} <= set(catchers)

    for name, state in catchers.items():
        for catch in state["Catch"]:
            path = reachable(states, catch["Next"])
            assert path & terminate, f"{name}'s catch -> {catch['Next']} never terminates the cluster"
            assert any(states[n].get("Resource") == SNS_PUBLISH for n in path), f"{name}'s catch never notifies"
    # The teardown itself: a failed termination is notified with the commands to finish it by hand.
    for name in terminate:
        notify = states[states[name]["Catch"][0]["Next"]]
        assert notify["Resource"] == SNS_PUBLISH and "terminate-clusters" in notify["Parameters"]["Message.$"]
        assert states[notify["Next"]]["Type"] == "Fail"
    # Creation failed: the same choice point, whose no-cluster branch notifies and fails.
    has_cluster = states[states["CreateCluster"]["Catch"][0]["Next"]]
    assert has_cluster["Type"] == "Choice" and has_cluster["Choices"][0]["Variable"] == "$.cluster.ClusterId"
    assert reachable(states, has_cluster["Choices"][0]["Next"]) & terminate


def test_emr_cluster_can_start_under_the_managed_policy_with_python_3_11_and_the_log_store() -> None:
    create = load("emr_flow.asl.json")["States"]["CreateCluster"]["Parameters"]
    tags = {t["Key"]: t["Value"] for t in create["Tags"]}
    spark_defaults = next(c for c in create["Configurations"] if c["Classification"] == "spark-defaults")["Properties"]
    spark_env = next(c for c in create["Configurations"] if c["Classification"] == "spark-env")

    assert tags["for-use-with-amazon-emr-managed-policies"] == "true"  # AmazonEMRServicePolicy_v2 needs it
    assert (
        spark_defaults["spark.pyspark.python"] == spark_defaults["spark.pyspark.driver.python"] == "/usr/bin/python3.11"
    )
    assert spark_env["Configurations"][0]["Properties"]["PYSPARK_PYTHON"] == "/usr/bin/python3.11"
    # boto3 takes no region from an EC2 node's metadata: the secrets' and the leases' clients read it. A step's
    # driver runs in YARN's application master (--deploy-mode cluster), which spark-env.sh does not reach.
    assert spark_env["Configurations"][0]["Properties"]["AWS_REGION"] == REGION
    assert spark_defaults["spark.yarn.appMasterEnv.AWS_REGION"] == spark_defaults["spark.executorEnv.AWS_REGION"]
    assert spark_defaults["spark.yarn.appMasterEnv.AWS_REGION"] == REGION
    assert spark_defaults["spark.delta.logStore.s3.impl"] == "io.delta.storage.S3DynamoDBLogStore"
    assert spark_defaults["spark.io.delta.storage.S3DynamoDBLogStore.ddb.tableName"] == "lakehouse-test-delta-log"
    assert spark_defaults["spark.jars"].endswith("/jars/delta-storage-s3-dynamodb-3.3.2.jar")
    bootstrap = (ROOT / "deploy" / "emr" / "install-wheel.sh").read_text()
    assert "dnf install -y -q python3.11 python3.11-pip" in bootstrap and '"$python" -m pip install' in bootstrap


def test_emr_flow_applies_consents_and_builds_the_policy_before_any_unit() -> None:
    states = load("emr_flow.asl.json")["States"]
    consents = states["ApplyConsentsStep"]["Parameters"]["Step"]["HadoopJarStep"]["Args.$"]
    policy = states["PolicyBuildStep"]["Parameters"]["Step"]["HadoopJarStep"]["Args.$"]

    assert "/batch/apply_once.py'" in consents and "'--table', 'consents')" in consents
    assert "/batch/policy_build.py'" in policy
    assert (states["ProtectCluster"]["Next"], states["ApplyConsentsStep"]["Next"]) == (
        "ApplyConsentsStep",
        "PolicyBuildStep",
    )
    assert "RunSteps" in reachable(states, "PolicyBuildStep", catches=False)
    assert "PolicyBuildStep" not in reachable(states, "RunSteps")


@pytest.mark.parametrize("name", ASL_FILES)
def test_each_flow_moves_the_landing_folder_first_and_never_backwards(name: str) -> None:
    states = load(name)["States"]
    advance = states["AdvanceFolder"]
    assert states["DeployedTables"]["Next"] == states["InputTables"]["Next"] == "AdvanceFolder"
    assert advance["Resource"] == DYNAMODB_UPDATE
    assert advance["Parameters"]["TableName"] == CONTROL_TABLE and advance["Parameters"]["Key"] == {
        "pipeline": {"S": "cpap"}
    }
    assert "p_date < :d OR (p_date = :d AND p_hour < :h)" in advance["Parameters"]["ConditionExpression"]
    # the same hour again (the condition fails) goes on; any other failure notifies and stops
    assert advance["Catch"][0] == {
        "ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"],
        "ResultPath": None,
        "Next": advance["Next"],
    }
    assert states[advance["Catch"][1]["Next"]]["Resource"] == SNS_PUBLISH


# The guard: the first states of each flow, before ChooseTables.
GUARD_STATES = {
    "ListRunning",
    "AnotherRunRunning",
    "NotifyRunSkipped",
    "RunSkipped",
    "NotifyGuardFailed",
    "GuardFailed",
}


@pytest.mark.parametrize("name", ASL_FILES)
def test_each_flow_starts_with_a_guard_that_ends_quietly_while_another_execution_runs(name: str) -> None:
    """Found by review: the executions' timeouts (37 h, 56 h) outlast the daily schedule and nothing stopped a second
    execution while one ran; two share the Glue jobs (StartJobRun refused beyond their concurrent runs) and the write
    units (a held unit waited for at every attempt, then reported failed). Each flow now first lists the RUNNING
    executions of its own state machine and, if another is among them, notifies and ends Succeeded."""
    definition = load(name)
    states = definition["States"]
    guard = states[definition["StartAt"]]

    assert definition["StartAt"] == "ListRunning" and guard["Resource"] == LIST_EXECUTIONS
    assert guard["Parameters"] == {
        "StateMachineArn.$": "$$.StateMachine.Id",
        "StatusFilter": "RUNNING",
        "MaxResults": 2,
    }
    assert guard["ResultSelector"] == {"self.$": "$$.Execution.Id", "running.$": "$.Executions[*].ExecutionArn"}
    assert guard["ResultPath"] == "$.guard"  # the execution input (tables, snapshot) goes on untouched
    choice = states[guard["Next"]]
    assert choice["Type"] == "Choice" and choice["Default"] == "ChooseTables"
    # From the guard, the flow is reached only through ChooseTables, and nothing of the flow leads back to it.
    before_flow = reachable({**states, "ChooseTables": {}}, definition["StartAt"])
    assert before_flow == GUARD_STATES | {"ChooseTables"}
    assert not reachable(states, "ChooseTables") & GUARD_STATES
    # Another execution running: a notice naming this execution and the running ones, then Succeed and nothing else.
    goes_on = [c for c in choice["Choices"] if c["Next"] == "ChooseTables"]  # this one is the older of two
    assert len(goes_on) == 1 and goes_on[0]["And"][1] == {
        "Variable": "$.guard.running[1]",
        "StringEqualsPath": "$.guard.self",
    }
    for skip in {c["Next"] for c in choice["Choices"]} - {"ChooseTables"}:
        notice = states[skip]
        assert notice["Resource"] == SNS_PUBLISH
        message = notice["Parameters"]["Message.$"]
        assert "still running" in message and "$$.Execution.Id" in message and "$.guard.running" in message
        assert "'" not in message.removeprefix("States.Format('").split("',", 1)[0]
        ends = {n for n in reachable(states, skip) if states[n]["Type"] in ("Succeed", "Fail")}
        assert {states[n]["Type"] for n in ends} == {"Succeed"} and reachable(states, skip) <= GUARD_STATES
    # The executions cannot be listed: notify and fail rather than risk a second run beside the first.
    failed = reachable(states, guard["Catch"][-1]["Next"])
    assert guard["Catch"][-1]["ErrorEquals"] == ["States.ALL"] and failed <= GUARD_STATES
    assert {states[n]["Type"] for n in failed} == {"Task", "Fail"}
    assert any(states[n].get("Resource") == SNS_PUBLISH for n in failed)


def test_emr_step_failures_are_caught_inside_their_branch() -> None:
    definition = load("emr_flow.asl.json")
    for name in ("ApplyOnceStep", "SnapshotLoadStep"):
        catch_to = tasks(definition)[name]["Catch"][0]["Next"]
        branch_states = dict(all_states(definition["States"]))
        assert branch_states[catch_to]["Resource"] == SNS_PUBLISH
        assert branch_states[branch_states[catch_to]["Next"]]["Type"] == "Pass"


# ------------------------------------------------------------------------- running the flows on moto


@pytest.fixture(scope="module")
def sfn_server(moto_server: str) -> Iterator[str]:
    """The moto server (tests/moto_server.py) with Step Functions interpreting state machines
    (moto's `execute_state_machine` option), switched back off after this module."""
    import requests

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOTO_PORT", moto_server.rsplit(":", 1)[-1])  # the interpreter calls the services back here
        requests.post(
            f"{moto_server}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}, timeout=10
        )
        create_control_table(moto_server)
        yield moto_server
        requests.post(
            f"{moto_server}/moto-api/config", json={"stepfunctions": {"execute_state_machine": False}}, timeout=10
        )


def create_control_table(url: str) -> None:
    """The landing router's control table the flows' first step updates."""
    dynamodb = client_for("dynamodb", url)
    if CONTROL_TABLE not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(
            TableName=CONTROL_TABLE,
            KeySchema=[{"AttributeName": "pipeline", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pipeline", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )


def client_for(service: str, url: str):
    return boto3.client(service, endpoint_url=url, region_name=REGION)


def make_runnable(states: dict, *, failing: set[str] = frozenset()) -> None:
    """Swap the integrations moto cannot run for their request-response twins, in place.

    glue:startJobRun.sync -> aws-sdk:glue:startJobRun; EMR's optimized integrations -> the EMR API
    calls they wrap; the guard's sfn:listExecutions in the casing moto reads. A state named in `failing`
    becomes a call that fails (a Glue job that does not exist). Retries keep their shape, with one-second delays.
    """
    for name, state in states.items():
        for retrier in state.get("Retry", []):
            retrier.update(IntervalSeconds=1, MaxDelaySeconds=1)
        for branch in state.get("Branches", []):
            make_runnable(branch["States"], failing=failing)
        if "ItemProcessor" in state:
            make_runnable(state["ItemProcessor"]["States"], failing=failing)
        resource, params = state.get("Resource", ""), state.get("Parameters", {})
        if name in failing:
            state.update(Resource="arn:aws:states:::aws-sdk:glue:startJobRun", Parameters={"JobName": "no-such-job"})
            state.pop("ResultSelector", None)
        elif resource == LIST_EXECUTIONS:
            # moto hands an aws-sdk task's parameters to boto3 as they are and returns boto3's response: the
            # Step Functions API's camelCase names, where AWS's integration takes and gives PascalCase ones.
            state["Parameters"] = {k[0].lower() + k[1:]: v for k, v in params.items()}
            state["ResultSelector"]["running.$"] = "$.executions[*].executionArn"
        elif resource == GLUE_SYNC:
            state["Resource"] = "arn:aws:states:::aws-sdk:glue:startJobRun"
            state["ResultSelector"] = {k: v.replace("$.Id", "$.JobRunId") for k, v in state["ResultSelector"].items()}
        elif resource == EMR + "createCluster.sync":
            params.pop("SecurityConfiguration")
            state.update(
                Resource="arn:aws:states:::aws-sdk:emr:runJobFlow", ResultSelector={"ClusterId.$": "$.JobFlowId"}
            )
        elif resource == EMR + "setClusterTerminationProtection":
            ids = f"States.Array({params['ClusterId.$']})"
            state.update(
                Resource="arn:aws:states:::aws-sdk:emr:setTerminationProtection",
                Parameters={"JobFlowIds.$": ids, "TerminationProtected": params["TerminationProtected"]},
            )
        elif resource == EMR + "addStep.sync":
            state["Resource"] = "arn:aws:states:::aws-sdk:emr:addJobFlowSteps"
            state["Parameters"] = {"JobFlowId.$": params["ClusterId.$"], "Steps": [params["Step"]]}
            if "step_id.$" in state.get("ResultSelector", {}):
                state["ResultSelector"] = {"step_id.$": "$.StepIds[0]"}
        elif resource == EMR + "terminateCluster.sync":
            state["Resource"] = "arn:aws:states:::aws-sdk:emr:terminateJobFlows"
            state["Parameters"] = {"JobFlowIds.$": f"States.Array({params['ClusterId.$']})"}


def execute(
    url: str, definition: dict | None, run: str, execution_input: dict | None = None, *, machine: str | None = None
) -> tuple[dict, list[str], list[str]]:
    """Run a definition (or a new execution of `machine`) to its end: (execution, states entered, SNS messages)."""
    sns, sqs, sfn = client_for("sns", url), client_for("sqs", url), client_for("stepfunctions", url)
    queue = sqs.create_queue(QueueName=f"alerts-{run}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    subscription = sns.subscribe(
        TopicArn=TOPIC, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )["SubscriptionArn"]
    if machine is None:
        machine = sfn.create_state_machine(
            name=run, definition=json.dumps(definition), roleArn=f"arn:aws:iam::{ACCOUNT}:role/lakehouse-test-sfn"
        )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, name=run, input=json.dumps(execution_input or {}))[
        "executionArn"
    ]
    deadline = time.monotonic() + 60
    while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{run} still running after 60 s"
        time.sleep(0.2)
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
    sns.unsubscribe(SubscriptionArn=subscription)
    messages = [m["Body"] for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])]
    return execution, entered, messages


@pytest.fixture(scope="module")
def glue_jobs(sfn_server: str) -> str:
    client_for("sns", sfn_server).create_topic(Name=TOPIC.rsplit(":", 1)[-1])
    glue = client_for("glue", sfn_server)
    for job in ("lakehouse-test-policy-build", "lakehouse-test-apply-once", "lakehouse-test-export-postgres"):
        glue.create_job(
            Name=job,
            Role=f"arn:aws:iam::{ACCOUNT}:role/glue",
            Command={"Name": "glueetl", "ScriptLocation": "s3://a/b.py"},
        )
    return sfn_server


def test_glue_flow_run_where_one_table_fails_applies_the_others_and_ends_failed(glue_jobs: str) -> None:
    definition = load("glue_flow.asl.json")
    make_runnable(definition["States"])
    # The apply job of `devices` does not exist: its iteration fails, the others do not.
    apply_once = definition["States"]["ApplyTables"]["ItemProcessor"]["States"]["ApplyOnce"]["Parameters"]
    apply_once["JobName.$"] = "States.Format('lakehouse-test-{}', $.table)"
    del apply_once["JobName"]
    glue = client_for("glue", glue_jobs)
    for table in ("patients", "therapy_sessions"):
        glue.create_job(
            Name=f"lakehouse-test-{table}", Role="r", Command={"Name": "glueetl", "ScriptLocation": "s3://a/b.py"}
        )

    execution, entered, messages = execute(glue_jobs, definition, "glue-partial")

    assert (execution["status"], execution["error"]) == ("FAILED", "Lakehouse.PartialFailure")
    assert entered.count("TableApplied") == 2 and entered.count("TableFailed") == 1
    assert "ExportToPostgres" in entered and entered[-2:] == ["NotifyPartial", "PartialFailure"]
    [table_failed] = [m for m in messages if "table devices failed" in m]
    assert "EntityNotFoundException" in table_failed  # the error and its cause are in the message
    [summary] = [m for m in messages if "some of the 3 tables" in m]
    assert '"table":"devices","status":"FAILED"' in summary and '"table":"patients","status":"SUCCEEDED"' in summary


def test_glue_flow_run_where_everything_succeeds_publishes_the_summary(glue_jobs: str) -> None:
    definition = load("glue_flow.asl.json")
    make_runnable(definition["States"])

    execution, entered, messages = execute(glue_jobs, definition, "glue-ok")

    assert execution["status"] == "SUCCEEDED", execution
    assert entered.count("TableApplied") == 3 and entered[-2:] == ["NotifySuccess", "Done"]
    assert any("all 3 tables applied and exported" in m for m in messages)
    # the first step moved the landing router on to the run's hour
    started = execution["startDate"].astimezone(datetime.UTC)
    item = client_for("dynamodb", glue_jobs).get_item(TableName=CONTROL_TABLE, Key={"pipeline": {"S": "cpap"}})["Item"]
    assert (item["p_date"]["S"], item["p_hour"]["S"]) in {
        (t.date().isoformat(), f"{t.hour:02d}") for t in (started, started + datetime.timedelta(seconds=5))
    }


def test_glue_flow_run_never_moves_the_folder_backwards(glue_jobs: str) -> None:
    dynamodb = client_for("dynamodb", glue_jobs)
    future = {"pipeline": {"S": "cpap"}, "p_date": {"S": "2999-01-01"}, "p_hour": {"S": "05"}}
    dynamodb.put_item(TableName=CONTROL_TABLE, Item=future)
    definition = load("glue_flow.asl.json")
    make_runnable(definition["States"])

    execution, entered, _ = execute(glue_jobs, definition, "glue-folder-kept")

    assert execution["status"] == "SUCCEEDED" and "FolderFailed" not in entered
    assert dynamodb.get_item(TableName=CONTROL_TABLE, Key={"pipeline": {"S": "cpap"}})["Item"] == future
    dynamodb.delete_item(TableName=CONTROL_TABLE, Key={"pipeline": {"S": "cpap"}})


def test_glue_flow_run_stops_before_any_table_when_the_policy_build_fails(glue_jobs: str) -> None:
    definition = load("glue_flow.asl.json")
    make_runnable(definition["States"], failing={"BuildPolicy"})

    execution, entered, messages = execute(glue_jobs, definition, "glue-policy")

    assert (execution["status"], execution["error"]) == ("FAILED", "Lakehouse.PolicyBuildFailed")
    assert "ApplyTables" not in entered
    assert any("the policy build failed" in m for m in messages)


@pytest.mark.parametrize(
    ("failing", "error", "last_states", "says"),
    [
        (set(), None, ["NotifySuccess", "Done"], "every step succeeded"),
        (
            {"SnapshotLoadStep"},
            "Lakehouse.PartialFailure",
            ["NotifyPartial", "PartialFailure"],
            "snapshot_load step of s3://lakehouse-test-landing/opais",
        ),
        ({"ProtectCluster"}, "Lakehouse.RunFailed", ["TerminateAfterFailure", "RunFailed"], "is being torn down"),
        (
            {"ExportStep"},
            "Lakehouse.PartialFailure",
            ["NotifyPartial", "PartialFailure"],
            "export_postgres step failed",
        ),
    ],
)
def test_emr_flow_run_always_ends_with_the_cluster_terminated(
    sfn_server: str, failing: set[str], error: str | None, last_states: list[str], says: str
) -> None:
    client_for("sns", sfn_server).create_topic(Name=TOPIC.rsplit(":", 1)[-1])
    emr = client_for("emr", sfn_server)
    before = {c["Id"] for c in emr.list_clusters()["Clusters"]}
    definition = load("emr_flow.asl.json")
    make_runnable(definition["States"], failing=failing)

    run = f"emr-{'-'.join(sorted(failing)) or 'ok'}"
    execution, entered, messages = execute(sfn_server, definition, run, {"snapshot": SNAPSHOT})

    assert execution["status"] == ("FAILED" if error else "SUCCEEDED") and execution.get("error") == error
    assert entered[-2:] == last_states
    [cluster] = [c["Id"] for c in emr.list_clusters()["Clusters"] if c["Id"] not in before]
    described = emr.describe_cluster(ClusterId=cluster)["Cluster"]
    assert described["Status"]["State"] == "TERMINATED" and described["TerminationProtected"] is False
    assert any(says in m for m in messages), messages


def test_emr_flow_run_with_a_snapshot_without_its_bucket_loads_none_and_tears_the_cluster_down(sfn_server: str) -> None:
    """Found by review: the flow checked only the snapshot's key, and the step's path lookup of its bucket then failed
    the execution in a way no Catch takes, with the cluster still running and protected from termination."""
    client_for("sns", sfn_server).create_topic(Name=TOPIC.rsplit(":", 1)[-1])
    emr = client_for("emr", sfn_server)
    before = {c["Id"] for c in emr.list_clusters()["Clusters"]}
    definition = load("emr_flow.asl.json")
    make_runnable(definition["States"])

    snapshot = {"key": SNAPSHOT["key"]}
    execution, entered, messages = execute(sfn_server, definition, "emr-no-bucket", {"snapshot": snapshot})

    assert (execution["status"], execution.get("error")) == ("FAILED", "Lakehouse.PartialFailure")
    assert "SnapshotInputIncomplete" in entered and "SnapshotLoadStep" not in entered
    assert entered[-2:] == ["NotifyPartial", "PartialFailure"]
    [cluster] = [c["Id"] for c in emr.list_clusters()["Clusters"] if c["Id"] not in before]
    described = emr.describe_cluster(ClusterId=cluster)["Cluster"]
    assert described["Status"]["State"] == "TERMINATED" and described["TerminationProtected"] is False
    assert any("needs both bucket and key" in m for m in messages), messages


def test_emr_flow_run_that_cannot_create_the_cluster_notifies_and_fails(sfn_server: str) -> None:
    client_for("sns", sfn_server).create_topic(Name=TOPIC.rsplit(":", 1)[-1])
    definition = load("emr_flow.asl.json")
    make_runnable(definition["States"], failing={"CreateCluster"})

    execution, entered, messages = execute(sfn_server, definition, "emr-create")

    assert (execution["status"], execution["error"]) == ("FAILED", "Lakehouse.RunFailed")
    assert entered[-3:] == ["HasCluster", "NotifyCreateFailed", "RunFailed"]
    assert any("could not be created" in m for m in messages)


def test_emr_flow_run_without_a_snapshot_in_its_input_loads_none(sfn_server: str) -> None:
    client_for("sns", sfn_server).create_topic(Name=TOPIC.rsplit(":", 1)[-1])
    definition = load("emr_flow.asl.json")
    make_runnable(definition["States"])

    execution, entered, _ = execute(sfn_server, definition, "emr-no-snapshot", {"tables": ["patients"]})

    assert execution["status"] == "SUCCEEDED"
    assert "NoSnapshot" in entered and "SnapshotLoadStep" not in entered
    assert entered.count("ApplyOnceStep") == 1


def test_glue_flow_run_with_a_table_list_in_its_input_applies_only_those(glue_jobs: str) -> None:
    definition = load("glue_flow.asl.json")
    make_runnable(definition["States"])

    execution, entered, messages = execute(glue_jobs, definition, "glue-subset", {"tables": ["devices"]})

    assert execution["status"] == "SUCCEEDED"
    assert entered.count("ApplyOnce") == 1
    assert any("all 1 tables applied" in m for m in messages)


@pytest.mark.parametrize("name", ASL_FILES)
@pytest.mark.parametrize(
    ("listed", "goes_on"),
    [
        ([], True),  # ListExecutions is eventually consistent: this execution may not be listed yet
        (["self"], True),
        (["other"], False),  # another one, this one not listed yet
        (["self", "other"], False),  # newest first: the other one is older, it goes on
        (["other", "self"], True),  # this one is the older of two started together: it goes on, the other skips
        (["other", "third"], False),
    ],
)
def test_the_guard_goes_on_only_when_no_older_execution_is_listed(
    sfn_server: str, name: str, listed: list[str], goes_on: bool
) -> None:
    """The flow's own Choice, run on moto's interpreter on each answer ListExecutions (MaxResults 2) can give."""
    choice = json.loads(json.dumps(load(name)["States"]["AnotherRunRunning"]))
    choice["Default"] = "WentOn"
    for rule in choice["Choices"]:
        rule["Next"] = "WentOn" if rule["Next"] == "ChooseTables" else "Skipped"
    run = f"guard-{name.split('_')[0]}-{'-'.join(listed) or 'none'}"
    arns = {
        "self": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{run}:{run}",
        "other": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{run}:earlier",
        "third": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{run}:earliest",
    }
    definition = {
        "StartAt": "Listed",
        "States": {
            "Listed": {
                "Type": "Pass",
                "Parameters": {"self.$": "$$.Execution.Id", "running.$": "$.listed"},
                "ResultPath": "$.guard",
                "Next": "AnotherRunRunning",
            },
            "AnotherRunRunning": choice,
            "WentOn": {"Type": "Succeed"},
            "Skipped": {"Type": "Succeed"},
        },
    }
    execution, entered, _ = execute(sfn_server, definition, run, {"listed": [arns[e] for e in listed]})

    assert execution["executionArn"] == arns["self"]
    assert execution["status"] == "SUCCEEDED" and entered[-1] == ("WentOn" if goes_on else "Skipped"), entered


def test_glue_flow_run_started_while_another_runs_notifies_and_ends_without_applying(glue_jobs: str) -> None:
    """Two executions of one state machine: the second, started while the first runs, lists it, says so on SNS and
    ends Succeeded before moving the folder or starting any job; the first applies every unit."""
    sfn = client_for("stepfunctions", glue_jobs)
    definition = load("glue_flow.asl.json")
    make_runnable(definition["States"])
    states = definition["States"]
    # The first execution waits after its guard (input {"hold": seconds}) so that the second starts while it runs.
    states["AnotherRunRunning"]["Default"] = "Hold"
    states["Hold"] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.hold", "IsPresent": True, "Next": "Holding"}],
        "Default": "ChooseTables",
    }
    states["Holding"] = {"Type": "Wait", "SecondsPath": "$.hold", "Next": "ChooseTables"}
    machine = sfn.create_state_machine(
        name="glue-overlap",
        definition=json.dumps(definition),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/lakehouse-test-sfn",
    )["stateMachineArn"]
    first = sfn.start_execution(stateMachineArn=machine, name="first", input=json.dumps({"hold": 5}))["executionArn"]
    deadline = time.monotonic() + 30
    while "Holding" not in [
        e["stateEnteredEventDetails"]["name"]
        for e in sfn.get_execution_history(executionArn=first, maxResults=1000)["events"]
        if "stateEnteredEventDetails" in e
    ]:
        assert time.monotonic() < deadline, "the first execution never reached its hold"
        time.sleep(0.2)

    second, entered, messages = execute(glue_jobs, None, "second", machine=machine)

    assert sfn.describe_execution(executionArn=first)["status"] == "RUNNING"  # the second ran while it did
    assert second["status"] == "SUCCEEDED", second
    assert entered == ["ListRunning", "AnotherRunRunning", "NotifyRunSkipped", "RunSkipped"]
    [notice] = messages
    assert "lakehouse run second" in notice and "still running" in notice
    assert second["executionArn"] in notice and first in notice  # both executions named by their ARN
    deadline = time.monotonic() + 60
    while (done := sfn.describe_execution(executionArn=first))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the first execution still running after 60 s"
        time.sleep(0.2)
    assert done["status"] == "SUCCEEDED", done
    history = sfn.get_execution_history(executionArn=first, maxResults=1000)["events"]
    applied = [e for e in history if e.get("stateEnteredEventDetails", {}).get("name") == "TableApplied"]
    assert len(applied) == 3


def test_glue_flow_run_that_cannot_list_its_executions_notifies_and_fails_before_anything(glue_jobs: str) -> None:
    definition = load("glue_flow.asl.json")
    make_runnable(definition["States"], failing={"ListRunning"})

    execution, entered, messages = execute(glue_jobs, definition, "glue-guard-failed")

    assert (execution["status"], execution["error"]) == ("FAILED", "Lakehouse.GuardFailed")
    assert entered == ["ListRunning", "NotifyGuardFailed", "GuardFailed"]
    assert any("could not be listed" in m and execution["executionArn"] in m for m in messages), messages
