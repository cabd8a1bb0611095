# Athena (engine version 3 reads Delta natively): a workgroup with encrypted results, and saved "as of"
# queries over every history table. Athena has no Delta time travel, so "as of" is a WHERE on the
# validity columns; the 340B dimensions also carry effective_stp/expiration_stp (open end 9999-12-31).

# Two workgroups, one per zone, each with its own results folder: a workgroup's members see its query history
# and results (the SQL text of a PHI query holds ids and dates), so non-PHI readers get the `-nonphi` one and
# read access to its folder only. Both folders expire under athena-results/ (s3.tf).
resource "aws_athena_workgroup" "zone" {
  for_each      = { phi = local.name, nonphi = "${local.name}-nonphi" }
  name          = each.value
  description   = "lakehouse queries over the ${each.key == "phi" ? "PHI" : "non-PHI"} zone (Athena engine 3: native Delta reads)"
  force_destroy = false

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true

    engine_version {
      selected_engine_version = "Athena engine version 3"
    }

    result_configuration {
      output_location = "${local.artifacts_uri}/${local.athena_results_prefix}${each.key}/"

      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.pipeline.arn
      }
    }
  }
}

moved {
  from = aws_athena_workgroup.pipeline
  to   = aws_athena_workgroup.zone["phi"]
}

locals {
  as_of = "2026-01-01 00:00:00"
  as_of_queries = {
    for table in local.tables : table => contains(flatten(values(var.snapshot_feeds)), table) ? join("\n", [
      "-- ${table} as it was at a point in time: edit the timestamp (UTC). Open versions end 9999-12-31 23:59:59.",
      "SELECT *",
      "FROM \"${local.catalog}_phi\".\"${table}_history\"",
      "WHERE effective_stp <= TIMESTAMP '${local.as_of}'",
      "  AND expiration_stp > TIMESTAMP '${local.as_of}'",
      "  AND change_type <> 'DELETE'",
      ]) : join("\n", [
      "-- ${table} as it was at a point in time: edit the timestamp (UTC). The open version has _valid_to NULL.",
      "SELECT *",
      "FROM \"${local.catalog}_phi\".\"${table}_history\"",
      "WHERE _valid_from <= TIMESTAMP '${local.as_of}'",
      "  AND (_valid_to IS NULL OR _valid_to > TIMESTAMP '${local.as_of}')",
      "  AND NOT _is_deleted",
    ])
  }
}

resource "aws_athena_named_query" "as_of" {
  for_each    = local.as_of_queries
  name        = "${local.name}-${replace(each.key, "_", "-")}-as-of"
  description = "The rows of ${each.key} that were live at a given time, from its Delta history table."
  workgroup   = aws_athena_workgroup.zone["phi"].id
  database    = aws_glue_catalog_database.zone["phi"].name
  query       = each.value
}
