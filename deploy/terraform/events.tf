# EventBridge: new 340B exports -> snapshot trigger; the Glue flow's schedule; Glue job failures and the
# stream's failed EMR step -> SNS.

resource "aws_cloudwatch_event_rule" "snapshot_created" {
  name        = "${local.name}-snapshot-created"
  description = "A new HRSA 340B export in the landing bucket"

  event_pattern = jsonencode({
    source        = ["aws.s3"]
    "detail-type" = ["Object Created"]
    detail = {
      bucket = { name = [aws_s3_bucket.pipeline["landing"].bucket] }
      object = { key = [{ prefix = var.snapshot_prefix }] }
    }
  })
}

resource "aws_cloudwatch_event_target" "snapshot_trigger" {
  rule      = aws_cloudwatch_event_rule.snapshot_created.name
  target_id = "snapshot-trigger"
  arn       = aws_lambda_function.snapshot_trigger.arn

  retry_policy {
    maximum_event_age_in_seconds = 3600
    maximum_retry_attempts       = 8
  }

  dead_letter_config {
    arn = aws_sqs_queue.lambda_dlq.arn
  }
}

resource "aws_cloudwatch_event_rule" "glue_flow_schedule" {
  name                = "${local.name}-glue-flow-schedule"
  description         = "Runs the Glue flow (policy build, apply every table once, export)"
  schedule_expression = var.glue_flow_schedule
}

resource "aws_cloudwatch_event_target" "glue_flow" {
  rule      = aws_cloudwatch_event_rule.glue_flow_schedule.name
  target_id = "glue-flow"
  arn       = aws_sfn_state_machine.glue_flow.arn
  role_arn  = aws_iam_role.events_start_glue_flow.arn
  input     = jsonencode({})
}

resource "aws_iam_role" "events_start_glue_flow" {
  name               = "${local.name}-events-glue-flow"
  assume_role_policy = data.aws_iam_policy_document.assume_events.json
}

data "aws_iam_policy_document" "assume_events" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role_policy" "events_start_glue_flow" {
  name   = "start-glue-flow"
  role   = aws_iam_role.events_start_glue_flow.id
  policy = data.aws_iam_policy_document.events_start_glue_flow.json
}

data "aws_iam_policy_document" "events_start_glue_flow" {
  statement {
    sid       = "StartGlueFlow"
    effect    = "Allow"
    actions   = ["states:StartExecution"]
    resources = [aws_sfn_state_machine.glue_flow.arn]
  }

  # The state machine is encrypted with the pipeline key: whoever starts an execution encrypts its input.
  statement {
    sid       = "EncryptExecutionInput"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.pipeline.arn]
  }
}

# A Glue job run that ends FAILED, TIMEOUT or ERROR, whoever started it (Step Functions, the snapshot
# trigger, a person), is announced on the alerts topic.
resource "aws_cloudwatch_event_rule" "glue_job_failed" {
  name        = "${local.name}-glue-job-failed"
  description = "A lakehouse Glue job run failed"

  event_pattern = jsonencode({
    source        = ["aws.glue"]
    "detail-type" = ["Glue Job State Change"]
    detail = {
      jobName = [for job in aws_glue_job.batch : job.name]
      state   = ["FAILED", "TIMEOUT", "ERROR"]
    }
  })
}

resource "aws_cloudwatch_event_target" "glue_job_failed" {
  rule      = aws_cloudwatch_event_rule.glue_job_failed.name
  target_id = "alerts"
  arn       = aws_sns_topic.alerts.arn

  input_transformer {
    input_paths = {
      job   = "$.detail.jobName"
      run   = "$.detail.jobRunId"
      state = "$.detail.state"
      cause = "$.detail.message"
    }
    input_template = "\"lakehouse: Glue job <job> run <run> ended <state>: <cause>\""
  }
}

# The always-on stream is an EMR step (README section 5, ActionOnFailure CONTINUE): when one of its queries
# fails (a LeaseLostError, input it cannot read) the whole stream stops, the step ends FAILED and the cluster
# idles on. Nothing else notices: the stream's metrics are published per batch, so a dead stream looks like
# one that has nothing to apply (cloudwatch.tf). Only steps named local.stream_step_name (or starting with
# it: one step per --tables set) match; the EMR flow's own steps are caught and notified by the flow. A step
# cancelled by hand ends CANCELLED and is not announced.
resource "aws_cloudwatch_event_rule" "stream_step_failed" {
  name        = "${local.name}-stream-step-failed"
  description = "The lakehouse stream's EMR step failed: the stream is down"

  event_pattern = jsonencode({
    source        = ["aws.emr"]
    "detail-type" = ["EMR Step Status Change"]
    detail = {
      name  = [{ prefix = local.stream_step_name }]
      state = ["FAILED"]
    }
  })
}

resource "aws_cloudwatch_event_target" "stream_step_failed" {
  rule      = aws_cloudwatch_event_rule.stream_step_failed.name
  target_id = "alerts"
  arn       = aws_sns_topic.alerts.arn

  input_transformer {
    input_paths = {
      cluster = "$.detail.clusterId"
      step    = "$.detail.name"
      step_id = "$.detail.stepId"
      state   = "$.detail.state"
      cause   = "$.detail.message"
    }
    input_template = "\"lakehouse: the stream is down. EMR step <step> (<step_id>) on cluster <cluster> ended <state>: <cause> The driver's error is in emr-logs/<cluster>/containers/ (the step's own log: emr-logs/<cluster>/steps/<step_id>/); fix the cause and add the step again (deploy/README.md section 5).\""
  }
}
