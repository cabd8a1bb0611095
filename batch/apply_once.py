"""Trigger-once apply (availableNow) of what has landed, for Step Functions (Glue `.sync`, EMR `addStep.sync`).

    spark-submit batch/apply_once.py --config s3://artifacts/config/aws.yaml [--table patients]

Exit 0 if every selected table (or snapshot feed) applied, 1 if one failed (the others still ran), 2 on a
user error (configuration, input): the state machine's Retry/Catch read the job's status from it.
"""

from lakehouse.jobs import glue_job, load_job_config, main, selected_tables
from lakehouse.runner import run_once
from lakehouse.session import build_spark


def work(args: dict) -> int:
    config = load_job_config(args)
    tables = selected_tables(args)
    spark = build_spark(config, app_name=args["JOB_NAME"])
    with glue_job(spark, args["JOB_NAME"]):
        runs = run_once(spark, config, tables, job=args["JOB_NAME"])
    for run in runs:
        print(f"{run.table}: {len(run.batches)} batches" + (f", FAILED: {run.error}" if run.error else ""))
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    main(work)
