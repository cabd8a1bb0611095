# Every name is "${var.project}-${var.environment}-<purpose>" (bucket names add var.bucket_suffix, since
# S3 bucket names are global); Glue and Athena names use underscores.

variable "project" {
  description = "Project name, the first part of every resource name."
  type        = string
  default     = "lakehouse"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.project))
    error_message = "project must be 2-21 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Environment name (dev, staging, prod), the second part of every resource name."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,9}$", var.environment))
    error_message = "environment must be 2-10 lowercase letters or digits, starting with a letter."
  }
}

variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "us-east-1"
}

variable "bucket_suffix" {
  description = "Appended to every bucket name to make it globally unique, e.g. \"-123456789012\"."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}

variable "dms_tables" {
  description = "The engine's DMS tables (config/aws.yaml `tables:`): one apply-once run each, two catalog tables, alarms."
  type        = list(string)
  default     = ["consents", "patients", "devices", "therapy_sessions"]

  validation {
    condition     = alltrue([for t in var.dms_tables : can(regex("^[a-z][a-z0-9_]*$", t))])
    error_message = "table names are lowercase identifiers (letters, digits, underscores)."
  }
}

variable "snapshot_feeds" {
  description = "The engine's snapshot feeds (config/aws.yaml `snapshots:`) and the tables each fills: one apply-once run per feed, never per table (a feed's tables share one checkpoint and one writer)."
  type        = map(list(string))
  default = {
    opais = [
      "dim_ce",
      "dim_ce_medicaid",
      "dim_ce_npi",
      "dim_ce_street_address",
      "dim_ce_billing_address",
      "dim_ce_shipping_address",
      "dim_ce_contract_pharmacy",
      "dim_pharmacy",
    ]
    pecos_clinicians = ["pecos_clinicians"]
  }

  validation {
    condition     = alltrue([for t in flatten(values(var.snapshot_feeds)) : can(regex("^[a-z][a-z0-9_]*$", t))])
    error_message = "table names are lowercase identifiers (letters, digits, underscores)."
  }
}

variable "non_phi_tables" {
  description = "The tables the engine also writes to the non-PHI zone (those with phi_columns in config/aws.yaml)."
  type        = list(string)
  default     = ["patients", "devices", "therapy_sessions"]
}

variable "policy_source_table" {
  description = "The DMS table of consent records the policy is built from (config/aws.yaml policy.source_table): applied first, before the policy build."
  type        = string
  default     = "consents"
}

variable "dms_prefix" {
  description = "Folder of the landing bucket that AWS DMS writes to; the landing router copies what lands there."
  type        = string
  default     = "dms/"
}

variable "snapshot_prefix" {
  description = "Folder of the landing bucket the HRSA 340B OPAIS exports arrive in (the opais feed's path in the rendered config/aws.yaml)."
  type        = string
  default     = "opais/340b/"

  validation {
    condition     = can(regex("^[^/].*/$", var.snapshot_prefix))
    error_message = "snapshot_prefix is a folder of the landing bucket: no leading slash, one at the end (opais/340b/)."
  }
}

variable "pecos_prefix" {
  description = "Folder of the landing bucket the CMS PECOS (Doctors and Clinicians) files arrive in (the pecos_clinicians feed's path in the rendered config/aws.yaml)."
  type        = string
  default     = "pecos/"

  validation {
    condition     = can(regex("^[^/].*/$", var.pecos_prefix))
    error_message = "pecos_prefix is a folder of the landing bucket: no leading slash, one at the end (pecos/)."
  }
}

variable "in_process_prefix" {
  description = "Folder of the in-process bucket the landing router copies to (p_date=/p_hour= folders below it), where the rendered config/aws.yaml's DMS tables read."
  type        = string
  default     = "dms"

  validation {
    condition     = can(regex("^[^/](.*[^/])?$", var.in_process_prefix))
    error_message = "in_process_prefix is a folder of the in-process bucket without a leading or trailing slash (dms)."
  }
}

variable "in_process_expiration_days" {
  description = "Days the landing router's copy of a DMS file stays in the in-process bucket (the original stays in landing). The stream never takes a file older than stream.max_file_age_hours (168 h in config/aws.yaml) again; the rest is the margin for an outage, a restarted checkpoint or a replayed batch."
  type        = number
  default     = 30

  validation {
    condition     = var.in_process_expiration_days > 7 && floor(var.in_process_expiration_days) == var.in_process_expiration_days
    error_message = "in_process_expiration_days must be a whole number of days above 7 (stream.max_file_age_hours is 168 h): a copy must not expire before the stream has read it."
  }
}

variable "athena_results_expiration_days" {
  description = "Days Athena's query results (PHI rows, and rows of patients forgotten since) stay under s3://<artifacts>/athena-results/."
  type        = number
  default     = 7

  validation {
    condition     = var.athena_results_expiration_days >= 1 && floor(var.athena_results_expiration_days) == var.athena_results_expiration_days
    error_message = "athena_results_expiration_days must be a whole number of days, at least 1."
  }
}

