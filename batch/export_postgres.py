"""Export the dimensions' history to PostgreSQL since the last exported Delta version (exactly once).

    spark-submit batch/export_postgres.py --config s3://artifacts/config/aws.yaml --postgres_secret_arn arn:...

Credentials come from the secret (or LAKEHOUSE_PG_* / PG* variables), never from the YAML. A second
export at the same time waits for the first, then refuses (exit 2: the state machine retries later).
"""

from lakehouse.jobs import glue_job, load_job_config, main
from lakehouse.session import build_spark
from lakehouse.sinks.postgres_export import export_postgres


def work(args: dict) -> int:
    config = load_job_config(args)
    spark = build_spark(config, app_name=args["JOB_NAME"])
    with glue_job(spark, args["JOB_NAME"]):
        results = export_postgres(spark, config)
    for r in results:
        print(f"{r.table}: {r.mode}, {r.rows} rows, Delta version {r.from_version} -> {r.to_version}")
    return 0


if __name__ == "__main__":
    main(work)
