# How the export job reaches RDS PostgreSQL in its VPC (only when glue_connection_subnet_id and vpc_id are
# set): a security group for the job's network interfaces, the rule that lets it into the database's
# security group on 5432, and the VPC endpoints the job's other calls need from inside the VPC (S3 and
# DynamoDB gateways; Secrets Manager, CloudWatch metrics and logs, STS and KMS interfaces: the job's security
# configuration has it encrypt with the pipeline key, so it must reach KMS too). A Glue job with a network
# connection has no route to the internet unless the subnet has a NAT: see deploy/README.md.

locals {
  glue_vpc           = var.glue_connection_subnet_id != "" && var.vpc_id != "" ? 1 : 0
  interface_services = var.glue_connection_subnet_id != "" && var.vpc_id != "" ? toset(["secretsmanager", "monitoring", "logs", "sts", "kms"]) : toset([])
  gateway_services   = var.glue_connection_subnet_id != "" && var.vpc_id != "" && length(var.vpc_route_table_ids) > 0 ? toset(["s3", "dynamodb"]) : toset([])
}

resource "aws_security_group" "glue_jobs" {
  # checkov:skip=CKV2_AWS_5:Attached to the export job's Glue network connection (aws_glue_connection.postgres_network), which checkov does not follow.
  count       = local.glue_vpc
  name        = "${local.name}-glue-jobs"
  description = "lakehouse Glue jobs with a network connection (the PostgreSQL export)"
  vpc_id      = var.vpc_id
}

# Glue requires a self-referencing rule: its workers talk to each other on any TCP port.
resource "aws_vpc_security_group_ingress_rule" "glue_self" {
  # checkov:skip=CKV_AWS_24:The source is this security group itself (referenced_security_group_id), not 0.0.0.0/0.
  # checkov:skip=CKV_AWS_260:The source is this security group itself (referenced_security_group_id), not 0.0.0.0/0.
  # checkov:skip=CKV_AWS_25:The source is this security group itself (referenced_security_group_id), not 0.0.0.0/0.
  count                        = local.glue_vpc
  security_group_id            = aws_security_group.glue_jobs[0].id
  description                  = "Glue workers of one job run to each other"
  referenced_security_group_id = aws_security_group.glue_jobs[0].id
  ip_protocol                  = "tcp"
  from_port                    = 0
  to_port                      = 65535
}

resource "aws_vpc_security_group_egress_rule" "glue_self" {
  count                        = local.glue_vpc
  security_group_id            = aws_security_group.glue_jobs[0].id
  description                  = "Glue workers of one job run to each other"
  referenced_security_group_id = aws_security_group.glue_jobs[0].id
  ip_protocol                  = "tcp"
  from_port                    = 0
  to_port                      = 65535
}

resource "aws_vpc_security_group_egress_rule" "glue_to_postgres" {
  count                        = local.glue_vpc * (var.postgres_security_group_id == "" ? 0 : 1)
  security_group_id            = aws_security_group.glue_jobs[0].id
  description                  = "The export job to RDS PostgreSQL"
  referenced_security_group_id = var.postgres_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = var.postgres_port
  to_port                      = var.postgres_port
}

resource "aws_vpc_security_group_ingress_rule" "postgres_from_glue" {
  count                        = local.glue_vpc * (var.postgres_security_group_id == "" ? 0 : 1)
  security_group_id            = var.postgres_security_group_id
  description                  = "lakehouse export job (Glue) to PostgreSQL"
  referenced_security_group_id = aws_security_group.glue_jobs[0].id
  ip_protocol                  = "tcp"
  from_port                    = var.postgres_port
  to_port                      = var.postgres_port
}

