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

  # The name (or the start of the names) of the always-on stream's EMR step (README section 5): a failed
  # step of that name is announced on the alerts topic (events.tf).
  stream_step_name = "${local.name}-dms-stream"

  # DynamoDB tables: the consent policy, the router's control items, the Lambdas' claims, the jobs' leases
  # (one writer per table) and Delta's S3 commit log (the DynamoDB log store).
  dynamodb_tables = {
    policy    = "${local.name}-policy"
    control   = "${local.name}-control"
    dedup     = "${local.name}-dedup"
    leases    = "${local.name}-leases"
    delta_log = "${local.name}-delta-log"
  }

  artifacts_uri  = "s3://${local.buckets.artifacts}"
  wheel_uri      = "${local.artifacts_uri}/wheels/${var.wheel_file}"
  config_uri     = "${local.artifacts_uri}/config/${var.config_file}"
  jobs_uri       = "${local.artifacts_uri}/jobs"
  log_store_jar  = "delta-storage-s3-dynamodb-${var.delta_version}.jar"
  log_store_uri  = "${local.artifacts_uri}/jars/${local.log_store_jar}"
  bootstrap_uri  = "${local.artifacts_uri}/emr/install-wheel.sh"
  rds_ca_key     = "certs/rds-global-bundle.pem"
  in_process_dms = "${var.in_process_prefix}/"
  # Where the Athena workgroup writes query results (s3.tf expires them).
  athena_results_prefix = "athena-results/"

  # Every table the engine writes, and the units one job writes at a time: each DMS table alone, each
  # snapshot feed with all its tables. The policy's source table runs before the policy build, the rest after.
  tables       = concat(var.dms_tables, flatten(values(var.snapshot_feeds)))
  apply_units  = concat([for t in var.dms_tables : t if t != var.policy_source_table], keys(var.snapshot_feeds))
  policy_units = [var.policy_source_table]

  # One Glue job per batch script; Step Functions retries, so Glue does not (max_retries = 0). The privacy job
  # (`lakehouse privacy` on the zones, started by hand: deploy/README.md section 8) runs one request at a time.
  # `workers` is the job's default number of Glue workers; var.glue_workers overrides it per job.
  glue_jobs = {
    policy_build    = { script = "batch/policy_build.py", timeout = 55, concurrency = 1, workers = 2 }
    apply_once      = { script = "batch/apply_once.py", timeout = 110, concurrency = max(4, length(local.apply_units)), workers = 4 }
    snapshot_load   = { script = "batch/snapshot_load.py", timeout = 110, concurrency = 1, workers = 4 }
    export_postgres = { script = "batch/export_postgres.py", timeout = 110, concurrency = 1, workers = 2 }
    privacy         = { script = "batch/privacy.py", timeout = 110, concurrency = 1, workers = 2 }
  }

  # Delta as each runtime expects it; only table features Athena reads (no deletion vectors); commits to
  # s3:// paths through the DynamoDB log store, so two clusters never overwrite one commit.
  spark_delta_settings = {
    "spark.sql.extensions"                                             = "io.delta.sql.DeltaSparkSessionExtension"
    "spark.sql.catalog.spark_catalog"                                  = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    "spark.sql.ansi.enabled"                                           = "false"
    "spark.databricks.delta.properties.defaults.enableDeletionVectors" = "false"
    "spark.delta.logStore.s3.impl"                                     = "io.delta.storage.S3DynamoDBLogStore"
    "spark.io.delta.storage.S3DynamoDBLogStore.ddb.tableName"          = local.dynamodb_tables.delta_log
    "spark.io.delta.storage.S3DynamoDBLogStore.ddb.region"             = var.region
  }
  spark_delta_conf = join(" --conf ", [for k, v in local.spark_delta_settings : "${k}=${v}"])

  # Glue catalog: <zone database>.<table>_<history|latest> -> s3://<zone lake>/<table>/<history|latest>;
  # the PHI zone has every table, the non-PHI zone the tables the engine masks into it.
  zones = {
    phi    = local.buckets.phi_lake
    nonphi = local.buckets.nonphi_lake
  }
  zone_tables = {
    phi    = local.tables
    nonphi = var.non_phi_tables
  }
  catalog_tables = merge([
    for zone, bucket in local.zones : {
      for entry in setproduct(local.zone_tables[zone], ["history", "latest"]) :
      "${zone}/${entry[0]}_${entry[1]}" => {
        zone     = zone
        name     = "${entry[0]}_${entry[1]}"
        location = "s3://${bucket}/${entry[0]}/${entry[1]}"
      }
    }
  ]...)

  # What `make deploy-artifacts` uploads, and where (deploy/artifacts.py reads the `artifacts` output).
  artifacts = {
    bucket        = local.buckets.artifacts
    wheel         = local.wheel_uri
    config        = local.config_uri
    jobs          = local.jobs_uri
    bootstrap     = local.bootstrap_uri
    log_store_jar = local.log_store_uri
    rds_ca_bundle = "${local.artifacts_uri}/${local.rds_ca_key}"
  }

  # The values config/aws.yaml names as ${...}: `make deploy-artifacts` renders the configuration with them.
  config_values = {
    LANDING_BUCKET        = local.buckets.landing
    IN_PROCESS_BUCKET     = local.buckets.in_process
    PHI_LAKE_BUCKET       = local.buckets.phi_lake
    NON_PHI_LAKE_BUCKET   = local.buckets.nonphi_lake
    ARTIFACTS_BUCKET      = local.buckets.artifacts
    POLICY_TABLE          = local.dynamodb_tables.policy
    CONTROL_TABLE         = local.dynamodb_tables.control
    LOCK_TABLE            = local.dynamodb_tables.leases
    PIPELINE              = var.pipeline_name
    ENVIRONMENT           = var.environment
    AWS_REGION            = var.region
    MASKING_KEY_SECRET_ID = var.masking_key_secret_name
    POSTGRES_SECRET_ID    = var.postgres_secret_name
    # The folders the router, the snapshot trigger and the landing writers use are the ones the engine reads.
    IN_PROCESS_PREFIX = var.in_process_prefix
    SNAPSHOT_PREFIX   = trimsuffix(var.snapshot_prefix, "/")
    PECOS_PREFIX      = trimsuffix(var.pecos_prefix, "/")
  }
}