variable "pipeline_name" {
  description = "Key of the control item (attribute `pipeline`) that holds the current p_date and p_hour."
  type        = string
  default     = "cpap"
}

variable "wheel_file" {
  description = "File name of the lakehouse wheel uploaded to s3://<artifacts>/wheels/."
  type        = string
  default     = "lakehouse-0.1.0-py3-none-any.whl"
}

variable "delta_version" {
  description = "Delta Lake version of the runtimes (Glue 5.1, EMR 7.11+: 3.3.2); the DynamoDB log store jar matches it."
  type        = string
  default     = "3.3.2"
}

variable "config_file" {
  description = "File name of the engine's AWS configuration uploaded to s3://<artifacts>/config/."
  type        = string
  default     = "aws.yaml"
}

variable "glue_version" {
  description = "AWS Glue version of the batch jobs (5.0 and 5.1 run Spark 3.5 with Delta 3.3)."
  type        = string
  default     = "5.1"

  validation {
    condition     = contains(["5.0", "5.1"], var.glue_version)
    error_message = "glue_version must be 5.0 or 5.1 (Spark 3.5, Delta 3.3): the engine targets that line."
  }
}

variable "glue_worker_type" {
  description = "Glue worker type of the batch jobs."
  type        = string
  default     = "G.1X"
}

variable "glue_workers" {
  description = "Number of Glue workers of some batch jobs, by job (a key of local.glue_jobs); a job not named keeps its default there, so a map written before a job was added still plans."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for n in values(var.glue_workers) : n >= 2 && floor(n) == n])
    error_message = "glue_workers are whole numbers of at least 2 (a Glue Spark job's minimum)."
  }
}

variable "glue_flow_schedule" {
  description = "EventBridge schedule of the Glue flow (UTC)."
  type        = string
  default     = "cron(30 2 * * ? *)"
}

variable "glue_connection_subnet_id" {
  description = "Subnet (with a route to PostgreSQL) for the export job's Glue network connection; empty for none."
  type        = string
  default     = ""
}

variable "glue_connection_security_group_ids" {
  description = "Security groups of the export job's Glue network connection."
  type        = list(string)
  default     = []
}

variable "glue_connection_availability_zone" {
  description = "Availability zone of glue_connection_subnet_id."
  type        = string
  default     = ""
}

variable "vpc_id" {
  description = "VPC of PostgreSQL and of glue_connection_subnet_id; with both set, Terraform makes the export job's security group, the rule into PostgreSQL and the VPC endpoints. With this set and emr_subnet_id in this VPC, the EMR flow's cluster nodes are let into PostgreSQL (and into the endpoints, where they exist)."
  type        = string
  default     = ""
}

variable "postgres_security_group_id" {
  description = "Security group of the RDS PostgreSQL instance; Terraform adds the rule that lets the export job in."
  type        = string
  default     = ""
}

variable "postgres_port" {
  description = "PostgreSQL's port."
  type        = number
  default     = 5432
}

variable "glue_jobs_https_egress_cidr" {
  description = "Where the export job may open HTTPS besides the VPC endpoints: PyPI through the subnet's NAT for the wheel's dependencies (0.0.0.0/0), a PyPI mirror's range, or \"\" for none (the modules then come from elsewhere)."
  type        = string
  default     = "0.0.0.0/0"
}

variable "vpc_route_table_ids" {
  description = "Route tables of glue_connection_subnet_id, for the S3 and DynamoDB gateway endpoints (empty: the account already has them)."
  type        = list(string)
  default     = []
}

variable "masking_key_secret_name" {
  description = "Name of the existing Secrets Manager secret that holds the pseudonymization key (never in Terraform)."
  type        = string
}

variable "postgres_secret_name" {
  description = "Name of the existing Secrets Manager secret with the PostgreSQL connection (host, port, dbname, username, password)."
  type        = string
}

variable "emr_release_label" {
  description = "EMR release of the transient cluster (7.11-7.13: Spark 3.5.6, Delta 3.3.2)."
  type        = string
  default     = "emr-7.12.0"
}

variable "emr_subnet_id" {
  description = "Private subnet of the transient EMR cluster (tag it and its VPC for-use-with-amazon-emr-managed-policies=true)."
  type        = string
}

variable "emr_primary_instance_type" {
  description = "Instance type of the EMR primary node."
  type        = string
  default     = "m7g.xlarge"
}

variable "emr_core_instance_type" {
  description = "Instance type of the two EMR core nodes."
  type        = string
  default     = "r7g.2xlarge"
}

variable "alarm_email" {
  description = "Optional e-mail subscribed to the alerts topic (confirm the subscription by mail)."
  type        = string
  default     = ""
}

variable "log_retention_days" {
  description = "Retention of the pipeline's CloudWatch log groups."
  type        = number
  default     = 365
}
