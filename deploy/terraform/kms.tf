# One customer-managed key encrypts the pipeline's data at rest: S3 (SSE-KMS), DynamoDB, SNS, SQS,
# CloudWatch Logs, Lambda environments, Athena results, Glue and EMR.

resource "aws_kms_key" "pipeline" {
  description             = "${local.name}: data at rest of the lakehouse pipeline"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms_key.json
}

resource "aws_kms_alias" "pipeline" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.pipeline.key_id
}

data "aws_iam_policy_document" "kms_key" {
  # checkov:skip=CKV_AWS_109:A key policy's Resource "*" is this key only; the account root administers it (AWS's documented default, actions listed).
  # checkov:skip=CKV_AWS_111:A key policy's Resource "*" is this key only; writes are to this key, by this account and the listed services.
  # checkov:skip=CKV_AWS_356:A key policy's Resource "*" is this key only (AWS requires "*" in key policies).
  # In a key policy, Resource "*" means "this key" (AWS requires it). The account administers the key
  # through IAM; the actions are listed rather than "kms:*".
  statement {
    sid       = "KeyPolicyAccountAdministration"
    effect    = "Allow"
    resources = ["*"]
    actions = [
      "kms:CancelKeyDeletion",
      "kms:CreateAlias",
      "kms:CreateGrant",
      "kms:Decrypt",
      "kms:DeleteAlias",
      "kms:DescribeKey",
      "kms:DisableKey",
      "kms:DisableKeyRotation",
      "kms:EnableKey",
      "kms:EnableKeyRotation",
      "kms:Encrypt",
      "kms:GenerateDataKey",
      "kms:GenerateDataKeyWithoutPlaintext",
      "kms:GetKeyPolicy",
      "kms:GetKeyRotationStatus",
      "kms:ListGrants",
      "kms:ListResourceTags",
      "kms:PutKeyPolicy",
      "kms:ReEncryptFrom",
      "kms:ReEncryptTo",
      "kms:RetireGrant",
      "kms:RevokeGrant",
      "kms:ScheduleKeyDeletion",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:UpdateAlias",
      "kms:UpdateKeyDescription",
    ]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "KeyPolicyCloudWatchLogs"
    effect    = "Allow"
    resources = ["*"]
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey", "kms:DescribeKey"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
    }
  }

  # EventBridge and CloudWatch alarms publish to the encrypted SNS topic and SQS dead-letter queue.
  statement {
    sid       = "KeyPolicyEventsAndAlarms"
    effect    = "Allow"
    resources = ["*"]
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com", "cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}