resource "aws_vpc_security_group_egress_rule" "glue_to_endpoints" {
  count                        = local.glue_vpc
  security_group_id            = aws_security_group.glue_jobs[0].id
  description                  = "HTTPS to the VPC interface endpoints"
  referenced_security_group_id = aws_security_group.endpoints[0].id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

# The S3 and DynamoDB prefix lists exist in every region, whoever made the gateway endpoints: these (with
# vpc_route_table_ids) or the account's own. The job reads its script, wheel, config and tables from S3 and takes
# Delta's log locks in DynamoDB, so it needs both either way.
data "aws_prefix_list" "gateway" {
  for_each = local.glue_vpc == 1 ? toset(["s3", "dynamodb"]) : toset([])
  name     = "com.amazonaws.${var.region}.${each.key}"
}

resource "aws_vpc_security_group_egress_rule" "glue_to_gateways" {
  for_each          = data.aws_prefix_list.gateway
  security_group_id = aws_security_group.glue_jobs[0].id
  description       = "HTTPS to ${each.key} through its gateway endpoint"
  prefix_list_id    = each.value.id
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

# Glue installs the wheel's dependencies (--additional-python-modules) from PyPI through the subnet's NAT.
resource "aws_vpc_security_group_egress_rule" "glue_https_out" {
  count             = local.glue_vpc * (var.glue_jobs_https_egress_cidr == "" ? 0 : 1)
  security_group_id = aws_security_group.glue_jobs[0].id
  description       = "HTTPS to PyPI (or its mirror) for the job's Python modules"
  cidr_ipv4         = var.glue_jobs_https_egress_cidr
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_security_group" "endpoints" {
  count       = local.glue_vpc
  name        = "${local.name}-endpoints"
  description = "lakehouse VPC interface endpoints (HTTPS from the Glue jobs)"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_glue" {
  count                        = local.glue_vpc
  security_group_id            = aws_security_group.endpoints[0].id
  description                  = "HTTPS from the lakehouse Glue jobs"
  referenced_security_group_id = aws_security_group.glue_jobs[0].id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

resource "aws_vpc_endpoint" "interface" {
  for_each            = local.interface_services
  vpc_id              = var.vpc_id
  service_name        = "com.amazonaws.${var.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = [var.glue_connection_subnet_id]
  security_group_ids  = [aws_security_group.endpoints[0].id]
  private_dns_enabled = true
}

resource "aws_vpc_endpoint" "gateway" {
  for_each          = local.gateway_services
  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${var.region}.${each.key}"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.vpc_route_table_ids
}

# The EMR flow's export step runs on its transient cluster, whose nodes get this group as well as EMR's own (the
# flow's Additional*SecurityGroups; EMR's own groups give them their egress). When the cluster's subnet
# (emr_subnet_id) is in PostgreSQL's VPC (vpc_id), PostgreSQL and, where Terraform made them (with
# glue_connection_subnet_id), the interface endpoints (whose private DNS the nodes then resolve) let the group in. A
# cluster in another VPC needs a route (peering, Transit Gateway) and a rule of your own into PostgreSQL's security
# group from this one's.
data "aws_subnet" "emr" {
  id = var.emr_subnet_id
}

locals {
  emr_in_postgres_vpc = var.vpc_id != "" && data.aws_subnet.emr.vpc_id == var.vpc_id ? 1 : 0
}

resource "aws_security_group" "emr_nodes" {
  # checkov:skip=CKV2_AWS_5:Attached to the EMR flow's transient clusters (AdditionalMasterSecurityGroups in deploy/stepfunctions/emr_flow.asl.json), which checkov does not follow.
  name        = "${local.name}-emr-nodes"
  description = "lakehouse EMR flow cluster nodes (the PostgreSQL export step)"
  vpc_id      = data.aws_subnet.emr.vpc_id

  tags = {
    # AmazonEMRServicePolicy_v2 lets EMR use only resources with this tag.
    "for-use-with-amazon-emr-managed-policies" = "true"
  }
}

resource "aws_vpc_security_group_ingress_rule" "postgres_from_emr" {
  count                        = local.emr_in_postgres_vpc * (var.postgres_security_group_id == "" ? 0 : 1)
  security_group_id            = var.postgres_security_group_id
  description                  = "lakehouse export step (EMR flow) to PostgreSQL"
  referenced_security_group_id = aws_security_group.emr_nodes.id
  ip_protocol                  = "tcp"
  from_port                    = var.postgres_port
  to_port                      = var.postgres_port
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_emr" {
  count                        = local.emr_in_postgres_vpc * local.glue_vpc
  security_group_id            = aws_security_group.endpoints[0].id
  description                  = "HTTPS from the lakehouse EMR flow's cluster nodes"
  referenced_security_group_id = aws_security_group.emr_nodes.id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}
