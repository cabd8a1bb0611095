# The two Lambdas, zipped from ../lambdas (one archive, two handlers): the landing router (S3 event
# notification of the DMS prefix) and the snapshot trigger (EventBridge rule of the 340B prefix).

data "archive_file" "lambdas" {
  type        = "zip"
  source_dir  = "${path.module}/../lambdas"
  output_path = "${path.module}/build/lambdas.zip"
  excludes    = ["__pycache__", "__pycache__/**"]
}

locals {
  lambdas = {
    landing_router = {
      handler     = "landing_router.handler"
      description = "Copies DMS files from the landing bucket into p_date=/p_hour= folders of the in-process bucket"
      concurrency = 20
      environment = {
        CONTROL_TABLE = aws_dynamodb_table.control.name
        PIPELINE      = var.pipeline_name
        TARGET_BUCKET = aws_s3_bucket.pipeline["in_process"].bucket
        TARGET_PREFIX = var.in_process_prefix
        SOURCE_PREFIX = var.dms_prefix
        DEDUP_TABLE   = aws_dynamodb_table.dedup.name
      }
    }
    snapshot_trigger = {
      handler     = "snapshot_trigger.handler"
      description = "Starts the snapshot-load Glue job for each new HRSA 340B export"
      concurrency = 2
      environment = {
        GLUE_JOB_NAME   = aws_glue_job.batch["snapshot_load"].name
        SNAPSHOT_PREFIX = var.snapshot_prefix
        DEDUP_TABLE     = aws_dynamodb_table.dedup.name
      }
    }
  }
}

resource "aws_lambda_function" "landing_router" {
  function_name                  = "${local.name}-landing-router"
  description                    = local.lambdas.landing_router.description
  role                           = aws_iam_role.lambda["landing_router"].arn
  runtime                        = "python3.11"
  handler                        = local.lambdas.landing_router.handler
  filename                       = data.archive_file.lambdas.output_path
  source_code_hash               = data.archive_file.lambdas.output_base64sha256
  timeout                        = 300
  memory_size                    = 256
  reserved_concurrent_executions = local.lambdas.landing_router.concurrency
  kms_key_arn                    = aws_kms_key.pipeline.arn

  environment {
    variables = local.lambdas.landing_router.environment
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.lambda_dlq.arn
  }

  depends_on = [aws_cloudwatch_log_group.lambda]
}

resource "aws_lambda_function" "snapshot_trigger" {
  function_name                  = "${local.name}-snapshot-trigger"
  description                    = local.lambdas.snapshot_trigger.description
  role                           = aws_iam_role.lambda["snapshot_trigger"].arn
  runtime                        = "python3.11"
  handler                        = local.lambdas.snapshot_trigger.handler
  filename                       = data.archive_file.lambdas.output_path
  source_code_hash               = data.archive_file.lambdas.output_base64sha256
  timeout                        = 60
  memory_size                    = 128
  reserved_concurrent_executions = local.lambdas.snapshot_trigger.concurrency
  kms_key_arn                    = aws_kms_key.pipeline.arn

  environment {
    variables = local.lambdas.snapshot_trigger.environment
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.lambda_dlq.arn
  }

  depends_on = [aws_cloudwatch_log_group.lambda]
}

resource "aws_cloudwatch_log_group" "lambda" {
  for_each          = local.lambdas
  name              = "/aws/lambda/${local.name}-${replace(each.key, "_", "-")}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.pipeline.arn
}

# Events that failed every retry (Lambda async retries, EventBridge delivery) land here for a redrive.
resource "aws_sqs_queue" "lambda_dlq" {
  name                              = "${local.name}-lambda-dlq"
  kms_master_key_id                 = aws_kms_key.pipeline.arn
  kms_data_key_reuse_period_seconds = 300
  message_retention_seconds         = 1209600
}

resource "aws_sqs_queue_policy" "lambda_dlq" {
  queue_url = aws_sqs_queue.lambda_dlq.id
  policy    = data.aws_iam_policy_document.lambda_dlq.json
}

data "aws_iam_policy_document" "lambda_dlq" {
  statement {
    sid       = "EventBridgeDeadLetters"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.lambda_dlq.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.snapshot_created.arn]
    }
  }
}

resource "aws_lambda_permission" "landing_router_from_s3" {
  statement_id   = "AllowLandingBucket"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.landing_router.function_name
  principal      = "s3.amazonaws.com"
  source_arn     = aws_s3_bucket.pipeline["landing"].arn
  source_account = local.account_id
}

resource "aws_lambda_permission" "snapshot_trigger_from_events" {
  statement_id  = "AllowSnapshotRule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.snapshot_trigger.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.snapshot_created.arn
}
