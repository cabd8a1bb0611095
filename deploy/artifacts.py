"""Build and upload what the deployed jobs run: `make deploy-artifacts` (after `terraform apply`).

    python deploy/artifacts.py --terraform-dir deploy/terraform          # reads `terraform output -json`
    python deploy/artifacts.py --outputs outputs.json [--log-store-jar FILE] [--rds-ca-bundle FILE]

1. builds the lakehouse wheel (`pip wheel . --no-deps`: the cluster brings Spark and Delta);
2. renders config/aws.yaml with Terraform's `config_values` output: every `${NAME}` is replaced, a name without
   a value is an error, so the uploaded file depends on nothing in the job's environment;
3. uploads, with boto3, to the artifacts bucket at the keys Terraform's `artifacts` output names: the wheel,
   the job scripts (batch/, streaming/), the rendered configuration, the EMR bootstrap script, Delta's
   DynamoDB log store jar (Maven Central, or --log-store-jar) and the RDS CA bundle (AWS's trust store, or
   --rds-ca-bundle), which the configuration's `postgres.sslrootcert` names;
4. seeds the landing router's control item (p_date, p_hour: this hour) if it does not exist yet.

AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3 / _DYNAMODB) points the uploads at another S3 API, as the end-to-end
lane does (tests/aws_lane.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
JOB_SCRIPTS = sorted([*(ROOT / "batch").glob("*.py"), *(ROOT / "streaming").glob("*.py")])
BOOTSTRAP = ROOT / "deploy" / "emr" / "install-wheel.sh"
CONFIG = ROOT / "config" / "aws.yaml"
MAVEN = "https://repo1.maven.org/maven2/io/delta/delta-storage-s3-dynamodb/{v}/delta-storage-s3-dynamodb-{v}.jar"
RDS_CA_BUNDLE = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class DeployError(RuntimeError):
    """Something the deploy needs is missing; nothing further was uploaded."""


def render(text: str, values: dict[str, str], *, source: str = "config/aws.yaml") -> str:
    """`text` with every `${NAME}` / `${NAME:-default}` replaced from `values` (else its default).

    A name with neither is an error that lists them all: the rendered file must not depend on the environment
    of the job that reads it.
    """
    names = {m.group(1) for m in PLACEHOLDER.finditer(text) if m.group(2) is None}
    missing = sorted(names - set(values))
    if missing:
        raise DeployError(f"{source} names {missing}, which Terraform's config_values output does not give")
    return PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(2))), text)


def outputs_of(terraform_dir: Path | None, outputs_file: Path | None) -> dict[str, dict]:
    """`terraform output -json` as {name: value}, from the directory or from a saved file."""
    if outputs_file is not None:
        raw = json.loads(outputs_file.read_text())
    else:
        try:
            done = subprocess.run(
                ["terraform", f"-chdir={terraform_dir}", "output", "-json"], capture_output=True, text=True, check=True
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            raise DeployError(f"`terraform output -json` failed in {terraform_dir}: {exc}") from None
        raw = json.loads(done.stdout)
    values = {
        name: entry["value"] if isinstance(entry, dict) and "value" in entry else entry for name, entry in raw.items()
    }
    for name in ("config_values", "artifacts"):
        if name not in values:
            raise DeployError(f"terraform output has no {name!r}: apply this repository's deploy/terraform first")
    return values


def build_wheel(out: Path) -> Path:
    """The lakehouse wheel, built from this checkout into `out`."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--quiet", "-w", str(out)], check=True
    )
    wheels = sorted(out.glob("lakehouse-*.whl"))
    if len(wheels) != 1:
        raise DeployError(f"expected one lakehouse wheel in {out}, found {[w.name for w in wheels]}")
    return wheels[0]


def fetch(url: str, target: Path) -> Path:
    with urllib.request.urlopen(url, timeout=120) as response:
        target.write_bytes(response.read())
    return target


