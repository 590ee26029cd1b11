# Two identities, each with only what it calls:
#   - the control plane's instance role: the bundle store in S3 (docs/cloud.md lists
#     the calls), the release binaries at boot, its MQTT client certificate secret, and
#     SSM Session Manager for shell access without SSH;
#   - the fleet-sync policy (and optional role) for operators who run
#     `edgewise fleet sync --aws` from their own machine: AWS IoT registry calls only.
# The control plane itself never calls the AWS IoT API; it connects to IoT Core's MQTT
# endpoint with its certificate, which the IoT policy above governs.

# --- Control plane instance role -----------------------------------------------------

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "control_plane" {
  name                 = "${local.prefix}-control-plane"
  description          = "Edgewise control plane instance: S3 bundle store, release binaries, MQTT client certificate"
  assume_role_policy   = data.aws_iam_policy_document.ec2_assume.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "control_plane" {
  # HeadBucket (at start) and ListObjectsV2 under the store's prefix (the start-up
  # reconciliation). HeadBucket carries no prefix, hence IfExists.
  statement {
    sid       = "ListArtifactStore"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn]
    condition {
      test     = "StringLikeIfExists"
      variable = "s3:prefix"
      values   = ["${local.artifact_key_prefix}*"]
    }
  }

  # Bundles: HeadObject/GetObject (cache fills, presigned downloads are signed with
  # this role), PutObject (push), DeleteObject (version deletion).
  statement {
    sid       = "ReadWriteBundles"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.artifact_key_prefix}*"]
  }

  # Release binaries, read once at boot; never writable from the instance.
  statement {
    sid       = "ReadReleaseBinaries"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.release_key_prefix}*"]
  }

  # The bucket's KMS key, only as S3 (and Secrets Manager) use it on the role's behalf.
  statement {
    sid       = "UseBucketKeyThroughS3"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.edgewise.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values = [
        "s3.${local.region}.amazonaws.com",
        "secretsmanager.${local.region}.amazonaws.com",
      ]
    }
  }

  dynamic "statement" {
    for_each = local.iot_core ? [1] : []
    content {
      sid       = "ReadMqttClientCertificate"
      effect    = "Allow"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [aws_secretsmanager_secret.mqtt_client[0].arn]
    }
  }
}

resource "aws_iam_role_policy" "control_plane" {
  name   = "edgewise-control-plane"
  role   = aws_iam_role.control_plane.id
  policy = data.aws_iam_policy_document.control_plane.json
}

# Session Manager (shell and port forwarding to 8700) instead of SSH: no inbound port.
resource "aws_iam_role_policy_attachment" "control_plane_ssm" {
  role       = aws_iam_role.control_plane.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "control_plane" {
  name = "${local.prefix}-control-plane"
  role = aws_iam_role.control_plane.name
}

# --- Fleet sync (operators) ----------------------------------------------------------

locals {
  iot_arn_prefix = "arn:${local.partition}:iot:${local.region}:${local.account_id}"
}

data "aws_iam_policy_document" "fleet_sync" {
  # These IoT actions support no resource-level permissions, hence Resource "*". A
  # new certificate is useless until AttachPolicy (scoped to this account's
  # certificates below) attaches an IoT policy to it; IAM scopes AttachPolicy by its
  # target, not by the policy attached.
  statement {
    sid    = "ActionsWithoutResourceLevelPermissions"
    effect = "Allow"
    actions = [
      "iot:DescribeEndpoint",
      "iot:CreateKeysAndCertificate",
      "iot:AttachThingPrincipal",
      "iot:ListThingPrincipals",
    ]
    resources = ["*"]
  }

  statement {
    sid    = "ThingsAndGroups"
    effect = "Allow"
    actions = [
      "iot:DescribeThing",
      "iot:CreateThing",
      "iot:ListThingGroupsForThing",
      "iot:DescribeThingGroup",
      "iot:CreateThingGroup",
      "iot:AddThingToThingGroup",
      "iot:RemoveThingFromThingGroup",
    ]
    resources = [
      "${local.iot_arn_prefix}:thing/*",
      "${local.iot_arn_prefix}:thinggroup/*",
    ]
  }

  statement {
    sid       = "AttachPoliciesToCertificates"
    effect    = "Allow"
    actions   = ["iot:AttachPolicy"]
    resources = ["${local.iot_arn_prefix}:cert/*"]
  }

  statement {
    sid     = "EdgewiseIotPolicies"
    effect  = "Allow"
    actions = var.fleet_sync_manages_iot_policies ? ["iot:GetPolicy", "iot:CreatePolicy", "iot:CreatePolicyVersion", "iot:ListPolicyVersions", "iot:DeletePolicyVersion"] : ["iot:GetPolicy"]
    resources = [
      "${local.iot_arn_prefix}:policy/${aws_iot_policy.device.name}",
      "${local.iot_arn_prefix}:policy/${aws_iot_policy.control_plane.name}",
    ]
  }
}

resource "aws_iam_policy" "fleet_sync" {
  name        = "${local.prefix}-fleet-sync"
  description = "Run `edgewise fleet sync --aws`: mirror Edgewise groups and devices into AWS IoT Core"
  policy      = data.aws_iam_policy_document.fleet_sync.json
}

data "aws_iam_policy_document" "fleet_sync_assume" {
  count = length(var.fleet_sync_principal_arns) > 0 ? 1 : 0

  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.fleet_sync_principal_arns
    }
  }
}

resource "aws_iam_role" "fleet_sync" {
  count = length(var.fleet_sync_principal_arns) > 0 ? 1 : 0

  name                 = "${local.prefix}-fleet-sync"
  description          = "Operators assume this role to run edgewise fleet sync --aws"
  assume_role_policy   = data.aws_iam_policy_document.fleet_sync_assume[0].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy_attachment" "fleet_sync" {
  count = length(var.fleet_sync_principal_arns) > 0 ? 1 : 0

  role       = aws_iam_role.fleet_sync[0].name
  policy_arn = aws_iam_policy.fleet_sync.arn
}

# --- AWS Backup ----------------------------------------------------------------------

data "aws_iam_policy_document" "backup_assume" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["backup.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "backup" {
  name               = "${local.prefix}-backup"
  description        = "AWS Backup snapshots of the Edgewise control plane data volume"
  assume_role_policy = data.aws_iam_policy_document.backup_assume.json
}

resource "aws_iam_role_policy_attachment" "backup" {
  role       = aws_iam_role.backup.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup"
}

resource "aws_iam_role_policy_attachment" "backup_restore" {
  role       = aws_iam_role.backup.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForRestores"
}
