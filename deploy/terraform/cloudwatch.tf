# Alarms to the alerts topic: Glue job failures, failed or timed-out executions, Lambda errors and
# dead letters, and the engine's own `lakehouse` metrics (quarantined rows, unreconciled batches).

locals {
  alarm_actions = [aws_sns_topic.alerts.arn]
  state_machines = {
    glue_flow = aws_sfn_state_machine.glue_flow.arn
    emr_flow  = aws_sfn_state_machine.emr_flow.arn
  }
  sfn_failure_metrics = {
    failed    = "ExecutionsFailed"
    timed_out = "ExecutionsTimedOut"
    aborted   = "ExecutionsAborted"
  }
  # The stream's own tasks whose failures it counts (lakehouse/metrics.py: POLICY_BUILD, CONSENT_SYNC).
  stream_tasks = ["policy_build", "consent_sync"]
  # Metrics the engine publishes per batch (namespace "lakehouse", dimensions Environment and Table).
  engine_metrics = {
    quarantined  = "QuarantinedRows"
    unreconciled = "UnreconciledBatches"
  }
}

resource "aws_cloudwatch_metric_alarm" "glue_job_failed_tasks" {
  for_each            = aws_glue_job.batch
  alarm_name          = "${each.value.name}-failed-tasks"
  alarm_description   = "Glue job ${each.value.name} had failed Spark tasks (see the job run's logs)."
  namespace           = "Glue"
  metric_name         = "glue.driver.aggregate.numFailedTasks"
  dimensions          = { JobName = each.value.name, JobRunId = "ALL", Type = "count" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "state_machine" {
  for_each = {
    for pair in setproduct(keys(local.state_machines), keys(local.sfn_failure_metrics)) :
    "${pair[0]}-${pair[1]}" => { machine = pair[0], metric = local.sfn_failure_metrics[pair[1]] }
  }
  alarm_name          = "${local.name}-${replace(each.key, "_", "-")}"
  alarm_description   = "Step Functions ${each.value.machine}: ${each.value.metric} > 0 (the SNS notifications say which table or step)."
  namespace           = "AWS/States"
  metric_name         = each.value.metric
  dimensions          = { StateMachineArn = local.state_machines[each.value.machine] }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  for_each = {
    landing_router   = aws_lambda_function.landing_router.function_name
    snapshot_trigger = aws_lambda_function.snapshot_trigger.function_name
  }
  alarm_name          = "${each.value}-errors"
  alarm_description   = "Lambda ${each.value} raised errors (events are retried, then land in the dead-letter queue)."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  alarm_name          = "${local.name}-lambda-dead-letters"
  alarm_description   = "Events in ${aws_sqs_queue.lambda_dlq.name}: fix the cause, then redrive them."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.lambda_dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "engine" {
  for_each = {
    for pair in setproduct(local.tables, keys(local.engine_metrics)) :
    "${pair[0]}-${pair[1]}" => { table = pair[0], metric = local.engine_metrics[pair[1]] }
  }
  alarm_name          = "${local.name}-${replace(each.key, "_", "-")}"
  alarm_description   = "Table ${each.value.table}: ${each.value.metric} > 0 (see its quarantine table and the batch record)."
  namespace           = "lakehouse"
  metric_name         = each.value.metric
  dimensions          = { Environment = var.environment, Table = each.value.table }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

# The stream falls behind: the age of a batch's oldest file at its start (the batch record's lag_seconds,
# published as LagSeconds) stays above 15 minutes. A stream that keeps up shows about one trigger interval.
# Missing data is not breaching: the engine publishes only when a batch runs, and a stream with nothing to
# apply runs none, so no data is also the normal quiet hours. No metric is published every trigger to serve as a
# heartbeat; a stream that stopped is announced by its EMR step's failure instead (events.tf, stream_step_failed).
resource "aws_cloudwatch_metric_alarm" "stream_lag" {
  for_each            = toset(var.dms_tables) # the stream applies the DMS tables; snapshot feeds are daily
  alarm_name          = "${local.name}-${replace(each.value, "_", "-")}-stream-lag"
  alarm_description   = "Table ${each.value}: LagSeconds above 900 for 15 minutes; files land faster than batches finish (see README, backpressure)."
  namespace           = "lakehouse"
  metric_name         = "LagSeconds"
  dimensions          = { Environment = var.environment, Table = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  threshold           = 900
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

# A task the stream runs beside its batches failed and keeps failing: the consent policy's rebuild after a batch of
# the consent source, or a consent sync of an idle table (each is tried again every interval, and logged on the
# driver, which on EMR is not in CloudWatch Logs). Every 5 minutes for 15: a withdrawal is not reaching the zone.
resource "aws_cloudwatch_metric_alarm" "stream_task_failed" {
  for_each            = toset(local.stream_tasks)
  alarm_name          = "${local.name}-stream-${replace(each.value, "_", "-")}-failing"
  alarm_description   = "The stream's ${each.value} has failed for 15 minutes: consent changes are not reaching the non-PHI zone (see the stream's ${each.value}_failed log lines; README, Consent and the two zones)."
  namespace           = "lakehouse"
  metric_name         = "StreamTaskFailures"
  dimensions          = { Environment = var.environment, Task = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

# The stream's feed query refused a snapshot (more deletes than the feed's max_delete_fraction, older than the one
# applied, a second file for a day): the feed's tables stay at the day before until someone applies or replaces it,
# and the stream itself goes on (its exit code says it only when it stops). Counted once per refused file, so one
# datapoint alarms; see the driver's snapshot_refused log line and the feed's snapshot log (deploy/README.md,
# section 5, "A snapshot the stream refused").
resource "aws_cloudwatch_metric_alarm" "stream_snapshot_refused" {
  alarm_name          = "${local.name}-stream-snapshot-refused"
  alarm_description   = "The stream refused a snapshot: its feed's tables are not updated until it is applied with --allow-deletes or a corrected file lands (deploy/README.md section 5; the stream's snapshot_refused log line names the file and why)."
  namespace           = "lakehouse"
  metric_name         = "StreamTaskFailures"
  dimensions          = { Environment = var.environment, Task = "snapshot_refused" } # lakehouse/metrics.py SNAPSHOT_REFUSED
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}
