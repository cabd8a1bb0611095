# The batch jobs Step Functions runs (Glue 5.x, Spark 3.5, Delta 3.3), and the Data Catalog tables
# Athena reads the Delta tables through.

resource "aws_glue_security_configuration" "pipeline" {
  name = "${local.name}-glue"

  encryption_configuration {
    s3_encryption {
      s3_encryption_mode = "SSE-KMS"
      kms_key_arn        = aws_kms_key.pipeline.arn
    }

    cloudwatch_encryption {
      cloudwatch_encryption_mode = "SSE-KMS"
      kms_key_arn                = aws_kms_key.pipeline.arn
    }

    job_bookmarks_encryption {
      job_bookmarks_encryption_mode = "CSE-KMS"
      kms_key_arn                   = aws_kms_key.pipeline.arn
    }
  }
}

# The export job reaches PostgreSQL through a network connection in the database's VPC (optional).
resource "aws_glue_connection" "postgres_network" {
  count           = var.glue_connection_subnet_id == "" ? 0 : 1
  name            = "${local.name}-postgres-network"
  connection_type = "NETWORK"

  physical_connection_requirements {
    subnet_id              = var.glue_connection_subnet_id
    security_group_id_list = concat(aws_security_group.glue_jobs[*].id, var.glue_connection_security_group_ids)
    availability_zone      = var.glue_connection_availability_zone
  }
}

resource "aws_glue_job" "batch" {
  for_each = local.glue_jobs

  name                   = "${local.name}-${replace(each.key, "_", "-")}"
  description            = "lakehouse ${each.value.script} (${each.key})"
  role_arn               = aws_iam_role.glue.arn
  glue_version           = var.glue_version
  worker_type            = var.glue_worker_type
  number_of_workers      = lookup(var.glue_workers, each.key, each.value.workers)
  timeout                = each.value.timeout
  max_retries            = 0
  security_configuration = aws_glue_security_configuration.pipeline.name
  connections            = each.key == "export_postgres" ? aws_glue_connection.postgres_network[*].name : []

  command {
    name            = "glueetl"
    python_version  = "3"
    script_location = "${local.jobs_uri}/${each.value.script}"
  }

  execution_property {
    max_concurrent_runs = each.value.concurrency
  }

  default_arguments = {
    "--job-language"                     = "python"
    "--datalake-formats"                 = "delta"
    "--conf"                             = local.spark_delta_conf
    "--additional-python-modules"        = local.wheel_uri
    "--extra-jars"                       = local.log_store_uri
    "--config"                           = local.config_uri
    "--masking_key_secret_arn"           = data.aws_secretsmanager_secret.masking_key.arn
    "--postgres_secret_arn"              = data.aws_secretsmanager_secret.postgres.arn
    "--job-bookmark-option"              = "job-bookmark-disable"
    "--TempDir"                          = "${local.artifacts_uri}/glue-temp/"
    "--enable-metrics"                   = "true"
    "--enable-observability-metrics"     = "true"
    "--enable-continuous-cloudwatch-log" = "true"
  }

  lifecycle {
    precondition {
      condition     = alltrue([for job in keys(var.glue_workers) : contains(keys(local.glue_jobs), job)])
      error_message = "glue_workers names a job that does not exist: ${join(", ", [for job in keys(var.glue_workers) : job if !contains(keys(local.glue_jobs), job)])} (the jobs: ${join(", ", keys(local.glue_jobs))})."
    }
  }
}

resource "aws_glue_catalog_database" "zone" {
  for_each    = local.zones
  name        = "${local.catalog}_${each.key}"
  description = "lakehouse ${each.key == "phi" ? "PHI zone: full rows, restricted access" : "non-PHI zone: pseudonymized rows of consenting patients"}"
}

# Athena's native Delta reader takes the schema from the Delta log: the Glue table only needs the
# location, the provider, and the SerDe path, with a placeholder column (Athena's documented form for a
# schema it does not keep in sync). See deploy/ATHENA.md.
resource "aws_glue_catalog_table" "delta" {
  for_each = local.catalog_tables

  name          = each.value.name
  database_name = aws_glue_catalog_database.zone[each.value.zone].name
  table_type    = "EXTERNAL_TABLE"
  description   = "Delta table at ${each.value.location}"

  parameters = {
    EXTERNAL                     = "TRUE"
    "spark.sql.sources.provider" = "delta"
  }

  storage_descriptor {
    location = each.value.location

    columns {
      name = "col"
      type = "array<string>"
    }

    ser_de_info {
      parameters = {
        "serialization.format" = "1"
        path                   = each.value.location
      }
    }
  }
}
