"""Rebuild the consent policy from its source table and write it to the store (DynamoDB on AWS).

    spark-submit batch/policy_build.py --config s3://artifacts/config/aws.yaml

The first step of the Glue flow: the apply-once jobs that follow flag changes with this policy.
"""

from lakehouse.jobs import glue_job, load_job_config, main
from lakehouse.policy.job import build_policy_table
from lakehouse.session import build_spark


def work(args: dict) -> int:
    config = load_job_config(args)
    spark = build_spark(config, app_name=args["JOB_NAME"])
    with glue_job(spark, args["JOB_NAME"]):
        stats = build_policy_table(spark, config, job=args["JOB_NAME"])
    if stats.newer_stored is not None:  # a newer build won: nothing to do
        print("policy not written: the store holds one built from a newer version of the consent source")
        return 0
    print(f"policy rebuilt: {stats.rows} rows in {stats.requests} requests ({stats.retries} retries)")
    return 0


if __name__ == "__main__":
    main(work)