def s3_key(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def upload_all(files: dict[str, Path], *, s3: object) -> list[str]:
    """Upload {s3 uri: local file}; returns the uris, in order."""
    done = []
    for uri, path in files.items():
        bucket, key = s3_key(uri)
        s3.upload_file(str(path), bucket, key)  # type: ignore[attr-defined]
        print(f"uploaded {path.name:<44} -> {uri}")
        done.append(uri)
    return done


def seed_control_item(dynamodb: object, table: str, pipeline: str, now: dt.datetime) -> bool:
    """Put the router's control item at this hour unless it exists; True when this call created it."""
    item = {
        "pipeline": {"S": pipeline},
        "p_date": {"S": now.date().isoformat()},
        "p_hour": {"S": f"{now.hour:02d}"},
        "opened_at": {"S": now.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }
    try:
        dynamodb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pipeline)")  # type: ignore[attr-defined]
    except dynamodb.exceptions.ConditionalCheckFailedException:  # type: ignore[attr-defined]
        return False
    return True


def deploy_artifacts(
    outputs: dict[str, dict],
    *,
    work: Path,
    log_store_jar: Path | None = None,
    rds_ca_bundle: Path | None = None,
    skip_log_store_jar: bool = False,
) -> dict[str, str]:
    """Build, render and upload everything the jobs need; returns {what: s3 uri}."""
    sys.path.insert(0, str(ROOT))
    from lakehouse.aws import client

    values = {k: str(v) for k, v in outputs["config_values"].items()}
    artifacts = outputs["artifacts"]
    work.mkdir(parents=True, exist_ok=True)
    rendered = work / "aws.yaml"
    rendered.write_text(render(CONFIG.read_text(encoding="utf-8"), values), encoding="utf-8")
    wheel = build_wheel(work / "dist")
    if Path(artifacts["wheel"]).name != wheel.name:
        raise DeployError(f"Terraform expects the wheel {Path(artifacts['wheel']).name}, the build made {wheel.name}")
    files = {artifacts["wheel"]: wheel, artifacts["config"]: rendered, artifacts["bootstrap"]: BOOTSTRAP}
    for script in JOB_SCRIPTS:
        files[f"{artifacts['jobs']}/{script.parent.name}/{script.name}"] = script
    if not skip_log_store_jar:
        version = Path(artifacts["log_store_jar"]).name.removeprefix("delta-storage-s3-dynamodb-").removesuffix(".jar")
        files[artifacts["log_store_jar"]] = log_store_jar or fetch(MAVEN.format(v=version), work / "log-store.jar")
    files[artifacts["rds_ca_bundle"]] = rds_ca_bundle or fetch(RDS_CA_BUNDLE, work / "rds-global-bundle.pem")
    region = values.get("AWS_REGION")
    upload_all(files, s3=client("s3", region=region))
    now = dt.datetime.now(dt.UTC)
    if seed_control_item(client("dynamodb", region=region), values["CONTROL_TABLE"], values["PIPELINE"], now):
        print(f"seeded the control item pipeline={values['PIPELINE']} at p_date={now.date()}/p_hour={now.hour:02d}")
    return {"config": artifacts["config"], "wheel": artifacts["wheel"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--terraform-dir", type=Path, help="run `terraform output -json` there")
    where.add_argument("--outputs", type=Path, help="a saved `terraform output -json`")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "deploy", help="where the wheel and config go")
    parser.add_argument("--log-store-jar", type=Path, help="delta-storage-s3-dynamodb jar (default: Maven Central)")
    parser.add_argument("--skip-log-store-jar", action="store_true", help="do not upload it (the cluster has it)")
    parser.add_argument("--rds-ca-bundle", type=Path, help="the RDS CA bundle (default: from AWS's trust store)")
    args = parser.parse_args(argv)
    try:
        deploy_artifacts(
            outputs_of(args.terraform_dir, args.outputs),
            work=args.work,
            log_store_jar=args.log_store_jar,
            rds_ca_bundle=args.rds_ca_bundle,
            skip_log_store_jar=args.skip_log_store_jar,
        )
    except DeployError as exc:
        print(f"deploy-artifacts: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
