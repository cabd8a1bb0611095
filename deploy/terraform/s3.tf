# The pipeline's buckets: SSE-KMS with the pipeline key, versioned, public access blocked, TLS only,
# server access logs to the access-logs bucket, lifecycle rules for old versions and failed uploads.

resource "aws_s3_bucket" "pipeline" {
  # checkov:skip=CKV2_AWS_62:Only the landing bucket has consumers of its events (aws_s3_bucket_notification.landing); the others are written by the pipeline itself.
  for_each = local.buckets
  bucket   = each.value
}

resource "aws_s3_bucket_server_side_encryption_configuration" "pipeline" {
  for_each = aws_s3_bucket.pipeline
  bucket   = each.value.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.pipeline.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "pipeline" {
  for_each = aws_s3_bucket.pipeline
  bucket   = each.value.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_public_access_block" "pipeline" {
  for_each                = aws_s3_bucket.pipeline
  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "pipeline" {
  for_each = aws_s3_bucket.pipeline
  bucket   = each.value.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_policy" "pipeline" {
  for_each = aws_s3_bucket.pipeline
  bucket   = each.value.id
  policy   = data.aws_iam_policy_document.tls_only[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.pipeline]
}

data "aws_iam_policy_document" "tls_only" {
  for_each = local.buckets

  # A Deny narrows, it never grants: the wildcard action is deliberate (every S3 call without TLS).
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = ["arn:${local.partition}:s3:::${each.value}", "arn:${local.partition}:s3:::${each.value}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_logging" "pipeline" {
  for_each      = aws_s3_bucket.pipeline
  bucket        = each.value.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "${each.key}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "pipeline" {
  for_each = aws_s3_bucket.pipeline
  bucket   = each.value.id

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Delta keeps its own history in the lakes; older S3 versions are only a safety net there.
  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = contains(["phi_lake", "nonphi_lake"], each.key) ? 30 : 90
    }
  }

  depends_on = [aws_s3_bucket_versioning.pipeline]
}

# S3 server access logs: delivered with SSE-S3 (log delivery cannot use SSE-KMS on its target bucket).
resource "aws_s3_bucket" "access_logs" {
  # checkov:skip=CKV_AWS_145:S3 server access log delivery supports only SSE-S3 (AES256) on its target bucket, not SSE-KMS.
  # checkov:skip=CKV2_AWS_62:Nothing consumes events of the access-log bucket.
  # checkov:skip=CKV_AWS_18:The access-log bucket does not log to itself.
  bucket = local.access_logs_bucket
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = 400
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.access_logs]
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  policy = data.aws_iam_policy_document.access_logs.json

  depends_on = [aws_s3_bucket_public_access_block.access_logs]
}

data "aws_iam_policy_document" "access_logs" {
  statement {
    sid       = "S3ServerAccessLogDelivery"
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.access_logs.arn, "${aws_s3_bucket.access_logs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

# Landing: DMS files go straight to the router Lambda; every object-created event also goes to
# EventBridge, where the 340B rule picks the snapshot exports.
resource "aws_s3_bucket_notification" "landing" {
  bucket      = aws_s3_bucket.pipeline["landing"].id
  eventbridge = true

  lambda_function {
    lambda_function_arn = aws_lambda_function.landing_router.arn
    events              = ["s3:ObjectCreated:*"]
    filter_prefix       = var.dms_prefix
  }

  depends_on = [aws_lambda_permission.landing_router_from_s3]
}
