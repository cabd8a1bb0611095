# Execution roles of the two state machines, scoped to the pipeline's own jobs, clusters and topic.

data "aws_iam_policy_document" "assume_states" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# What both flows need: notify, use the key (topic and state machine encryption), deliver logs.
data "aws_iam_policy_document" "sfn_common" {
  statement {
    sid       = "Notify"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
  }

  statement {
    sid       = "UsePipelineKey"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.pipeline.arn]
  }

  # The first step of each run moves the landing router's control item on to a new folder.
  statement {
    sid       = "MoveLandingFolder"
    effect    = "Allow"
    actions   = ["dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.control.arn]
  }

  # Step Functions' log delivery: these CloudWatch Logs actions have no resource-level permissions
  # (AWS requires "*", see "IAM policies for logging to CloudWatch Logs" in the Step Functions guide).
  statement {
    sid    = "LogDeliveryNeedsStar"
    effect = "Allow"
    actions = [
      "logs:CreateLogDelivery",
      "logs:GetLogDelivery",
      "logs:UpdateLogDelivery",
      "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries",
      "logs:PutResourcePolicy",
      "logs:DescribeResourcePolicies",
      "logs:DescribeLogGroups",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role" "sfn_glue_flow" {
  name               = "${local.name}-sfn-glue-flow"
  assume_role_policy = data.aws_iam_policy_document.assume_states.json
}

resource "aws_iam_role_policy" "sfn_glue_flow" {
  name   = "run-glue-flow"
  role   = aws_iam_role.sfn_glue_flow.id
  policy = data.aws_iam_policy_document.sfn_glue_flow.json
}

data "aws_iam_policy_document" "sfn_glue_flow" {
  source_policy_documents = [data.aws_iam_policy_document.sfn_common.json]

  # glue:startJobRun.sync starts the run, polls it, and stops it if the execution is stopped.
  statement {
    sid     = "RunPipelineGlueJobs"
    effect  = "Allow"
    actions = ["glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun"]
    resources = [
      aws_glue_job.batch["policy_build"].arn,
      aws_glue_job.batch["apply_once"].arn,
      aws_glue_job.batch["export_postgres"].arn,
    ]
  }

  # The flow's first state lists its own RUNNING executions and ends if another one runs (one run at a time).
  # The ARN is built from the machine's name: aws_sfn_state_machine.glue_flow.arn would make Terraform create this
  # policy, log-delivery grants included (CreateStateMachine checks them), only after the machine that needs it.
  statement {
    sid       = "ListOwnExecutions"
    effect    = "Allow"
    actions   = ["states:ListExecutions"]
    resources = ["arn:${local.partition}:states:${local.region}:${local.account_id}:stateMachine:${local.name}-glue-flow"]
  }
}

resource "aws_iam_role" "sfn_emr_flow" {
  name               = "${local.name}-sfn-emr-flow"
  assume_role_policy = data.aws_iam_policy_document.assume_states.json
}

resource "aws_iam_role_policy" "sfn_emr_flow" {
  name   = "run-emr-flow"
  role   = aws_iam_role.sfn_emr_flow.id
  policy = data.aws_iam_policy_document.sfn_emr_flow.json
}

data "aws_iam_policy_document" "sfn_emr_flow" {
  source_policy_documents = [data.aws_iam_policy_document.sfn_common.json]

  # RunJobFlow has no resource to scope to before the cluster exists (AWS requires "*"); the request
  # must carry the pipeline's project tag, and every later call needs that tag on the cluster.
  statement {
    sid       = "CreateTaggedClusterNeedsStar"
    effect    = "Allow"
    actions   = ["elasticmapreduce:RunJobFlow"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "elasticmapreduce:RequestTag/project"
      values   = [var.project]
    }
  }

  statement {
    sid       = "TagOwnClusters"
    effect    = "Allow"
    actions   = ["elasticmapreduce:AddTags"]
    resources = ["arn:${local.partition}:elasticmapreduce:${local.region}:${local.account_id}:cluster/*"]
    condition {
      test     = "StringEquals"
      variable = "elasticmapreduce:RequestTag/project"
      values   = [var.project]
    }
  }

  statement {
    sid    = "DriveOwnClusters"
    effect = "Allow"
    actions = [
      "elasticmapreduce:DescribeCluster",
      "elasticmapreduce:SetTerminationProtection",
      "elasticmapreduce:AddJobFlowSteps",
      "elasticmapreduce:DescribeStep",
      "elasticmapreduce:CancelSteps",
      "elasticmapreduce:TerminateJobFlows",
    ]
    resources = ["arn:${local.partition}:elasticmapreduce:${local.region}:${local.account_id}:cluster/*"]
    condition {
      test     = "StringEquals"
      variable = "elasticmapreduce:ResourceTag/project"
      values   = [var.project]
    }
  }

  # EMR creates its cleanup service-linked role on the first cluster of an account, as the caller of RunJobFlow.
  statement {
    sid       = "EmrCleanupServiceLinkedRole"
    effect    = "Allow"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = ["arn:${local.partition}:iam::${local.account_id}:role/aws-service-role/elasticmapreduce.amazonaws.com*/AWSServiceRoleForEMRCleanup*"]
    condition {
      test     = "StringLike"
      variable = "iam:AWSServiceName"
      values   = ["elasticmapreduce.amazonaws.com", "elasticmapreduce.amazonaws.com.cn"]
    }
  }

  # The flow's first state lists its own RUNNING executions and ends if another one runs (one run at a time).
  statement {
    sid       = "ListOwnExecutions"
    effect    = "Allow"
    actions   = ["states:ListExecutions"]
    resources = ["arn:${local.partition}:states:${local.region}:${local.account_id}:stateMachine:${local.name}-emr-flow"]
  }

  statement {
    sid       = "PassClusterRoles"
    effect    = "Allow"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.emr_service.arn, aws_iam_role.emr_instance.arn]
  }

  # The .sync EMR integrations listen to cluster and step events through these managed rules.
  statement {
    sid     = "SyncIntegrationRules"
    effect  = "Allow"
    actions = ["events:PutTargets", "events:PutRule", "events:DescribeRule"]
    resources = [
      "arn:${local.partition}:events:${local.region}:${local.account_id}:rule/StepFunctionsGetEventForEMRRunJobFlowRule",
      "arn:${local.partition}:events:${local.region}:${local.account_id}:rule/StepFunctionsGetEventForEMRAddJobFlowStepsRule",
      "arn:${local.partition}:events:${local.region}:${local.account_id}:rule/StepFunctionsGetEventForEMRTerminateJobFlowsRule",
    ]
  }
}
