"""A user's mistake is one clear message (what, where, what to do) and a non-zero exit, never a traceback.

Each test feeds the real entry point (`lakehouse.cli.main`, the job scripts of batch/ through their own
`main`) one mistake a review found to end in a traceback or to be silently ignored. None starts Spark.
"""

from __future__ import annotations

import importlib
import json
import re
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from lakehouse.cli import main
from lakehouse.errors import ConfigError, InputError

ROOT = Path(__file__).resolve().parents[1]
LOCAL_YAML = ROOT / "config" / "local.yaml"
TASKS = Path(__file__).parent / "dms_tasks" / "postgres"
NOT_UTF8 = b"paths:\n  landing: caf\xe9\n"  # Latin-1, as an editor may save it


def fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command; it must exit 2 with a message and no traceback. Its stderr."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("lakehouse: error: ") and "Traceback" not in err
    return err


def refused_by_argparse(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command; argparse must refuse it (exit 2, usage and the option). Its stderr."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "usage: lakehouse" in err and "Traceback" not in err
    return err


@pytest.fixture
def no_spark(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a user error must be refused before Spark starts")

    monkeypatch.setattr("lakehouse.cli._spark", refuse)


@pytest.fixture
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment where boto3 finds no credentials, without asking any network (no instance metadata)."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SECRETSMANAGER",
        "AWS_ENDPOINT_URL_S3",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setattr("boto3.DEFAULT_SESSION", None)  # its credentials, resolved once, would be kept


def local_config(tmp_path: Path, **changes: object) -> Path:
    """config/local.yaml with top-level sections replaced, written to tmp_path."""
    data = yaml.safe_load(LOCAL_YAML.read_text(encoding="utf-8"))
    data.update(changes)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# --- 1, 2: the configuration file ------------------------------------------------------------------------------


def test_a_folder_as_the_configuration_is_named(tmp_path, capsys):
    err = fails(["--config", str(tmp_path), "run"], capsys)
    assert f"the configuration {tmp_path} is a folder: pass the YAML file" in err


def test_a_configuration_that_is_not_utf8_says_which_byte(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(NOT_UTF8)
    err = fails(["--config", str(path), "run"], capsys)
    assert "not UTF-8 text (byte 21 is 0xe9): save it as UTF-8" in err and str(path) in err


def test_a_list_as_a_yaml_key_is_a_yaml_error_with_its_line(tmp_path, capsys):
    path = tmp_path / "key.yaml"
    path.write_text("paths:\n  ? [landing, lake]\n  : data\n", encoding="utf-8")
    err = fails(["--config", str(path), "run"], capsys)
    assert "a key must be a name (text or a number), not a list (['landing', 'lake'])" in err
    assert "line 2" in err and str(path) in err


def test_a_date_yaml_cannot_hold_is_a_yaml_error_with_its_line(tmp_path, capsys):
    path = tmp_path / "date.yaml"
    path.write_text("paths:\n  landing: 2026-13-45\n", encoding="utf-8")
    err = fails(["--config", str(path), "run"], capsys)
    assert "value '2026-13-45' is not a valid timestamp (month must be in 1..12); quote it if it is text" in err
    assert "line 2" in err


def run_job(script: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """A batch/ or streaming/ script run as spark-submit runs it (its own `main`): exit code and stderr."""
    saved = sys.argv
    sys.argv = [str(ROOT / script), *argv]
    try:
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(ROOT / script), run_name="__main__")
    finally:
        sys.argv = saved
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return int(exit_.value.code or 0), err


def test_a_job_given_a_folder_or_a_latin1_file_as_its_configuration_says_so(tmp_path, capsys):
    code, err = run_job("batch/policy_build.py", ["--config", str(tmp_path)], capsys)
    assert code == 2 and "lakehouse job lakehouse-local: error: the configuration" in err and "is a folder" in err
    latin1 = tmp_path / "aws.yaml"
    latin1.write_bytes(NOT_UTF8)
    code, err = run_job("batch/apply_once.py", ["--config", str(latin1)], capsys)
    assert code == 2 and "is not UTF-8 text" in err


# --- 3, 4, 5, 17, the `latest` timestamp and the vacuum hours: the command line -------------------------------


@pytest.mark.parametrize("at", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+01:00"])
def test_a_time_beyond_the_years_once_in_utc_is_refused(at, capsys, no_spark):
    err = fails(["--config", str(LOCAL_YAML), "as-of", "patients", "--at", at], capsys)
    assert f"{at!r} is outside the times that can be read (years 1 to 9999) once converted to UTC" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["latest", "patients", "--limit", "-1"],
        ["as-of", "patients", "--at", "2026-03-01", "--limit", "-3"],
    ],
)
def test_a_negative_limit_is_refused_before_spark(argv, capsys, no_spark):
    err = refused_by_argparse(["--config", str(LOCAL_YAML), *argv], capsys)
    assert re.search(r"argument --limit: expected 0 or more, got -\d", err)


def test_a_negative_version_or_a_word_as_the_limit_is_refused(capsys, no_spark):
    err = refused_by_argparse(["latest", "patients", "--version", "-1"], capsys)
    assert "argument --version: expected 0 or more, got -1" in err
    err = refused_by_argparse(["latest", "patients", "--limit", "ten"], capsys)
    assert "argument --limit: expected a whole number, got 'ten'" in err


def test_a_demo_of_too_few_patients_is_refused(tmp_path, capsys):
    err = refused_by_argparse(["demo", "--patients", "0"], capsys)
    assert "argument --patients: expected 10 or more, got 0" in err
    from lakehouse.demo import generate
    from lakehouse.demo import main as demo_main

    with pytest.raises(InputError, match="the demo needs at least 10 patients and 1 day; got 0 and 3"):
        generate(tmp_path, patients=0)
    with pytest.raises(SystemExit) as exit_:
        demo_main([str(tmp_path), "--patients", "3"])
    assert exit_.value.code == 2 and "--patients 10 or more" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "required"),
    [
        ([], "{run,stream,as-of,latest,snapshot,policy,privacy,db,export,onboard,demo}"),
        (["snapshot"], "{load}"),
        (["privacy"], "{forget,readmit,vacuum,sync}"),
        (["db"], "{init}"),
    ],
)
def test_a_missing_subcommand_names_the_choices_not_an_internal_name(argv, required, capsys):
    err = refused_by_argparse(argv, capsys)
    assert f"the following arguments are required: {required}" in err
    assert "_command" not in err


