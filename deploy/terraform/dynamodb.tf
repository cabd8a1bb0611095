# The consent policy (one item per patient and device), the pipeline control items (current p_date and
# p_hour, moved on by the first step of each state machine run), the Lambdas' claims (idempotency under S3
# redelivery), the jobs' leases (one writer per table) and Delta's commit log for s3:// tables.

resource "aws_dynamodb_table" "policy" {
  name                        = local.dynamodb_tables.policy
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "patient_id"
  range_key                   = "device_id"
  deletion_protection_enabled = true

  attribute {
    name = "patient_id"
    type = "N" # the engine writes patient ids as numbers (lakehouse/policy/store.py)
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
  name                        = local.dynamodb_tables.control
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
  name                        = local.dynamodb_tables.dedup
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

# One item per write unit (a DMS table, or a snapshot feed with its tables) while a job writes it
# (lakehouse/ownership.py): put only if absent or expired, renewed while the job runs.
resource "aws_dynamodb_table" "leases" {
  name                        = local.dynamodb_tables.leases
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "unit"
  deletion_protection_enabled = true

  attribute {
    name = "unit"
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

# Delta's S3DynamoDBLogStore (delta-storage-s3-dynamodb): the schema it documents, with the TTL it uses to
# forget entries of commits long done.
resource "aws_dynamodb_table" "delta_log" {
  name                        = local.dynamodb_tables.delta_log
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "tablePath"
  range_key                   = "fileName"
  deletion_protection_enabled = true

  attribute {
    name = "tablePath"
    type = "S"
  }

  attribute {
    name = "fileName"
    type = "S"
  }

  ttl {
    attribute_name = "expireTime"
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
