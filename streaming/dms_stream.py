"""Long-running DMS apply: one streaming query per table until the step/job is stopped (EMR step, or locally).

    spark-submit streaming/dms_stream.py --config s3://artifacts/config/aws.yaml [--tables patients,devices]

Without `--tables` it streams every DMS table and no snapshot feed: the deployed snapshot trigger's job applies each
export as it lands, and a stream holding a feed's lease would make that job wait and fail every day. Name a feed in
`--tables` to stream it too. Stops between micro-batches when `<checkpoints>/_stop` appears (deploy/README,
"Stopping the stream"; on EMR a step's cancel does not reach the driver) or on SIGTERM / Ctrl-C locally; exit 1 if a
table's query failed.
"""

from lakehouse.errors import ConfigError
from lakehouse.jobs import glue_job, load_job_config, main, selected_tables
from lakehouse.runner import run_stream
from lakehouse.session import build_spark


def work(args: dict) -> int:
    config = load_job_config(args)
    tables = selected_tables(args) or sorted(config.dms_tables())
    if not tables:
        raise ConfigError(
            "the configuration has no DMS table to stream (the snapshot trigger's job applies the feeds); name the "
            "feeds to stream with --tables if the stream is to apply them"
        )
    spark = build_spark(config, app_name=args["JOB_NAME"])
    with glue_job(spark, args["JOB_NAME"]):
        runs = run_stream(spark, config, tables, job=args["JOB_NAME"])
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    main(work)
