# Existing secrets, referenced by name: Terraform never reads or stores their values. The jobs get the
# secrets' ARNs as arguments and read the values at run time with their own role.

data "aws_secretsmanager_secret" "masking_key" {
  name = var.masking_key_secret_name
}

data "aws_secretsmanager_secret" "postgres" {
  name = var.postgres_secret_name
}
