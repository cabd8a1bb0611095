"""What every job script in `streaming/` and `batch/` shares: arguments, config, session, Glue job bookkeeping.

The scripts stay thin: parse arguments, build the session, call the library, exit with its code. The
same script runs on Glue (arguments `--JOB_NAME x --config s3://...`, `Job.init`/`Job.commit`), as an
EMR step and locally with `spark-submit` (no awsglue there: plain argparse).
"""

from __future__ import annotations

import argparse
import difflib
import logging
import math
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from lakehouse.config import Config, load_config
from lakehouse.errors import ConfigError, InputError, LakehouseError
from lakehouse.logs import log_to_stdout

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("lakehouse.jobs")


# AWS Glue's own job parameters ("special parameters"), which Glue passes to the script beside the job's own:
# the run's ids, the job's default arguments of deploy/terraform/glue.tf, and the others Glue documents. Any
# other name with an upper-case letter or a hyphen is Glue's too (TempDir, enable-*, continuous-log-logGroup);
# the jobs' own arguments are lower_snake_case.
GLUE_ARGUMENTS = frozenset(
    {
        "JOB_ID",
        "JOB_RUN_ID",
        "JOB_NAME",
        "TempDir",
        "RedshiftTempDir",
        "scriptLocation",
        "security_configuration",
        "conf",
        "class",
        "job-language",
        "job-bookmark-option",
        "datalake-formats",
        "additional-python-modules",
        "python-modules-installer-option",
        "extra-py-files",
        "extra-jars",
        "extra-files",
        "user-jars-first",
        "enable-metrics",
        "enable-observability-metrics",
        "enable-continuous-cloudwatch-log",
        "enable-continuous-log-filter",
        "enable-glue-datacatalog",
        "enable-spark-ui",
        "enable-job-insights",
        "enable-auto-scaling",
        "spark-event-logs-path",
        "encryption-type",
    }
)


# Glue's arguments whose value may look like an option (`--python-modules-installer-option --upgrade`); after any
# other, a `--name` is an argument of its own, so a misspelt `--tabel` is never taken for a value.
GLUE_OPTION_VALUES = frozenset({"python-modules-installer-option"})


def job_args(argv: list[str], *, required: list[str], optional: list[str] = ()) -> dict[str, str | None]:  # type: ignore[assignment]
    """`--name value` arguments as Glue passes them: Glue's own (GLUE_ARGUMENTS) are ignored; any other
    argument the job does not take is refused (usage and exit 2), so a misspelt `--tabel` never runs every table."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False, epilog="AWS Glue's own arguments (--JOB_ID, --TempDir, --enable-..., ...) are ignored."
    )
    parser.add_argument("--JOB_NAME", default="lakehouse-local")
    for name in required:
        parser.add_argument(f"--{name}", required=True)
    for name in optional:
        parser.add_argument(f"--{name}", default=None)
    known, rest = parser.parse_known_args(argv)
    refused = _not_ours(rest, ["JOB_NAME", *required, *optional])
    if refused:
        takes = ", ".join(f"--{n}" for n in ["JOB_NAME", *required, *optional])
        parser.error(
            f"{'; '.join(refused)} (this job takes {takes}, each followed by its value; AWS Glue's own arguments "
            "are ignored)"
        )
    return vars(known)


def _not_ours(rest: list[str], accepted: list[str]) -> list[str]:
    """The problems of the arguments argparse did not know: each one that is not Glue's, and stray values."""
    by_spelling = {name.lower(): name for name in accepted}
    problems: list[str] = []
    value_may_follow = False  # Glue passes `--name value`: the token after an ignored name is its value
    glue_value = False  # the token after a GLUE_OPTION_VALUES argument is its value, even one like `--upgrade`
    for token in rest:
        if glue_value:
            glue_value = False
            continue
        if not token.startswith("-") or (value_may_follow and re.fullmatch(r"-[0-9.]+", token)):
            if not value_may_follow:
                problems.append(f"unexpected value {token!r} (an argument takes one value: --name value)")
            value_may_follow = False
            continue
        name = token.lstrip("-").split("=", 1)[0]
        value_may_follow = "=" not in token
        if name in GLUE_ARGUMENTS:
            glue_value = value_may_follow and name in GLUE_OPTION_VALUES
            continue
        spelling = name.lower().replace("-", "_")
        close = difflib.get_close_matches(spelling, list(by_spelling), n=1, cutoff=0.75)
        if close:
            problems.append(f"unknown argument {token.split('=', 1)[0]}: did you mean --{by_spelling[close[0]]}?")
        elif token.startswith("--") and (name != name.lower() or "-" in name):
            continue  # Glue's naming (JOB_ID, TempDir, enable-metrics), not the jobs' lower_snake_case
        else:
            problems.append(f"unknown argument {token.split('=', 1)[0]}")
    return problems


