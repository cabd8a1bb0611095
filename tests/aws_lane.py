"""The deployed system as one whole, on this machine: `make test-aws` (not part of `make test`).

What is real here, and what stands in for AWS:
- S3, DynamoDB, Secrets Manager, SNS, CloudWatch, Glue (its API) and Step Functions: one moto server on
  127.0.0.1, with the buckets, tables, secret names, topic and Glue jobs Terraform defines (deploy/terraform,
  evaluated by tests/terraform_values.py; the tables' keys read from the HCL);
- `make deploy-artifacts` itself (deploy/artifacts.py): it builds the wheel, renders config/aws.yaml from
  Terraform's outputs and uploads everything to the artifacts bucket, then seeds the control item;
- a Spark standalone cluster (master + 2 workers, separate JVMs); every job is its batch/ script read from the
  artifacts bucket and run by `spark-submit` on that cluster with the uploaded configuration, the wheel shipped
  with `--py-files` into a Python that has the wheel's dependencies but not lakehouse (tests/glue_on_spark.py);
  `s3://` is Hadoop's S3A connector (hadoop-aws 3.3.4) on the moto endpoint, path-style, as EMRFS / Glue
  provide `s3://` on AWS;
- the landing router: its real handler, called with the S3 event of each DMS file put into the landing bucket;
- the Glue flow: its rendered ASL executed by moto's Step Functions interpreter, with its real control flow and
  `glue:startJobRun.sync` tasks; moto's Glue answers each run with the spark-submit run of that job;
- the Athena saved queries: their SQL (Terraform's text) run by Spark SQL with double-quoted identifiers over
  the Delta tables registered where the Glue catalog registers them;
- PostgreSQL: a real server (tests/pg_server.py) with TLS, verified against a CA the lane uploads as the RDS
  CA bundle (sslmode verify-full, as config/aws.yaml says), credentials from the Secrets Manager secret.
Not real: IAM and KMS are not evaluated; Delta's DynamoDB log store is configured by the deploy but its jar
(io.delta:delta-storage-s3-dynamodb) is not served by the package registry reachable here, so the lane drops
that setting and commits go through Delta's default S3 log store (one writer per table: the leases); the EMR
flow is not executed (moto's interpreter has no EMR integrations; tests/test_deploy_asl.py runs it with them
swapped for plain API calls).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.glue_on_spark import DELTA_PACKAGE, GlueOnSpark, LaneRun
from tests.pg_server import PgServer, start_server
from tests.spark_cluster import SparkCluster, spark_home
from tests.terraform_values import TERRAFORM, Terraform

ROOT = Path(__file__).resolve().parents[1]
HADOOP_AWS = "org.apache.hadoop:hadoop-aws:3.3.4"  # Spark 3.5.6's Hadoop; brings aws-java-sdk-bundle 1.12.262
CLUSTER_VENV = ROOT / ".venv-cluster"
REGION = "us-east-1"
TF_VARS = {
    "environment": "e2e",
    "masking_key_secret_name": "lakehouse/e2e/masking-key",
    "postgres_secret_name": "lakehouse/e2e/postgres",
    "emr_subnet_id": "subnet-0123456789abcdef0",
}
LOG_STORE_KEYS = ("spark.delta.logStore.s3.impl", "spark.io.delta.storage.S3DynamoDBLogStore.")
T0 = time.monotonic()
TIMINGS: dict[str, float] = {}


LOG = ROOT / "build" / "aws-lane.log"


def say(step: str, message: str) -> None:
    """One line of the lane's log (stdout and build/aws-lane.log): seconds since the start, the step, what happened."""
    line = f"[lane {time.monotonic() - T0:7.1f}s] {step:<16} {message}"
    print(line, flush=True)
    LOG.parent.mkdir(exist_ok=True)
    with LOG.open("a") as log:
        log.write(line + "\n")


class Step:
    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> Step:
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        TIMINGS[self.name] = time.monotonic() - self.start
        say(self.name, f"took {TIMINGS[self.name]:.1f}s")


# --------------------------------------------------------------------------------------------- AWS (moto)