def test_latest_at_a_timestamp_it_cannot_read_is_refused_before_spark(capsys, no_spark):
    err = fails(["--config", str(LOCAL_YAML), "latest", "patients", "--timestamp", "garbage"], capsys)
    assert "'garbage' is not a time; write it as ISO 8601" in err


def test_latest_at_a_time_the_commits_do_not_cover_is_an_input_error(monkeypatch):
    """Delta's AnalysisException (a time before the first commit) becomes an InputError with its reason."""
    from pyspark.errors import AnalysisException

    from lakehouse import timetravel

    reason = "The provided timestamp (2020-01-01 00:00:00.0) is before the earliest version available to this table"
    asked: dict[str, str] = {}

    class Reader:
        def format(self, name: str) -> Reader:
            return self

        def option(self, key: str, value: str) -> Reader:
            asked[key] = value
            return self

        def load(self, path: str) -> None:
            raise AnalysisException(message=reason)

    monkeypatch.setattr(timetravel, "_read", lambda spark, path: None)
    spark = SimpleNamespace(read=Reader())
    with pytest.raises(
        InputError, match=re.escape(f"/lake/t cannot be read at time 2020-01-01 00:00:00 UTC: {reason}")
    ):
        timetravel.latest_at(spark, "/lake/t", timestamp="2020-01-01T02:00:00+02:00")  # type: ignore[arg-type]
    assert asked == {"timestampAsOf": "2020-01-01 00:00:00"}  # the time as parse_time reads it, in UTC


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["privacy", "vacuum", "--hours", "-1"], "--hours"),
        (["privacy", "forget", "--patient", "1", "--vacuum-hours", "-1"], "--vacuum-hours"),
        (["privacy", "vacuum", "--hours", "nan"], "--hours"),
    ],
)
def test_negative_vacuum_hours_name_the_option_given(argv, option, capsys, no_spark):
    err = refused_by_argparse(argv, capsys)
    assert f"argument {option}: expected a number of hours, 0 or more" in err


