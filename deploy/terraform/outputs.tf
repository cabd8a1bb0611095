output "buckets" {
  description = "The pipeline's buckets by purpose."
  value       = { for purpose, bucket in aws_s3_bucket.pipeline : purpose => bucket.bucket }
}

output "glue_jobs" {
  description = "The Glue batch jobs by script."
  value       = { for key, job in aws_glue_job.batch : key => job.name }
}

output "state_machines" {
  description = "ARNs of the Glue and EMR flows."
  value = {
    glue_flow = aws_sfn_state_machine.glue_flow.arn
    emr_flow  = aws_sfn_state_machine.emr_flow.arn
  }
}

output "dynamodb_tables" {
  description = "The policy, control, claims, leases and Delta log tables."
  value = {
    policy    = aws_dynamodb_table.policy.name
    control   = aws_dynamodb_table.control.name
    dedup     = aws_dynamodb_table.dedup.name
    leases    = aws_dynamodb_table.leases.name
    delta_log = aws_dynamodb_table.delta_log.name
  }
}

output "config_values" {
  description = "The $${NAME} values of config/aws.yaml: `make deploy-artifacts` renders the configuration with them."
  value       = local.config_values
}

output "artifacts" {
  description = "Where `make deploy-artifacts` uploads what the jobs run (deploy/artifacts.py)."
  value       = local.artifacts
}

output "control_item" {
  description = "The landing router's control item (table and key) that the first step of each run moves on."
  value       = { table = aws_dynamodb_table.control.name, pipeline = var.pipeline_name }
}

output "alerts_topic_arn" {
  description = "SNS topic of every notification and alarm."
  value       = aws_sns_topic.alerts.arn
}

output "emr_instance_profile" {
  description = "Instance profile for a long-running streaming cluster (same data access as the jobs)."
  value       = aws_iam_instance_profile.emr_instance.name
}

output "stream_step_name" {
  description = "Name of the stream's EMR step: a FAILED step of this name (or starting with it) is announced on the alerts topic."
  value       = local.stream_step_name
}

output "emr_service_role" {
  description = "EMR service role."
  value       = aws_iam_role.emr_service.name
}

output "emr_security_configuration" {
  description = "EMR security configuration (at-rest encryption with the pipeline key)."
  value       = aws_emr_security_configuration.pipeline.name
}

output "athena_workgroup" {
  description = "Athena workgroup for the PHI zone (engine 3, encrypted results under athena-results/phi/)."
  value       = aws_athena_workgroup.zone["phi"].name
}

output "athena_workgroup_non_phi" {
  description = "Athena workgroup for non-PHI readers (results under athena-results/nonphi/, their only results access)."
  value       = aws_athena_workgroup.zone["nonphi"].name
}

output "kms_key_arn" {
  description = "The pipeline's KMS key."
  value       = aws_kms_key.pipeline.arn
}

output "landing_writer_policy_arn" {
  description = "IAM policy to attach to whoever writes to the landing bucket: DMS's S3 target role, the 340B and PECOS uploaders (deploy/README.md section 1)."
  value       = aws_iam_policy.landing_writer.arn
}

output "landing_writer_policy" {
  description = "The same policy as a JSON document, for a role managed elsewhere."
  value       = data.aws_iam_policy_document.landing_writer.json
}