# Every job accepts these (the Glue jobs' default arguments and the EMR steps pass them).
COMMON = ["config", "table", "tables", "masking_key_secret_arn", "postgres_secret_arn"]


def load_job_config(args: dict[str, str | None]) -> Config:
    """The YAML configuration from a local path or an s3:// object, with the secrets the deploy names.

    `--masking_key_secret_arn` and `--postgres_secret_arn` (ARNs, never values) override the YAML's
    secret references, so one configuration file serves every environment.
    """
    location = str(args["config"])
    parsed = urlparse(location)
    if parsed.scheme not in ("s3", "s3a"):
        config = load_config(location)
    else:
        from lakehouse.aws import client, explained

        if not parsed.netloc or not parsed.path.strip("/"):
            raise ConfigError(f"--config {location}: expected s3://<bucket>/<key> of the YAML configuration")
        with tempfile.TemporaryDirectory(prefix="lakehouse-config-") as folder:
            local = Path(folder) / (Path(parsed.path).name or "config.yaml")
            s3 = client("s3")
            # Without s3:ListBucket on the bucket, S3 answers a missing object with 403, not 404.
            permission = "s3:GetObject on it (and s3:ListBucket on its bucket, else a missing object is a 403)"
            with explained(f"the configuration {location} (--config)", permission=permission, aws_client=s3):
                s3.download_file(parsed.netloc, parsed.path.lstrip("/"), str(local))
            try:
                config = load_config(local)
            except ConfigError as exc:  # name the object, not the temporary copy
                raise ConfigError(str(exc).replace(str(local), location)) from None
        object.__setattr__(config, "source_file", location)
    update: dict[str, object] = {}
    if args.get("masking_key_secret_arn"):
        update["privacy"] = config.privacy.model_copy(update={"key_secret_id": args["masking_key_secret_arn"]})
    if args.get("postgres_secret_arn") and config.postgres is not None:
        secret = {"credentials": "secret", "secret_id": args["postgres_secret_arn"]}
        update["postgres"] = config.postgres.model_copy(update=secret)
    return config.model_copy(update=update) if update else config


def selected_tables(args: dict[str, str | None]) -> list[str] | None:
    """`--table name` or `--tables a,b` (Glue passes one argument per key); None means all."""
    names = [n.strip() for value in (args.get("table"), args.get("tables")) if value for n in value.split(",")]
    return [n for n in names if n] or None


def flag_argument(args: dict[str, str | None], name: str) -> bool:
    """A true/false job argument (Glue passes every value as text); absent: false."""
    value = args.get(name)
    if str(value or "false").lower() not in ("true", "false"):
        raise InputError(f"--{name} takes true or false, not {value!r}")
    return str(value).lower() == "true"


def amount_argument(args: dict[str, str | None], name: str, unit: str, default: float) -> float:
    """A job argument that is a number of `unit`s, 0 or more (absent or empty: `default`)."""
    value = args.get(name)
    if value in (None, ""):
        return default
    try:
        amount = float(value)  # type: ignore[arg-type]
    except ValueError:
        amount = -1.0
    if not math.isfinite(amount) or amount < 0:
        raise InputError(f"--{name} takes a number of {unit} (0 or more), not {value!r}")
    return amount


@contextmanager
def glue_job(spark: SparkSession, job_name: str) -> Iterator[None]:
    """Glue's Job.init / Job.commit around the work when running on Glue; nothing elsewhere."""
    try:
        from awsglue.context import GlueContext  # type: ignore[import-not-found]
        from awsglue.job import Job  # type: ignore[import-not-found]
    except ImportError:
        yield
        return
    job = Job(GlueContext(spark.sparkContext))
    job.init(job_name, {"JOB_NAME": job_name})
    yield
    job.commit()


def main(work: Callable[[dict[str, str | None]], int], *, required: list[str] = (), optional: list[str] = ()) -> None:  # type: ignore[assignment]
    """Run a job: parse arguments, call `work`, exit with its code; a user error is one line, exit 2.

    `--config` is always required; the COMMON arguments are always accepted.
    """
    log_to_stdout(logging.INFO)
    required = ["config", *required]
    optional = [a for a in (*COMMON, *optional) if a not in required]
    args = job_args(sys.argv[1:], required=required, optional=optional)
    try:
        code = work(args)
    except LakehouseError as exc:
        print(f"lakehouse job {args['JOB_NAME']}: error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)