@pytest.fixture(scope="module")
def moto(tmp_path_factory) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    fake = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }
    saved = {k: os.environ.get(k) for k in [*fake, "AWS_ENDPOINT_URL", "MOTO_PORT", "AWS_SESSION_TOKEN"]}
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.update(fake)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    os.environ.update({"AWS_ENDPOINT_URL": url, "MOTO_PORT": str(port)})
    import requests

    requests.post(f"{url}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}, timeout=10)
    say("aws", f"moto server on {url} (S3, DynamoDB, Secrets Manager, SNS, CloudWatch, Glue, Step Functions)")
    try:
        yield url
    finally:
        server.stop()
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def client(service: str) -> Any:
    from lakehouse.aws import client as make

    return make(service, region=REGION)


def dynamodb_tables(tf: Terraform) -> dict[str, dict]:
    """Each aws_dynamodb_table of the HCL: its name (from local.dynamodb_tables) and key schema."""
    import hcl2

    with (TERRAFORM / "dynamodb.tf").open() as f:
        parsed = hcl2.load(
            f, serialization_options=hcl2.SerializationOptions(with_comments=False, strip_string_quotes=True)
        )
    names = tf.local("dynamodb_tables")
    tables = {}
    for block in parsed["resource"]:
        for name, body in block.get("aws_dynamodb_table", {}).items():
            body = body[0] if isinstance(body, list) else body
            attributes = body["attribute"] if isinstance(body["attribute"], list) else [body["attribute"]]
            keys = [(body["hash_key"], "HASH")] + ([(body["range_key"], "RANGE")] if body.get("range_key") else [])
            assert body["name"] == f"${{local.dynamodb_tables.{name}}}", name
            tables[name] = {
                "TableName": names[name],
                "KeySchema": [{"AttributeName": k, "KeyType": t} for k, t in keys],
                "AttributeDefinitions": [{"AttributeName": a["name"], "AttributeType": a["type"]} for a in attributes],
                "BillingMode": "PAY_PER_REQUEST",
            }
    return tables


def glue_jobs(tf: Terraform, outputs: dict) -> dict[str, dict]:
    """The Glue jobs of glue.tf as CreateJob requests: name, script, default arguments, concurrency."""
    import hcl2

    with (TERRAFORM / "glue.tf").open() as f:
        parsed = hcl2.load(
            f, serialization_options=hcl2.SerializationOptions(with_comments=False, strip_string_quotes=True)
        )
    job = next(b["aws_glue_job"]["batch"] for b in parsed["resource"] if "aws_glue_job" in b)
    assert job["name"] == '${local.name}-${replace(each.key, "_", "-")}'
    settings = tf.local("spark_delta_settings")
    dynamic = {
        "${local.spark_delta_conf}": " --conf ".join(f"{k}={v}" for k, v in settings.items()),
        "${data.aws_secretsmanager_secret.masking_key.arn}": TF_VARS["masking_key_secret_name"],
        "${data.aws_secretsmanager_secret.postgres.arn}": TF_VARS["postgres_secret_name"],
    }
    arguments = {k: dynamic.get(v) or tf.evaluate(v) for k, v in job["default_arguments"].items()}
    jobs = {}
    for key, spec in tf.locals["glue_jobs"].items():
        concurrency = 5 if key == "apply_once" else 1  # max(4, length(local.apply_units)) with the default units
        jobs[key] = {
            "Name": f"{tf.local('name')}-{key.replace('_', '-')}",
            "Role": "arn:aws:iam::123456789012:role/lakehouse-e2e-glue-jobs",
            "Command": {"Name": "glueetl", "ScriptLocation": f"{outputs['artifacts']['jobs']}/{spec['script']}"},
            "DefaultArguments": arguments,
            "ExecutionProperty": {"MaxConcurrentRuns": concurrency},
            "GlueVersion": tf.vars["glue_version"],
        }
    return jobs


# ------------------------------------------------------------------------------------ PostgreSQL with TLS


def tls_postgres(work: Path) -> tuple[PgServer, Path]:
    """A real server speaking TLS with a certificate for 127.0.0.1 signed by a CA of the lane's own."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lakehouse lane test CA (stands in for RDS)")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server = start_server()
    for name, data in (
        ("server.crt", cert.public_bytes(serialization.Encoding.PEM)),
        (
            "server.key",
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        ),
    ):
        path = server.data / name
        path.write_bytes(data)
        path.chmod(0o600)
        if server.as_postgres:
            shutil.chown(path, "postgres")
    server.admin("ALTER SYSTEM SET ssl = on")
    server.admin("SELECT pg_reload_conf()")
    ca_file = work / "lane-ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return server, ca_file


# ---------------------------------------------------------------------------------------- the cluster


def cluster_python(wheel: Path) -> Path:
    """A Python with the wheel's dependencies (its `emr` extra, as the EMR bootstrap installs) but not lakehouse:
    the jobs import lakehouse only from the wheel they are shipped."""
    python = CLUSTER_VENV / "bin" / "python"
    marker = CLUSTER_VENV / ".requirements"
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        metadata = next(n for n in z.namelist() if n.endswith("METADATA"))
        requires = sorted(x for x in z.read(metadata).decode().splitlines() if x.startswith("Requires-Dist"))
    if not python.exists() or not marker.exists() or marker.read_text() != "\n".join(requires):
        shutil.rmtree(CLUSTER_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(CLUSTER_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, f"{wheel}[emr]"], check=True)
        subprocess.run([str(python), "-m", "pip", "uninstall", "--quiet", "-y", "lakehouse"], check=True)
        marker.write_text("\n".join(requires))
    done = subprocess.run([str(python), "-c", "import lakehouse"], capture_output=True, cwd="/")
    assert done.returncode != 0, "the cluster's Python must not have lakehouse: it comes from the shipped wheel"
    return python


def s3a_conf(moto_url: str) -> dict[str, str]:
    """`s3://` and `s3a://` through Hadoop's S3A connector on the moto endpoint (what EMRFS / Glue give on AWS)."""
    return {
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint": moto_url,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.access.key": "testing",
        "spark.hadoop.fs.s3a.secret.key": "testing",
        "spark.hadoop.fs.s3a.endpoint.region": REGION,
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.hadoop.fs.s3a.change.detection.mode": "none",
    }


def spark_submit(
    cluster: SparkCluster,
    python: Path,
    script: Path,
    args: list[str],
    *,
    conf: dict[str, str],
    py_files: Path,
    packages: list[str],
    jars: list[Path] = (),
) -> list[str]:
    command = [str(Path(sys.executable).parent / "spark-submit"), "--master", cluster.master_url]
    command += ["--deploy-mode", "client", "--packages", ",".join(packages), "--py-files", str(py_files)]
    if jars:
        command += ["--jars", ",".join(map(str, jars))]
    lane = {
        "spark.cores.max": "2",
        "spark.executor.cores": "2",
        "spark.executor.memory": "1g",
        "spark.driver.memory": "1g",
        "spark.ui.enabled": "false",
        "spark.pyspark.python": str(python),
        "spark.pyspark.driver.python": str(python),
        "spark.executorEnv.AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
        "spark.driver.host": "127.0.0.1",  # every process of the lane talks over the loopback only
        "spark.driver.bindAddress": "127.0.0.1",
    }
    for key, value in {**lane, **conf}.items():
        command += ["--conf", f"{key}={value}"]
    return [*command, str(script), *args]


# ------------------------------------------------------------------------------------------- the lane


GLUE_ONLY = {"--additional-python-modules", "--extra-jars", "--conf", "--datalake-formats", "--job-language"}


def download(uri: str, folder: Path) -> Path:
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    target = folder / parsed.netloc / parsed.path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    client("s3").download_file(parsed.netloc, parsed.path.lstrip("/"), str(target))
    return target


def shippable(wheel: Path) -> Path:
    """The wheel under a `.zip` name: Spark puts `--py-files` on the executors' sys.path only for .zip/.egg/.jar
    (a wheel is a zip archive; pure-Python ones import from it as they are)."""
    target = wheel.with_name(wheel.name + ".zip")
    shutil.copyfile(wheel, target)
    return target


def glue_command(cluster: SparkCluster, python: Path, work: Path, moto_url: str):
    """How the lane's Glue turns a job run into a spark-submit command (tests/glue_on_spark.py)."""
    told: set[str] = set()

    def command(run: LaneRun, definition: dict[str, Any]) -> list[str]:
        args = run.arguments
        folder = work / "glue" / run.run_id[-8:]
        script = download(definition["ScriptLocation"], folder)
        wheel = shippable(download(args["--additional-python-modules"], folder))
        conf = dict(s3a_conf(moto_url))
        for setting in args.get("--conf", "").split(" --conf "):
            key, _, value = setting.partition("=")
            if key.startswith(LOG_STORE_KEYS):
                if key not in told:
                    told.add(key)
                    say("glue", f"dropped {key} (its jar is not available here: default S3 log store)")
                continue
            conf[key] = value
        jars = []
        try:
            jars.append(download(args["--extra-jars"], folder))
        except Exception:
            if "jar" not in told:
                told.add("jar")
                say("glue", f"--extra-jars {args['--extra-jars']} was not uploaded (see LOG_STORE_KEYS)")
        packages = [HADOOP_AWS] + ([DELTA_PACKAGE] if args.get("--datalake-formats") == "delta" else [])
        job_args = ["--JOB_NAME", run.job, "--JOB_RUN_ID", run.run_id]
        job_args += [x for k, v in args.items() if k not in GLUE_ONLY for x in (k, v)]
        say("glue", f"{run.job} run {run.run_id[-8:]}: spark-submit {script.name} {' '.join(job_args[4:])[:160]}")
        return spark_submit(cluster, python, script, job_args, conf=conf, py_files=wheel, packages=packages, jars=jars)

    return command


def saved_queries(tf: Terraform) -> dict[str, str]:
    """The Athena saved queries' SQL, from athena.tf's own text (the two templates of local.as_of_queries)."""
    text = (TERRAFORM / "athena.tf").read_text()
    templates = re.findall(r'join\("\\n", \[(.*?)\]\)', text, flags=re.S)
    assert len(templates) == 2, "athena.tf: expected the snapshot and the change-feed template of as_of_queries"
    lines = [[json.loads(s) for s in re.findall(r'"(?:[^"\\]|\\.)*"', t)] for t in templates]
    snapshot_tables = {t for tables in tf.vars["snapshot_feeds"].values() for t in tables}
    queries = {}
    for table in [*tf.vars["dms_tables"], *sorted(snapshot_tables)]:
        sql = "\n".join(lines[0] if table in snapshot_tables else lines[1])
        for name, value in {
            "table": table,
            "local.catalog": tf.local("catalog"),
            "local.as_of": tf.locals["as_of"],
        }.items():
            sql = sql.replace("${" + name + "}", value)
        queries[table] = sql
    return queries


def catalog(tf: Terraform) -> list[dict[str, str]]:
    """The Glue catalog tables as glue.tf registers them: <catalog>_<zone>.<table>_<kind> at s3://<zone lake>/..."""
    buckets = tf.local("buckets")
    zones = {
        "phi": (
            buckets["phi_lake"],
            [*tf.vars["dms_tables"], *(t for ts in tf.vars["snapshot_feeds"].values() for t in ts)],
        )
    }
    zones["nonphi"] = (buckets["nonphi_lake"], tf.vars["non_phi_tables"])
    return [
        {"database": f"{tf.local('catalog')}_{zone}", "table": f"{t}_{kind}", "location": f"s3://{bucket}/{t}/{kind}"}
        for zone, (bucket, tables) in zones.items()
        for t in tables
        for kind in ("history", "latest")
    ]


def render_flow(tf: Terraform, names: dict[str, str]) -> str:
    text = (ROOT / "deploy" / "stepfunctions" / "glue_flow.asl.json").read_text()
    source = tf.vars["policy_source_table"]
    units = [t for t in tf.vars["dms_tables"] if t != source] + list(tf.vars["snapshot_feeds"])
    values = {
        "apply_units": ",".join(units),  # join(",", local.apply_units)
        "policy_source_table": source,
        "control_table": tf.local("dynamodb_tables")["control"],
        "pipeline": tf.vars["pipeline_name"],
        **names,
    }
    flow = json.loads(re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text))
    for state in flow["States"].values():  # the one integration moto reads in its own casing (test_deploy_asl)
        if state.get("Resource") == "arn:aws:states:::aws-sdk:sfn:listExecutions":
            state["Parameters"] = {k[0].lower() + k[1:]: v for k, v in state["Parameters"].items()}
            state["ResultSelector"]["running.$"] = "$.executions[*].executionArn"
    return json.dumps(flow)


