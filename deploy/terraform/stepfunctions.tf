# The two Standard workflows, rendered from the ASL files in ../stepfunctions. The locals below are the
# exact templatefile variables of each file (tests/test_deploy_asl.py checks they match).

locals {
  glue_flow_vars = {
    apply_units         = join(",", local.apply_units)
    policy_source_table = var.policy_source_table
    control_table       = aws_dynamodb_table.control.name
    pipeline            = var.pipeline_name
    policy_build_job    = aws_glue_job.batch["policy_build"].name
    apply_once_job      = aws_glue_job.batch["apply_once"].name
    export_job          = aws_glue_job.batch["export_postgres"].name
    sns_topic_arn       = aws_sns_topic.alerts.arn
  }

  emr_flow_vars = {
    apply_units                = join(",", local.apply_units)
    policy_source_table        = var.policy_source_table
    control_table              = aws_dynamodb_table.control.name
    pipeline                   = var.pipeline_name
    delta_log_table            = aws_dynamodb_table.delta_log.name
    region                     = var.region
    log_store_jar_uri          = local.log_store_uri
    sns_topic_arn              = aws_sns_topic.alerts.arn
    cluster_name               = local.name
    emr_release_label          = var.emr_release_label
    emr_service_role           = aws_iam_role.emr_service.name
    emr_instance_profile       = aws_iam_instance_profile.emr_instance.name
    emr_security_configuration = aws_emr_security_configuration.pipeline.name
    emr_log_uri                = "${local.artifacts_uri}/emr-logs/"
    subnet_id                  = var.emr_subnet_id
    emr_security_group         = aws_security_group.emr_nodes.id
    primary_instance_type      = var.emr_primary_instance_type
    core_instance_type         = var.emr_core_instance_type
    bootstrap_script_uri       = local.bootstrap_uri
    wheel_uri                  = local.wheel_uri
    jobs_uri                   = local.jobs_uri
    config_uri                 = local.config_uri
    project                    = var.project
    environment                = var.environment
  }
}

resource "aws_sfn_state_machine" "glue_flow" {
  name       = "${local.name}-glue-flow"
  type       = "STANDARD"
  role_arn   = aws_iam_role.sfn_glue_flow.arn
  definition = templatefile("${path.module}/../stepfunctions/glue_flow.asl.json", local.glue_flow_vars)

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.sfn["glue_flow"].arn}:*"
    include_execution_data = false # error causes can quote rows: keep them out of the logs
    level                  = "ERROR"
  }

  encryption_configuration {
    type                              = "CUSTOMER_MANAGED_KMS_KEY"
    kms_key_id                        = aws_kms_key.pipeline.arn
    kms_data_key_reuse_period_seconds = 300
  }
}

resource "aws_sfn_state_machine" "emr_flow" {
  name       = "${local.name}-emr-flow"
  type       = "STANDARD"
  role_arn   = aws_iam_role.sfn_emr_flow.arn
  definition = templatefile("${path.module}/../stepfunctions/emr_flow.asl.json", local.emr_flow_vars)

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.sfn["emr_flow"].arn}:*"
    include_execution_data = false
    level                  = "ERROR"
  }

  encryption_configuration {
    type                              = "CUSTOMER_MANAGED_KMS_KEY"
    kms_key_id                        = aws_kms_key.pipeline.arn
    kms_data_key_reuse_period_seconds = 300
  }
}

resource "aws_cloudwatch_log_group" "sfn" {
  for_each          = toset(["glue_flow", "emr_flow"])
  name              = "/aws/vendedlogs/states/${local.name}-${replace(each.key, "_", "-")}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.pipeline.arn
}
