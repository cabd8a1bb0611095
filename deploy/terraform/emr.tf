# What the EMR flow's transient cluster runs with: a security configuration (at-rest encryption with
# the pipeline key), the EMR service role, and the instance role of its nodes.

resource "aws_emr_security_configuration" "pipeline" {
  name = "${local.name}-emr"

  configuration = jsonencode({
    EncryptionConfiguration = {
      EnableAtRestEncryption    = true
      EnableInTransitEncryption = false
      AtRestEncryptionConfiguration = {
        S3EncryptionConfiguration = {
          EncryptionMode = "SSE-KMS"
          AwsKmsKey      = aws_kms_key.pipeline.arn
        }
        LocalDiskEncryptionConfiguration = {
          EncryptionKeyProviderType = "AwsKms"
          AwsKmsKey                 = aws_kms_key.pipeline.arn
          EnableEbsEncryption       = true
        }
      }
    }
  })
}

# The service role uses AWS's managed AmazonEMRServicePolicy_v2: EMR's own EC2 calls are scoped there
# by the for-use-with-amazon-emr-managed-policies tag (documented exception: a hand-written equivalent
# would be longer, not narrower). The only addition is passing the instance role.
resource "aws_iam_role" "emr_service" {
  name               = "${local.name}-emr-service"
  assume_role_policy = data.aws_iam_policy_document.assume_emr.json
}

data "aws_iam_policy_document" "assume_emr" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["elasticmapreduce.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role_policy_attachment" "emr_service" {
  role       = aws_iam_role.emr_service.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"
}

resource "aws_iam_role_policy" "emr_service_pass_instance_role" {
  name   = "pass-instance-role"
  role   = aws_iam_role.emr_service.id
  policy = data.aws_iam_policy_document.emr_service_pass.json
}

data "aws_iam_policy_document" "emr_service_pass" {
  statement {
    sid       = "PassInstanceRole"
    effect    = "Allow"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.emr_instance.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com"]
    }
  }

  # EBS encryption of the nodes' volumes (the security configuration): EMR creates them with the
  # pipeline key, so the key's policy must delegate these actions too (kms.tf).
  statement {
    sid    = "UsePipelineKeyForVolumes"
    effect = "Allow"
    actions = [
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:Encrypt",
      "kms:GenerateDataKey",
      "kms:GenerateDataKeyWithoutPlaintext",
      "kms:ReEncryptFrom",
      "kms:ReEncryptTo",
    ]
    resources = [aws_kms_key.pipeline.arn]
  }

  statement {
    sid       = "GrantPipelineKeyToVolumes"
    effect    = "Allow"
    actions   = ["kms:CreateGrant"]
    resources = [aws_kms_key.pipeline.arn]
    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }
}

# The nodes run the same scripts as the Glue jobs, so they get the same data access.
resource "aws_iam_role" "emr_instance" {
  name               = "${local.name}-emr-instance"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
}

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "emr_instance" {
  name   = "pipeline-access"
  role   = aws_iam_role.emr_instance.id
  policy = data.aws_iam_policy_document.spark_jobs.json
}

resource "aws_iam_instance_profile" "emr_instance" {
  name = "${local.name}-emr-instance"
  role = aws_iam_role.emr_instance.name
}