def route(module: Any, landing: str, files: list[tuple[str, Path]]) -> dict[str, int]:
    """Put each DMS file into the landing bucket and call the landing router with its S3 event."""
    s3, folders = client("s3"), {}
    for key, path in files:
        put = s3.put_object(Bucket=landing, Key=key, Body=path.read_bytes())
        event = {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": landing}, "object": {"key": key, "eTag": put["ETag"].strip('"')}},
                }
            ]
        }
        [routed] = module.handler(event, None)["routed"]
        assert routed["outcome"] == "copied", routed
        folder = routed["destination"].rsplit("/", 3)[0]
        folders[folder] = folders.get(folder, 0) + 1
    return folders


def _utc(value: dt.datetime) -> dt.datetime:
    """A timestamp as a UTC instant (Delta's `timestamp` is one; a reader may hand it over naive)."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def delta_rows(uri: str, moto_url: str) -> list[dict]:
    """A Delta table on the S3 API read by delta-rs: a reader that is not Spark (like Athena)."""
    from deltalake import DeltaTable

    options = {"AWS_ENDPOINT_URL": moto_url, "AWS_ALLOW_HTTP": "true", "AWS_REGION": REGION}
    options |= {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }
    return DeltaTable(uri, storage_options=options).to_pyarrow_table().to_pylist()


def watch(sfn: Any, arn: str, timeout: float) -> dict:
    """Wait for the execution's end, logging each state as it is entered."""
    seen, deadline = 0, time.monotonic() + timeout
    while True:
        execution = sfn.describe_execution(executionArn=arn)
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        for event in events[seen:]:
            if "stateEnteredEventDetails" in event:
                say("state machine", f"entered {event['stateEnteredEventDetails']['name']}")
        seen = len(events)
        if execution["status"] != "RUNNING":
            return execution
        assert time.monotonic() < deadline, f"the Glue flow still runs after {timeout:.0f}s"
        time.sleep(2)


