r"""Apply one snapshot file (what the EventBridge-triggered Lambda passes: the bucket and key of a new export).

    spark-submit batch/snapshot_load.py --config s3://artifacts/config/aws.yaml \
        --bucket landing --key opais/OPA_CE_DAILY_PUBLIC_2026-11-23.zip [--feed opais] [--allow_deletes true]

Locally `--bucket` may be omitted and `--key` be a file path. An out-of-order snapshot is refused: exit 2, as is
one that would delete more of a table than the feed's max_delete_fraction, unless `--allow_deletes true` (a real
mass delete, applied on purpose: start the job again with it). A feed another job writes (the flow's run) is
waited for, up to `--lease_wait_seconds` (default 3600), then refused (exit 2).
"""

from lakehouse.cli import feed_for
from lakehouse.jobs import amount_argument, flag_argument, glue_job, load_job_config, main
from lakehouse.ownership import hold
from lakehouse.runner import configure_metrics
from lakehouse.session import build_spark

DEFAULT_LEASE_WAIT_SECONDS = 3600  # within the job's timeout; the flow's apply of a feed takes minutes


def snapshot_uri(bucket: str | None, key: str) -> str:
    """The s3:// path of the object `key` (as S3 names it: the trigger passes it decoded), or `key` itself without a
    bucket (a local path). Written as it is, like the paths Spark's file listing gives the snapshot readers: they
    decode nothing, so a key with a space, `%2B` or `#` reaches them whole."""
    return f"s3://{bucket}/{key}" if bucket else key


def work(args: dict) -> int:
    from lakehouse.apply.snapshot import apply_snapshot

    config = load_job_config(args)
    path = snapshot_uri(args["bucket"], args["key"])
    feed = feed_for(config, path, args["feed"])
    allow_deletes = flag_argument(args, "allow_deletes")
    # The flow's run of this feed may hold it (started before the file landed, it does not see it): wait for it
    # rather than leave the file to the next day's flow.
    wait = amount_argument(args, "lease_wait_seconds", "seconds", DEFAULT_LEASE_WAIT_SECONDS)
    spark = build_spark(config, app_name=args["JOB_NAME"])
    configure_metrics(config)
    with glue_job(spark, args["JOB_NAME"]), hold(config, [feed], job=args["JOB_NAME"], wait_seconds=wait):
        result = apply_snapshot(spark, config, feed, path, allow_deletes=allow_deletes)
    print(f"{feed}: {result.file} dated {result.date}: {result.status} in {result.seconds}s")
    if result.detail:
        print(f"  {result.detail}")
    return 0


if __name__ == "__main__":
    main(work, required=["key"], optional=["bucket", "feed", "allow_deletes", "lease_wait_seconds"])
