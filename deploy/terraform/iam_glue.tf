# The role of the Glue batch jobs: read DMS files and exports, write the lakes, the policy and control
# tables, the two secrets, the pipeline key, its own logs and the `lakehouse` metrics. Nothing else.

resource "aws_iam_role" "glue" {
  name               = "${local.name}-glue-jobs"
  assume_role_policy = data.aws_iam_policy_document.assume_glue.json
}

data "aws_iam_policy_document" "assume_glue" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["glue.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role_policy" "glue" {
  name   = "pipeline-access"
  role   = aws_iam_role.glue.id
  policy = data.aws_iam_policy_document.spark_jobs.json
}

# Shared by the Glue jobs and the EMR instance role: both run the same scripts.
data "aws_iam_policy_document" "spark_jobs" {
  statement {
    sid     = "ListPipelineBuckets"
    effect  = "Allow"
    actions = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [
      aws_s3_bucket.pipeline["landing"].arn,
      aws_s3_bucket.pipeline["in_process"].arn,
      aws_s3_bucket.pipeline["phi_lake"].arn,
      aws_s3_bucket.pipeline["nonphi_lake"].arn,
      aws_s3_bucket.pipeline["artifacts"].arn,
    ]
  }

  statement {
    sid       = "ReadInputs"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.pipeline["landing"].arn}/*", "${aws_s3_bucket.pipeline["artifacts"].arn}/*"]
  }

  statement {
    sid    = "ReadWriteLakesAndInProcess"
    effect = "Allow"
    # AbortMultipartUpload: S3A and EMRFS abort a failed task's or commit's upload (else its parts stay).
    actions = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = [
      "${aws_s3_bucket.pipeline["in_process"].arn}/*",
      "${aws_s3_bucket.pipeline["phi_lake"].arn}/*",
      "${aws_s3_bucket.pipeline["nonphi_lake"].arn}/*",
    ]
  }

  statement {
    sid     = "WriteScratchAndLogs"
    effect  = "Allow"
    actions = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = [
      "${aws_s3_bucket.pipeline["artifacts"].arn}/glue-temp/*",
      "${aws_s3_bucket.pipeline["artifacts"].arn}/emr-logs/*",
      "${aws_s3_bucket.pipeline["artifacts"].arn}/spark-events/*",
    ]
  }

  statement {
    sid    = "PolicyAndControlTables"
    effect = "Allow"
    actions = [
      "dynamodb:DescribeTable",
      "dynamodb:GetItem",
      "dynamodb:BatchGetItem",
      "dynamodb:Query",
      "dynamodb:Scan",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:BatchWriteItem",
    ]
    resources = [aws_dynamodb_table.policy.arn, aws_dynamodb_table.control.arn]
  }

  # One writer per table: take, renew and give back the lease of the unit a job writes.
  statement {
    sid       = "WriterLeases"
    effect    = "Allow"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [aws_dynamodb_table.leases.arn]
  }

  # Delta's S3DynamoDBLogStore: it checks the table at start, then puts, reads and completes commit entries.
  statement {
    sid       = "DeltaCommitLog"
    effect    = "Allow"
    actions   = ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"]
    resources = [aws_dynamodb_table.delta_log.arn]
  }

  statement {
    sid       = "ReadSecrets"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [data.aws_secretsmanager_secret.masking_key.arn, data.aws_secretsmanager_secret.postgres.arn]
  }

  statement {
    sid       = "UsePipelineKey"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [aws_kms_key.pipeline.arn]
  }

  # PutMetricData has no resource-level permissions (AWS requires "*"); the namespace condition scopes it.
  statement {
    sid       = "PublishMetricsNeedsStar"
    effect    = "Allow"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["lakehouse", "Glue"]
    }
  }

  statement {
    sid     = "WriteOwnLogs"
    effect  = "Allow"
    actions = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey"]
    resources = [
      "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws-glue/*",
      "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws-glue/*:log-stream:*",
    ]
  }
}

# A Glue network connection creates network interfaces in the database's subnet. The Describe calls
# have no resource-level permissions (AWS requires "*"); the writes are scoped to the account's ENIs,
# subnets and security groups.
resource "aws_iam_role_policy" "glue_network" {
  count  = var.glue_connection_subnet_id == "" ? 0 : 1
  name   = "glue-network-connection"
  role   = aws_iam_role.glue.id
  policy = data.aws_iam_policy_document.glue_network.json
}

data "aws_iam_policy_document" "glue_network" {
  statement {
    sid    = "DescribeNetworkNeedsStar"
    effect = "Allow"
    actions = [
      "ec2:DescribeNetworkInterfaces",
      "ec2:DescribeSecurityGroups",
      "ec2:DescribeSubnets",
      "ec2:DescribeVpcEndpoints",
      "ec2:DescribeRouteTables",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "DescribeAccountVpcs"
    effect    = "Allow"
    actions   = ["ec2:DescribeVpcAttribute"]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:vpc/*"]
  }

  statement {
    sid     = "ManageConnectionInterfaces"
    effect  = "Allow"
    actions = ["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:CreateTags", "ec2:DeleteTags"]
    resources = [
      "arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-interface/*",
      "arn:${local.partition}:ec2:${local.region}:${local.account_id}:subnet/${var.glue_connection_subnet_id}",
      "arn:${local.partition}:ec2:${local.region}:${local.account_id}:security-group/*",
    ]
  }
}
