# Who writes to the landing bucket: AWS DMS (the service-access role of its S3 target endpoint) under dms_prefix,
# and whoever delivers the HRSA 340B exports and the CMS PECOS files under snapshot_prefix and pecos_prefix. The
# bucket encrypts every object with the pipeline key (SSE-KMS by default) and the key's policy leaves its use to IAM,
# so an uploader without this policy has every PutObject refused. Terraform attaches it to nobody: these writers
# are not the pipeline's (deploy/README.md section 1).

resource "aws_iam_policy" "landing_writer" {
  name        = "${local.name}-landing-writer"
  description = "Upload DMS files, 340B exports and PECOS files to the lakehouse landing bucket (SSE-KMS with the pipeline key)"
  policy      = data.aws_iam_policy_document.landing_writer.json
}

data "aws_iam_policy_document" "landing_writer" {
  statement {
    sid       = "ListLanding"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.pipeline["landing"].arn]
  }

  # PutObjectTagging: AWS DMS requires it of its S3 target role; AbortMultipartUpload: a failed large upload (a
  # 200 MB 340B export goes up in parts) leaves no parts behind.
  statement {
    sid     = "PutLandingFiles"
    effect  = "Allow"
    actions = ["s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"]
    resources = [
      "${aws_s3_bucket.pipeline["landing"].arn}/${var.dms_prefix}*",
      "${aws_s3_bucket.pipeline["landing"].arn}/${var.snapshot_prefix}*",
      "${aws_s3_bucket.pipeline["landing"].arn}/${var.pecos_prefix}*",
    ]
  }

  # AWS DMS requires s3:DeleteObject of its S3 target role, in its own folder only. The bucket is versioned: what
  # it deletes stays readable 90 days, and the router acts on created objects only.
  statement {
    sid       = "DmsClearsItsFolders"
    effect    = "Allow"
    actions   = ["s3:DeleteObject"]
    resources = ["${aws_s3_bucket.pipeline["landing"].arn}/${var.dms_prefix}*"]
  }

  # S3 encrypts with the pipeline key in the writer's name: GenerateDataKey (and Encrypt) for every upload,
  # Decrypt to complete a multipart one. Only through S3.
  statement {
    sid       = "EncryptLandingFilesWithThePipelineKey"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"]
    resources = [aws_kms_key.pipeline.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.region}.amazonaws.com"]
    }
  }
}