def test_python_dash_m_lakehouse_runs_the_command():
    done = subprocess.run(
        [sys.executable, "-m", "lakehouse", "--config", "/nonexistent/lakehouse.yaml", "run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "lakehouse: error: configuration file not found: /nonexistent/lakehouse.yaml" in done.stderr
    assert "Traceback" not in done.stderr


# --- 6 - 11: onboarding --------------------------------------------------------------------------------------


def onboard(endpoints: Path = TASKS / "endpoints.json", tasks: Path = TASKS / "tasks.json", columns=None) -> list:
    columns = columns or TASKS / "columns.csv"
    return ["onboard", "dms", "--endpoint", str(endpoints), "--task", str(tasks), "--columns", str(columns)]


def test_onboard_output_into_a_missing_folder_or_onto_a_folder_is_refused(tmp_path, capsys):
    err = fails([*onboard(), "--output", "/nonexistent/dir/o.yaml"], capsys)
    assert "cannot write the table entries to --output /nonexistent/dir/o.yaml: no such file or directory" in err
    err = fails([*onboard(), "--output", str(tmp_path)], capsys)
    assert f"cannot write the table entries to --output {tmp_path}: is a folder. Pass a file path" in err


def test_onboard_inputs_that_are_folders_or_not_utf8_are_named(tmp_path, capsys):
    err = fails(onboard(endpoints=tmp_path), capsys)
    assert f"describe-endpoints file {tmp_path} is a folder: pass the file" in err
    latin1 = tmp_path / "tasks.json"
    latin1.write_bytes(b'{"ReplicationTasks": [{"ReplicationTaskIdentifier": "caf\xe9"}]}')
    err = fails(onboard(tasks=latin1), capsys)
    assert f"describe-replication-tasks file {latin1} is not UTF-8 text (byte 56 is 0xe9)" in err
    err = fails(onboard(columns=tmp_path), capsys)
    assert f"column list {tmp_path} is a folder" in err
    columns = tmp_path / "columns.csv"
    columns.write_bytes(b"table_schema,table_name,column_name,data_type\npublic,patients,caf\xe9,text\n")
    err = fails(onboard(columns=columns), capsys)
    assert f"column list {columns} is not UTF-8 text" in err


def test_onboard_inputs_that_are_not_json_objects_are_named(tmp_path, capsys):
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text("[]", encoding="utf-8")
    err = fails(onboard(endpoints=endpoints), capsys)
    assert f"describe-endpoints file {endpoints} holds a JSON list; expected the object" in err
    assert 'expected the object `aws dms describe-endpoints` prints, {"Endpoints": [...]}' in err
    tasks = tmp_path / "tasks.json"
    tasks.write_text("null", encoding="utf-8")
    err = fails(onboard(tasks=tasks), capsys)
    assert f"describe-replication-tasks file {tasks} holds a JSON null" in err
    tasks.write_text('{"ReplicationTasks": ["task"]}', encoding="utf-8")
    err = fails(onboard(tasks=tasks), capsys)
    assert "ReplicationTasks must be a list of objects" in err


def edited_task(tmp_path: Path, edit) -> Path:
    document = json.loads((TASKS / "tasks.json").read_text(encoding="utf-8"))
    task = document["ReplicationTasks"][0]
    task["TableMappings"] = json.dumps(edit(json.loads(task["TableMappings"])))
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_table_mappings_that_are_a_list_or_have_a_rule_id_that_is_not_a_number_are_named(tmp_path, capsys):
    err = fails(onboard(tasks=edited_task(tmp_path, lambda mappings: mappings["rules"])), capsys)
    assert 'TableMappings holds a JSON list; expected an object {"rules": [...]}' in err

    def first(mappings: dict) -> dict:
        mappings["rules"][0]["rule-id"] = "first"
        return mappings

    err = fails(onboard(tasks=edited_task(tmp_path, first)), capsys)
    assert "rule 1 has rule-id 'first'; DMS rule ids are numbers: fix it in the task's table mappings" in err


def test_a_column_position_that_is_not_a_number_names_its_row(tmp_path, capsys):
    lines = (TASKS / "columns.csv").read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace(",2,", ",first,")
    columns = tmp_path / "columns.csv"
    columns.write_text("\n".join(lines) + "\n", encoding="utf-8")
    err = fails(onboard(columns=columns), capsys)
    assert f"column list {columns}, row 2 (patients.first_name): ordinal_position (or column_id) is 'first'" in err


def test_a_key_for_a_table_the_task_does_not_replicate_is_refused(capsys):
    err = fails([*onboard(), "--key", "nosuch=id", "--key", "Patients=patient_id"], capsys)
    assert "--key nosuch=..., --key Patients=... (did you mean patients?): no such table among those task" in err
    assert "['devices', 'patients']" in err
    assert main([*onboard(), "--key", "patients=patient_id"]) == 0


# --- 12 - 15: AWS --------------------------------------------------------------------------------------------


def privacy_config(tmp_path: Path) -> Path:
    privacy = {"key_env_var": "LAKEHOUSE_TEST_UNSET_KEY", "key_secret_id": "lakehouse/masking-key"}
    return local_config(tmp_path, privacy=privacy)


@pytest.mark.parametrize("command", [["forget", "--patient", "1"], ["sync"]])
def test_privacy_without_aws_credentials_names_the_secret_and_what_to_do(
    command, tmp_path, capsys, monkeypatch, no_aws_credentials, no_spark
):
    monkeypatch.delenv("LAKEHOUSE_TEST_UNSET_KEY", raising=False)
    err = fails(["--config", str(privacy_config(tmp_path)), "privacy", *command], capsys)
    assert "cannot read the masking key from secret lakehouse/masking-key: no usable AWS credentials" in err
    assert "set AWS_PROFILE" in err and "AWS_ACCESS_KEY_ID" in err and "key privacy.key_secret_id" in err


def postgres_config(tmp_path: Path) -> Path:
    return local_config(tmp_path, postgres={"credentials": "secret", "secret_id": "prod/lakehouse/pg"})


def test_db_init_without_aws_credentials_names_the_secret(tmp_path, capsys, no_aws_credentials):
    err = fails(["--config", str(postgres_config(tmp_path)), "db", "init"], capsys)
    assert "cannot read the PostgreSQL credentials from secret prod/lakehouse/pg: no usable AWS credentials" in err
    assert "key postgres.secret_id" in err


def test_db_init_with_a_missing_secret_names_it_and_the_region(tmp_path, capsys, aws, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    err = fails(["--config", str(postgres_config(tmp_path)), "db", "init"], capsys)
    assert "cannot read the PostgreSQL credentials from secret prod/lakehouse/pg: ResourceNotFoundException" in err
    assert "it does not exist in region us-east-1; check its name and the region" in err


def test_a_denied_or_unreachable_secret_says_what_to_do(monkeypatch):
    from botocore.exceptions import EndpointConnectionError
    from botocore.stub import Stubber

    from lakehouse.aws import client
    from lakehouse.secrets import masking_key

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    sm = client("secretsmanager", region="eu-west-1")
    with Stubber(sm) as stub:
        stub.add_client_error("get_secret_value", "AccessDeniedException", "not allowed", 400)
        with pytest.raises(ConfigError) as denied:
            masking_key(env_var=None, secret_id="k", client=sm)
    message = str(denied.value)
    assert "cannot read the masking key from secret k: AccessDeniedException (not allowed): the credentials" in message
    assert "grant them secretsmanager:GetSecretValue on it (key privacy.key_secret_id)" in message

    class Unreachable:
        meta = SimpleNamespace(region_name="eu-west-1")

        def get_secret_value(self, SecretId: str) -> dict:
            raise EndpointConnectionError(endpoint_url="https://secretsmanager.eu-west-1.amazonaws.com/")

    with pytest.raises(ConfigError, match=r"AWS cannot be reached .* check the region \(region eu-west-1\)"):
        masking_key(env_var=None, secret_id="k", client=Unreachable())


def test_the_region_comes_from_aws_region_as_the_message_says(monkeypatch, tmp_path):
    from lakehouse.aws import client

    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert client("sqs").meta.region_name == "eu-west-1"  # boto3 alone reads only AWS_DEFAULT_REGION
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(
        ConfigError, match=r"no AWS region for the sqs client: set AWS_REGION \(or AWS_DEFAULT_REGION\)"
    ):
        client("sqs")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert client("sqs").meta.region_name == "ap-south-1"


def test_a_job_whose_s3_configuration_is_missing_names_the_uri(capsys, aws, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    code, err = run_job("batch/policy_build.py", ["--config", "s3://no-such-bucket/aws.yaml"], capsys)
    assert code == 2
    assert "cannot read the configuration s3://no-such-bucket/aws.yaml (--config): 404 (Not Found)" in err
    assert "it does not exist in region us-east-1" in err


def test_the_cli_reads_an_s3_configuration_as_the_jobs_do(tmp_path, capsys, aws, monkeypatch):
    """Found by review: `lakehouse --config s3://...` (the deployed configuration, from an EMR node) was taken for a
    local path ("configuration file not found: .../s3:/..."); it is read from S3 as the jobs read it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    err = fails(["--config", "s3://no-such-bucket/aws.yaml", "latest", "people"], capsys)
    assert "cannot read the configuration s3://no-such-bucket/aws.yaml (--config): 404 (Not Found)" in err
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="artifacts")
    s3.put_object(Bucket="artifacts", Key="config/bad.yaml", Body=b"paths: [1, 2]\n")
    err = fails(["--config", "s3://artifacts/config/bad.yaml", "latest", "people"], capsys)
    assert "s3://artifacts/config/bad.yaml" in err and "not found" not in err


def test_a_job_without_aws_credentials_names_its_s3_configuration(capsys, no_aws_credentials):
    code, err = run_job("batch/policy_build.py", ["--config", "s3://no-such-bucket/aws.yaml"], capsys)
    assert code == 2
    assert "cannot read the configuration s3://no-such-bucket/aws.yaml (--config): no usable AWS credentials" in err


# --- 16: the jobs' arguments ---------------------------------------------------------------------------------


def test_a_misspelt_job_argument_is_refused_with_the_jobs_arguments(tmp_path, capsys):
    code, err = run_job("batch/apply_once.py", ["--config", str(tmp_path / "c.yaml"), "--tabel", "patients"], capsys)
    assert code == 2
    assert "error: unknown argument --tabel: did you mean --table? (this job takes --JOB_NAME, --config," in err
    assert "--table, --tables, --masking_key_secret_arn, --postgres_secret_arn, each followed by its value" in err
    code, err = run_job(
        "batch/snapshot_load.py", ["--config", "c.yaml", "--key", "k", "--allow-deletes", "true", "--Feed", "x"], capsys
    )
    assert code == 2 and "unknown argument --allow-deletes: did you mean --allow_deletes?" in err
    assert "unknown argument --Feed: did you mean --feed?" in err


def test_stray_values_and_unknown_lowercase_arguments_are_refused_glues_own_are_not():
    from lakehouse.jobs import job_args

    glue = [
        "--JOB_ID",
        "j_1",
        "--JOB_RUN_ID",
        "jr_1",
        "--enable-metrics",
        "",
        "--enable-a-future-option",
        "true",
        "--continuous-log-logGroup",
        "-1",
        "--python-modules-installer-option",
        "--upgrade",  # Glue's own argument with a value that looks like an option (found by review)
    ]
    args = job_args([*glue, "--config", "c", "--TempDir", "s3://t/"], required=["config"], optional=["table"])
    assert args == {"JOB_NAME": "lakehouse-local", "config": "c", "table": None}
    for argv, problem in (
        (["--config", "c", "--table", "a", "b"], "unexpected value 'b'"),
        (["--config", "c", "--verbose"], "unknown argument --verbose"),
        (["--config", "c", "--tables=a"], "unknown argument --tables"),
        (["--config", "c", "--enable-metrics", "--tabel", "x"], "a misspelt argument after a Glue one without a value"),
        (["--config", "c", "--TempDir", "--tabel", "x"], "the same after a Glue-style name"),
    ):
        with pytest.raises(SystemExit) as exit_:
            job_args(argv, required=["config"], optional=["table"])
        assert exit_.value.code == 2, problem


def glue_flow_arguments() -> dict[str, list[dict[str, str]]]:
    """The Arguments each Glue job gets from the Glue flow's tasks, by job key of local.glue_jobs."""
    stepfunctions = (ROOT / "deploy/terraform/stepfunctions.tf").read_text()
    names = dict(re.findall(r'(\w+)\s*=\s*aws_glue_job\.batch\["(\w+)"\]\.name', stepfunctions))
    flow = json.loads((ROOT / "deploy/stepfunctions/glue_flow.asl.json").read_text())  # ${...} only inside strings
    found: dict[str, list[dict[str, str]]] = {}
    for task in _walk(flow):
        if "glue:startJobRun" in str(task["Resource"]):
            job = names[task["Parameters"]["JobName"].removeprefix("${").removesuffix("}")]
            arguments = task["Parameters"].get("Arguments", {})
            found.setdefault(job, []).append({k.removesuffix(".$"): "from-input" for k in arguments})
    return found


def _walk(node: object):
    if isinstance(node, dict):
        if "Resource" in node:
            yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def emr_steps() -> list[list[str]]:
    """The spark-submit argument lists of the EMR flow's steps and of the README's stream step."""
    steps = []
    flow = (ROOT / "deploy/stepfunctions/emr_flow.asl.json").read_text()
    for args in re.findall(r"States\.Array\(('spark-submit'.*?)\)\"", flow):
        steps.append([quoted or "from-input" for quoted, _ in re.findall(r"'([^']*)'|(\$[\w.]+)", args)])
    readme = (ROOT / "deploy/README.md").read_text(encoding="utf-8")
    steps += [json.loads(block) for block in re.findall(r'"Args": (\["spark-submit".*?\])', readme, re.DOTALL)]
    assert len(steps) >= 6
    return steps


def readme_job_runs() -> dict[str, list[dict[str, str]]]:
    """The Arguments of deploy/README.md's `aws glue start-job-run` commands, by job key of local.glue_jobs."""
    readme = (ROOT / "deploy/README.md").read_text(encoding="utf-8")
    found: dict[str, list[dict[str, str]]] = {}
    for command in re.findall(r"aws glue start-job-run [^\n]*", readme):
        jobs = {"$JOB": "privacy", "$SNAPSHOT_JOB": "snapshot_load"}
        job = jobs[re.search(r'--job-name "?([^" ]+)"?', command).group(1)]
        found.setdefault(job, []).append(json.loads(re.search(r"--arguments '(\{.*\})'", command).group(1)))
    return found


def test_every_argument_the_deploy_passes_is_accepted_by_each_job(tmp_path, capsys, monkeypatch):
    """Glue's default arguments (glue.tf) and run arguments (the Glue flow, the snapshot trigger, the runs
    deploy/README.md starts by hand), plus what Glue adds itself, and every EMR step's arguments: each job's own
    parser takes them all. The configuration they name is replaced by a missing local file, so each job gets as
    far as reading it, and says so."""
    from tests.terraform_values import parse_dir

    missing = str(tmp_path / "missing.yaml")
    parsed = parse_dir()
    glue_jobs = {k: v for d in parsed.values() for block in d.get("locals", []) for k, v in block.items()}["glue_jobs"]
    (job,) = [b["aws_glue_job"]["batch"] for d in parsed.values() for b in d.get("resource", []) if "aws_glue_job" in b]
    defaults = {name: ("" if name != "--config" else missing) for name in job["default_arguments"]}
    assert {"--config", "--masking_key_secret_arn", "--postgres_secret_arn", "--TempDir"} <= set(defaults)
    # What Glue adds to every run (its documented run-time arguments; security_configuration: glue.tf sets one).
    runtime = {"--JOB_ID": "j_0123", "--JOB_RUN_ID": "jr_0123", "--JOB_NAME": "lakehouse-prod-x"}
    runtime["--security_configuration"] = "lakehouse-prod-glue"
    runs = glue_flow_arguments()
    monkeypatch.syspath_prepend(str(ROOT / "deploy" / "lambdas"))
    trigger = importlib.import_module("snapshot_trigger")
    started: list[dict[str, str]] = []
    glue = SimpleNamespace(start_job_run=lambda JobName, Arguments: started.append(Arguments) or {"JobRunId": "jr"})
    settings = SimpleNamespace(glue_job_name="snapshot-load", dedup_table="dedup")
    dynamodb = SimpleNamespace(update_item=lambda **kwargs: None)
    trigger._start(glue, dynamodb, settings, "claim", "0", bucket="landing", key="opais/OPA_CE_DAILY_PUBLIC.zip")
    runs.setdefault("snapshot_load", []).extend(started)
    by_hand = readme_job_runs()
    assert len(by_hand["privacy"]) >= 6  # forget (with and without VACUUM), readmit, sync (and --rebuild), vacuum
    runs.update(by_hand)
    assert set(runs) == {"apply_once", "policy_build", "export_postgres", "snapshot_load", "privacy"} == set(glue_jobs)

    cases = []
    for key, spec in glue_jobs.items():
        for run in runs[key]:
            argv = [*(p for item in {**defaults, **runtime, **run}.items() for p in item)]
            cases.append((spec["script"], argv))
    for step in emr_steps():
        script = next(i for i, a in enumerate(step) if a.endswith(".py"))
        argv = [missing if prev == "--config" else a for prev, a in zip(["", *step], step, strict=False)]
        cases.append((re.sub(r"^.*?/((batch|streaming)/\w+\.py)$", r"\1", step[script]), argv[script + 1 :]))
    scripts = {script for script, _ in cases}
    assert {"batch/apply_once.py", "batch/policy_build.py", "batch/snapshot_load.py"} <= scripts
    assert {"batch/export_postgres.py", "streaming/dms_stream.py", "batch/privacy.py"} <= scripts
    for script, argv in cases:
        code, err = run_job(script, argv, capsys)
        assert code == 2 and f"error: configuration file not found: {missing}" in err, (script, argv, err)
