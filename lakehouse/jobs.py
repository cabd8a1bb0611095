"""What every job script in `streaming/` and `batch/` shares: arguments, config, session, Glue job bookkeeping.

The scripts stay thin: parse arguments, build the session, call the library, exit with its code. The
same script runs on Glue (arguments `--JOB_NAME x --config s3://...`, `Job.init`/`Job.commit`), as an
EMR step and locally with `spark-submit` (no awsglue there: plain argparse).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from lakehouse.config import Config, load_config
from lakehouse.errors import LakehouseError
from lakehouse.logs import log_to_stdout

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("lakehouse.jobs")


def job_args(argv: list[str], *, required: list[str], optional: list[str] = ()) -> dict[str, str | None]:  # type: ignore[assignment]
    """`--name value` arguments as Glue passes them (Glue adds its own, which are ignored)."""
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--JOB_NAME", default="lakehouse-local")
    for name in required:
        parser.add_argument(f"--{name}", required=True)
    for name in optional:
        parser.add_argument(f"--{name}", default=None)
    known, _ = parser.parse_known_args(argv)
    return vars(known)


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
        from lakehouse.aws import client

        with tempfile.TemporaryDirectory(prefix="lakehouse-config-") as folder:
            local = Path(folder) / Path(parsed.path).name
            client("s3").download_file(parsed.netloc, parsed.path.lstrip("/"), str(local))
            config = load_config(local)
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