@pytest.fixture(scope="module")
def lane_root() -> Iterator[Path]:
    """The lane's folder, kept after the run (its job logs); the previous run's is removed first."""
    for old in Path(tempfile.gettempdir()).glob("lakehouse-aws-lane-*"):
        shutil.rmtree(old, ignore_errors=True)
    root = Path(tempfile.mkdtemp(prefix="lakehouse-aws-lane-"))
    yield root


def test_the_deployed_system_end_to_end(moto: str, lane_root: Path) -> None:
    from lakehouse.demo import generate
    from lakehouse.demo_snapshots import write_opais, write_pecos

    LOG.parent.mkdir(exist_ok=True)
    LOG.write_text("")
    tf = Terraform(TF_VARS)
    outputs = tf.outputs()
    values = outputs["config_values"]
    buckets, name = tf.local("buckets"), tf.local("name")
    started = []
    try:
        with Step("infrastructure"):
            s3, dynamodb, sm = client("s3"), client("dynamodb"), client("secretsmanager")
            for bucket in buckets.values():
                s3.create_bucket(Bucket=bucket)
                s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            for spec in dynamodb_tables(tf).values():
                dynamodb.create_table(**spec)
            topic = client("sns").create_topic(Name=f"{name}-alerts")["TopicArn"]
            for job in glue_jobs(tf, outputs).values():
                client("glue").create_job(**job)
            say(
                "infrastructure",
                f"buckets {sorted(buckets.values())}; DynamoDB {sorted(dynamodb.list_tables()['TableNames'])}",
            )

        with Step("postgres"):
            server, ca = tls_postgres(lane_root)
            started.append(server.stop)
            secret = {"engine": "postgres", "host": "127.0.0.1", "port": server.port, "dbname": "lakehouse_test"}
            secret |= {"username": "lakehouse_test", "password": server.password}
            sm.create_secret(Name=TF_VARS["postgres_secret_name"], SecretString=json.dumps(secret))
            sm.create_secret(Name=TF_VARS["masking_key_secret_name"], SecretString=secrets.token_hex(32))
            say("postgres", f"PostgreSQL with TLS on 127.0.0.1:{server.port}; its CA stands in for the RDS CA bundle")

        with Step("deploy-artifacts"):
            import importlib.util

            spec = importlib.util.spec_from_file_location("deploy_artifacts", ROOT / "deploy" / "artifacts.py")
            deploy = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(deploy)
            deploy.deploy_artifacts(outputs, work=lane_root / "deploy", skip_log_store_jar=True, rds_ca_bundle=ca)
            wheel = next((lane_root / "deploy" / "dist").glob("lakehouse-*.whl"))
            uploaded = [o["Key"] for o in s3.list_objects_v2(Bucket=buckets["artifacts"])["Contents"]]
            say("deploy-artifacts", f"uploaded {len(uploaded)} objects: {sorted(uploaded)}")

        with Step("cluster"):
            python = cluster_python(wheel)
            cluster = SparkCluster(lane_root / "spark").start()
            started.append(cluster.stop)
            state = cluster.state()
            say(
                "cluster up",
                f"{cluster.master_url}: {state['aliveworkers']} workers, {state['cores']} cores, "
                f"{state['memory']} MB; executors' Python {python} (no lakehouse: it comes from the wheel)",
            )
        glue = GlueOnSpark(
            glue_command(cluster, python, lane_root, moto),
            {
                **os.environ,
                "SPARK_HOME": spark_home(),
                "PYSPARK_PYTHON": str(python),
                "PYSPARK_DRIVER_PYTHON": str(python),
                "SPARK_LOCAL_IP": "127.0.0.1",
            },
            lane_root,
            on_end=lambda run: say("glue", f"{run.job} run {run.run_id[-8:]} {run.state} in {run.seconds:.0f}s"),
        ).install()
        started.append(glue.uninstall)

        with Step("landing"):
            control, pipeline = values["CONTROL_TABLE"], values["PIPELINE"]
            yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
            item = {"pipeline": {"S": pipeline}, "p_date": {"S": yesterday}, "p_hour": {"S": "09"}}
            dynamodb.put_item(TableName=control, Item=item)  # the files landed in yesterday's 09 folder
            demo = lane_root / "demo"
            generate(demo, patients=60, days=2)
            dms = sorted(p for p in (demo / "dms").rglob("*") if p.is_file())
            router = load_router(values, tf)
            folders = route(router, buckets["landing"], [(str(p.relative_to(demo)), p) for p in dms])
            for folder, count in folders.items():
                say("files routed", f"{count:3d} DMS files -> {folder}/")
            for path in write_opais(lane_root / "opais", entities=40):
                s3.upload_file(str(path), buckets["landing"], f"{tf.vars['snapshot_prefix']}{path.name}")
            for path in write_pecos(lane_root / "pecos", clinicians=30):
                s3.upload_file(str(path), buckets["landing"], f"pecos/{path.name}")
            say("landing", "two days of 340B exports in opais/340b/, two PECOS snapshots in pecos/")

        with Step("glue flow"):
            sfn, sqs, sns = client("stepfunctions"), client("sqs"), client("sns")
            queue = sqs.create_queue(QueueName="lane-alerts")["QueueUrl"]
            queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
            jobs = {k: f"{name}-{k.replace('_', '-')}" for k in ("policy_build", "apply_once", "export_postgres")}
            definition = render_flow(
                tf,
                {
                    "policy_build_job": jobs["policy_build"],
                    "apply_once_job": jobs["apply_once"],
                    "export_job": jobs["export_postgres"],
                    "sns_topic_arn": topic,
                },
            )
            machine = sfn.create_state_machine(
                name=f"{name}-glue-flow", definition=definition, roleArn="arn:aws:iam::123456789012:role/sfn"
            )["stateMachineArn"]
            units = [u for u in os.environ.get("LANE_UNITS", "").split(",") if u]  # default: the deployed list
            flow_input = json.dumps({"tables": units} if units else {})
            say("glue flow", f"start-execution {flow_input}")
            arn = sfn.start_execution(stateMachineArn=machine, name="lane", input=flow_input)["executionArn"]
            execution = watch(sfn, arn, timeout=3600)
            messages = [
                m["Body"] for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            ]
            for run in glue.runs.values():
                say(
                    "job run",
                    f"{run.job:<32} {' '.join(v for k, v in run.arguments.items() if k == '--table'):<18} "
                    f"{run.state} {run.seconds:6.1f}s  log {run.log}",
                )
            assert execution["status"] == "SUCCEEDED", (execution, messages, [r.error for r in glue.runs.values()])
            say("glue flow", f"SUCCEEDED; SNS: {[m[:140] for m in messages]}")

        check_results(tf, values, buckets, moto, cluster, python, lane_root, wheel, server, ca, units)
    finally:
        for stop in reversed(started):
            stop()
        say("timings", ", ".join(f"{k} {v:.0f}s" for k, v in TIMINGS.items()) + f"; total {time.monotonic() - T0:.0f}s")


