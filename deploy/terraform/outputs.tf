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
  description = "The policy, control and claims tables."
  value = {
    policy  = aws_dynamodb_table.policy.name
    control = aws_dynamodb_table.control.name
    dedup   = aws_dynamodb_table.dedup.name
  }
}

output "alerts_topic_arn" {
  description = "SNS topic of every notification and alarm."
  value       = aws_sns_topic.alerts.arn
}

output "emr_instance_profile" {
  description = "Instance profile for a long-running streaming cluster (same data access as the jobs)."
  value       = aws_iam_instance_profile.emr_instance.name
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
  description = "Athena workgroup (engine 3, encrypted results)."
  value       = aws_athena_workgroup.pipeline.name
}

output "kms_key_arn" {
  description = "The pipeline's KMS key."
  value       = aws_kms_key.pipeline.arn
}
