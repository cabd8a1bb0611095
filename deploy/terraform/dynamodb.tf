# The consent policy (one item per patient and device), the pipeline control items (current p_date and
# p_hour, moved on by the first job), and the Lambdas' claims (idempotency under S3 redelivery).

resource "aws_dynamodb_table" "policy" {
  name                        = "${local.name}-policy"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "patient_id"
  range_key                   = "device_id"
  deletion_protection_enabled = true

  attribute {
    name = "patient_id"
    type = "S"
  }

  attribute {
    name = "device_id"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.pipeline.arn
  }
}

resource "aws_dynamodb_table" "control" {
  name                        = "${local.name}-control"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pipeline"
  deletion_protection_enabled = true

  attribute {
    name = "pipeline"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.pipeline.arn
  }
}

resource "aws_dynamodb_table" "dedup" {
  name                        = "${local.name}-dedup"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "id"
  deletion_protection_enabled = true

  attribute {
    name = "id"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.pipeline.arn
  }
}