def load_router(values: dict[str, str], tf: Terraform) -> Any:
    """The landing router's module, with the environment Terraform sets on the function."""
    sys.path.insert(0, str(ROOT / "deploy" / "lambdas"))
    import landing_router

    environment = {
        "CONTROL_TABLE": values["CONTROL_TABLE"],
        "PIPELINE": values["PIPELINE"],
        "TARGET_BUCKET": tf.local("buckets")["in_process"],
        "TARGET_PREFIX": tf.vars["in_process_prefix"],
        "SOURCE_PREFIX": tf.vars["dms_prefix"],
        "DEDUP_TABLE": tf.local("dynamodb_tables")["dedup"],
    }
    os.environ.update(environment)
    landing_router._clients.cache_clear()
    return landing_router


def check_results(
    tf: Terraform,
    values: dict,
    buckets: dict,
    moto: str,
    cluster: SparkCluster,
    python: Path,
    root: Path,
    wheel: Path,
    server: PgServer,
    ca: Path,
    units: list[str],
) -> None:
    s3, dynamodb = client("s3"), client("dynamodb")
    phi, nonphi = buckets["phi_lake"], buckets["nonphi_lake"]

    with Step("tables on s3"):
        applied = [
            "consents",
            *(
                t
                for u in units or tf.vars["dms_tables"] + list(tf.vars["snapshot_feeds"])
                for t in tf.vars["snapshot_feeds"].get(u, [u])
            ),
        ]
        for table in ("patients", "devices", "therapy_sessions", "consents", "dim_ce", "pecos_clinicians"):
            if table not in applied:
                continue
            for kind in ("history", "latest"):
                keys = [
                    o["Key"] for o in s3.list_objects_v2(Bucket=phi, Prefix=f"{table}/{kind}/_delta_log/")["Contents"]
                ]
                assert any(k.endswith(".json") for k in keys), (table, kind)
        latest = delta_rows(f"s3://{phi}/patients/latest", moto)
        history = delta_rows(f"s3://{phi}/patients/history", moto)
        masked = delta_rows(f"s3://{nonphi}/patients/latest", moto)
        assert latest and len(history) >= len(latest) and masked
        assert all(r["first_name"] is None for r in masked) and {r["first_name"] for r in latest} - {None}
        say(
            "batches applied",
            f"s3://{phi}/patients: latest {len(latest)} rows, history {len(history)} versions; "
            f"s3://{nonphi}/patients/latest {len(masked)} consented rows, first_name redacted",
        )
        checkpoint = [o["Key"] for o in s3.list_objects_v2(Bucket=phi, Prefix="_checkpoints/")["Contents"]]
        offsets = sorted(k for k in checkpoint if re.search(r"/(offsets|commits)/\d+$", k))
        assert any(k.startswith("_checkpoints/patients/commits/") for k in offsets), checkpoint[:20]
        assert any(k.startswith("_checkpoints/_snapshots/opais/commits/") for k in offsets), checkpoint[:20]
        say("checkpoint on s3", f"s3://{phi}/_checkpoints: {len(checkpoint)} objects, e.g. {offsets[:4]}")
        leases = dynamodb.scan(TableName=values["LOCK_TABLE"])["Items"]
        assert leases == [], leases  # every writer gave its unit back
        item = dynamodb.get_item(TableName=values["CONTROL_TABLE"], Key={"pipeline": {"S": values["PIPELINE"]}})["Item"]
        now = dt.datetime.now(dt.UTC)
        assert item["p_date"]["S"] >= (now - dt.timedelta(hours=2)).date().isoformat(), item
        say(
            "hand-off",
            f"control item moved on to p_date={item['p_date']['S']}/p_hour={item['p_hour']['S']} "
            f"by the flow's first step; the run read the closed folders",
        )

    with Step("athena sql"):
        queries = {t: q for t, q in saved_queries(tf).items() if t in applied}
        inside = {f"{t}@2026-03-02": q.replace(tf.locals["as_of"], "2026-03-02 12:00:00") for t, q in queries.items()}
        spec = root / "athena.json"
        spec.write_text(json.dumps({"catalog": catalog(tf), "queries": {**queries, **inside}}))
        conf = {**s3a_conf(moto), "spark.sql.warehouse.dir": str(root / "warehouse")}
        command = spark_submit(
            cluster,
            python,
            ROOT / "tests" / "lane_athena.py",
            [str(spec)],
            conf=conf,
            py_files=shippable(wheel),
            packages=[HADOOP_AWS, DELTA_PACKAGE],
        )
        env = {
            **os.environ,
            "SPARK_HOME": spark_home(),
            "PYSPARK_PYTHON": str(python),
            "PYSPARK_DRIVER_PYTHON": str(python),
            "SPARK_LOCAL_IP": "127.0.0.1",
        }
        done = subprocess.run(command, capture_output=True, text=True, cwd=root, env=env)
        lines = [x for x in done.stdout.splitlines() if x.startswith("ATHENA ")]
        assert done.returncode == 0 and lines, done.stderr[-3000:]
        results = json.loads(lines[-1].removeprefix("ATHENA "))
        at = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)  # delta-rs reads Delta's timestamps as UTC instants
        as_of = {
            r["patient_id"]
            for r in delta_rows(f"s3://{phi}/patients/history", moto)
            if _utc(r["_valid_from"]) <= at
            and (r["_valid_to"] is None or _utc(r["_valid_to"]) > at)
            and not r["_is_deleted"]
        }
        assert results["patients@2026-03-02"] == len(as_of) > 0, (results, len(as_of))
        assert all(results[f"{t}@2026-03-02"] > 0 for t in ("devices", "dim_ce", "pecos_clinicians") if t in applied)
        say("athena sql", f"{len(queries)} saved queries ran verbatim and at 2026-03-02 12:00: {results}")

    with Step("export"):
        import psycopg

        dsn = dict(
            host="127.0.0.1",
            port=server.port,
            dbname="lakehouse_test",
            user="lakehouse_test",
            password=server.password,
            sslmode="verify-full",
            sslrootcert=str(ca),
        )
        with psycopg.connect(**dsn) as conn:
            tls = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]
            exported = conn.execute("SELECT count(*) FROM opais.dim_ce WHERE current_version_flg = 'Y'").fetchone()[0]
            books = conn.execute("SELECT table_name, exported_version FROM opais.lakehouse_export ORDER BY 1")
            books = books.fetchall()
        # The export carries history's versions (its change feed): the current ones are history's current ones.
        current = [r for r in delta_rows(f"s3://{phi}/dim_ce/history", moto) if r["current_version_flg"] == "Y"]
        assert tls and exported == len(current) > 0, (exported, len(current))
        say(
            "export done",
            f"PostgreSQL (TLS verify-full): opais.dim_ce {exported} current rows = Delta latest; bookkeeping {books}",
        )
        metrics = client("cloudwatch").list_metrics(Namespace="lakehouse")["Metrics"]
        assert {m["MetricName"] for m in metrics} >= {"QuarantinedRows"}, metrics[:5]
        say("metrics", f"{len(metrics)} CloudWatch metrics in namespace lakehouse")
