# The pipeline's buckets: SSE-KMS with the pipeline key, versioned, public access blocked, TLS only,
# server access logs to the access-logs bucket, lifecycle rules for old versions, failed uploads, the router's
# copies and Athena's results.

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

# How long S3 keeps what the pipeline deletes or overwrites (deploy/README.md, "What S3 keeps, and how long").
locals {
  # Days a deleted or overwritten object's old version stays readable (GetObjectVersion), by bucket.
  #   nonphi_lake  1: a VACUUM after `lakehouse privacy forget` (or a consent withdrawal) only puts delete
  #                markers here; the old Parquet and _delta_log files must not outlive the forget's horizon.
  #   phi_lake    30: the PHI zone erases nothing by design (history keeps every version, deletes included),
  #                so its old versions hold nothing the tables do not; they are the way back from a deleted
  #                table folder or a VACUUM run at 0 hours, noticed within a month.
  #   in_process   1: the router's copies; every original stays in the landing bucket.
  noncurrent_version_days = {
    landing     = 90
    in_process  = 1
    phi_lake    = 30
    nonphi_lake = 1
    artifacts   = 90
  }

  # Current objects that expire, one prefix per bucket at most: the router's copies of the DMS files (read
  # within stream.max_file_age_hours, then never again) and Athena's query results (PHI rows, and rows of
  # patients forgotten since, outside the zones). Their old versions go a day later.
  current_object_expiry = {
    in_process = { rule = "expire-routed-dms-copies", prefix = local.in_process_dms, days = var.in_process_expiration_days }
    artifacts  = { rule = "expire-athena-results", prefix = local.athena_results_prefix, days = var.athena_results_expiration_days }
  }
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

  # A delete marker left with no version behind it is removed too (listings skip no dead keys).
  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = local.noncurrent_version_days[each.key]
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  dynamic "rule" {
    for_each = contains(keys(local.current_object_expiry), each.key) ? [local.current_object_expiry[each.key]] : []
    content {
      id     = rule.value.rule
      status = "Enabled"
      filter {
        prefix = rule.value.prefix
      }
      expiration {
        days = rule.value.days
      }
      noncurrent_version_expiration {
        noncurrent_days = 1
      }
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
