# One role per Lambda, each with only what its handler calls.

resource "aws_iam_role" "lambda" {
  for_each           = local.lambdas
  name               = "${local.name}-${replace(each.key, "_", "-")}"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
}

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "landing_router" {
  name   = "route-landed-files"
  role   = aws_iam_role.lambda["landing_router"].id
  policy = data.aws_iam_policy_document.landing_router.json
}

data "aws_iam_policy_document" "landing_router" {
  source_policy_documents = [data.aws_iam_policy_document.lambda_common["landing_router"].json]

  # ListBucket makes HEAD of a missing key answer 404 rather than 403.
  statement {
    sid       = "ListLandingAndInProcess"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.pipeline["landing"].arn, aws_s3_bucket.pipeline["in_process"].arn]
  }

  # A LOAD file's earlier versions: a reload landing after its first load's folder closed goes to a version folder.
  statement {
    sid       = "ListLandedVersions"
    effect    = "Allow"
    actions   = ["s3:ListBucketVersions"]
    resources = [aws_s3_bucket.pipeline["landing"].arn]
  }

  statement {
    sid       = "ReadLandedFiles"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging"]
    resources = ["${aws_s3_bucket.pipeline["landing"].arn}/${var.dms_prefix}*"]
  }

  statement {
    sid       = "WriteInProcessFolders"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.pipeline["in_process"].arn}/${var.in_process_prefix}/*"]
  }

  statement {
    sid       = "ReadControlItem"
    effect    = "Allow"
    actions   = ["dynamodb:GetItem"]
    resources = [aws_dynamodb_table.control.arn]
  }

  statement {
    sid       = "ClaimObjects"
    effect    = "Allow"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem"]
    resources = [aws_dynamodb_table.dedup.arn]
  }
}

resource "aws_iam_role_policy" "snapshot_trigger" {
  name   = "start-snapshot-load"
  role   = aws_iam_role.lambda["snapshot_trigger"].id
  policy = data.aws_iam_policy_document.snapshot_trigger.json
}

data "aws_iam_policy_document" "snapshot_trigger" {
  source_policy_documents = [data.aws_iam_policy_document.lambda_common["snapshot_trigger"].json]

  statement {
    sid       = "ListLanding"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.pipeline["landing"].arn]
  }

  statement {
    sid       = "HeadExports"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.pipeline["landing"].arn}/${var.snapshot_prefix}*"]
  }

  statement {
    sid       = "StartSnapshotLoad"
    effect    = "Allow"
    actions   = ["glue:StartJobRun"]
    resources = [aws_glue_job.batch["snapshot_load"].arn]
  }

  statement {
    sid       = "ClaimExports"
    effect    = "Allow"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [aws_dynamodb_table.dedup.arn]
  }
}

data "aws_iam_policy_document" "lambda_common" {
  for_each = local.lambdas

  statement {
    sid       = "WriteOwnLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda[each.key].arn}:*"]
  }

  statement {
    sid       = "UsePipelineKey"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.pipeline.arn]
  }

  statement {
    sid       = "DeadLetters"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.lambda_dlq.arn]
  }
}
