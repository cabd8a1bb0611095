r"""Apply one snapshot file (what the EventBridge-triggered Lambda passes: the bucket and key of a new export).

    spark-submit batch/snapshot_load.py --config s3://artifacts/config/aws.yaml \
        --bucket landing --key opais/OPA_CE_DAILY_PUBLIC_2026-11-23.zip [--feed opais] [--allow_deletes true]

Locally `--bucket` may be omitted and `--key` be a file path. The feed's files dated before it that landed and are
not applied yet are applied first, oldest first (the trigger starts a job per object: day N+1's may start before
day N's, which would then be refused as older and lost); one of them refused is logged and makes the job exit 2
after the given file was applied. An out-of-order snapshot is refused: exit 2, as is one that would delete more of
a table than the feed's max_delete_fraction, unless `--allow_deletes true` (a real mass delete, applied on
purpose: start the job again with it; it allows the given file's deletes only). A feed another job writes (the
flow's run) is waited for, up to `--lease_wait_seconds` (default 3600), then refused (exit 2).
"""

import sys

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


def apply_landed(spark, config, feed: str, path: str, *, allow_deletes: bool = False) -> list:
    """Apply the feed's files dated before `path` that landed and are not applied yet (`landed_before`), oldest
    first, then `path`: the results in that order. One of the earlier files refused is logged (as the stream's
    run logs it) and the next applied; so is one that cannot be read (an empty or cut file, a bad ZIP), which would
    otherwise stop every later day's job on it. `path` refused raises SnapshotRefused."""
    from lakehouse.apply.snapshot import SnapshotRefused, apply_snapshot, landed_before, refuse
    from lakehouse.errors import InputError

    results = []
    for earlier in landed_before(spark, config, feed, path):
        try:
            results.append(apply_snapshot(spark, config, feed, earlier))
        except SnapshotRefused as exc:
            results.append(refuse(spark, config, feed, earlier, exc))
        except InputError as exc:  # the file itself is bad: logged as refused, so it no longer stands in the way
            results.append(refuse(spark, config, feed, earlier, SnapshotRefused(f"{exc}")))
    results.append(apply_snapshot(spark, config, feed, path, allow_deletes=allow_deletes))
    return results


def work(args: dict) -> int:
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
        results = apply_landed(spark, config, feed, path, allow_deletes=allow_deletes)
    for result in results:
        print(f"{feed}: {result.file} dated {result.date}: {result.status} in {result.seconds}s")
        if result.detail:
            print(f"  {result.detail}")
    refused = [r for r in results if r.status == "refused"]
    for result in refused:
        print(f"lakehouse job {args['JOB_NAME']}: error: snapshot refused: {result.detail}", file=sys.stderr)
    return 2 if refused else 0


if __name__ == "__main__":
    main(work, required=["key"], optional=["bucket", "feed", "allow_deletes", "lease_wait_seconds"])
