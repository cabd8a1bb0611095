locals {
  name       = "${var.project}-${var.environment}"
  catalog    = replace(local.name, "-", "_")
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = var.region

  # The pipeline's buckets: DMS landing, the routed in-process copy, the two lake zones, deploy artifacts,
  # and the target of the others' S3 server access logs.
  buckets = {
    landing     = "${local.name}-landing${var.bucket_suffix}"
    in_process  = "${local.name}-in-process${var.bucket_suffix}"
    phi_lake    = "${local.name}-phi-lake${var.bucket_suffix}"
    nonphi_lake = "${local.name}-nonphi-lake${var.bucket_suffix}"
    artifacts   = "${local.name}-artifacts${var.bucket_suffix}"
  }
  access_logs_bucket = "${local.name}-access-logs${var.bucket_suffix}"

  artifacts_uri = "s3://${local.buckets.artifacts}"
  wheel_uri     = "${local.artifacts_uri}/wheels/${var.wheel_file}"
  config_uri    = "${local.artifacts_uri}/config/${var.config_file}"
  jobs_uri      = "${local.artifacts_uri}/jobs"

  # One Glue job per batch script; Step Functions retries, so Glue does not (max_retries = 0).
  glue_jobs = {
    policy_build    = { script = "batch/policy_build.py", timeout = 55, concurrency = 1 }
    apply_once      = { script = "batch/apply_once.py", timeout = 110, concurrency = max(4, length(var.tables)) }
    snapshot_load   = { script = "batch/snapshot_load.py", timeout = 110, concurrency = 1 }
    export_postgres = { script = "batch/export_postgres.py", timeout = 110, concurrency = 1 }
  }

  # Delta as each runtime expects it; only table features Athena reads (no deletion vectors).
  spark_delta_conf = join(" --conf ", [
    "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.ansi.enabled=false",
    "spark.databricks.delta.properties.defaults.enableDeletionVectors=false",
  ])

  # Glue catalog: <zone database>.<table>_<history|latest> -> s3://<zone lake>/<table>/<history|latest>
  zones = {
    phi    = local.buckets.phi_lake
    nonphi = local.buckets.nonphi_lake
  }
  catalog_tables = {
    for entry in setproduct(keys(local.zones), var.tables, ["history", "latest"]) :
    "${entry[0]}/${entry[1]}_${entry[2]}" => {
      zone     = entry[0]
      name     = "${entry[1]}_${entry[2]}"
      location = "s3://${local.zones[entry[0]]}/${entry[1]}/${entry[2]}"
    }
  }
}
