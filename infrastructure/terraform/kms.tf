# One customer managed key for the data at rest: the artifact bucket, the EBS volumes,
# the backup vault and the MQTT client certificate secret. Access is granted through IAM
# policies (the key policy delegates to the account), each scoped to this key and,
# where it applies, to the service it is used through (kms:ViaService).

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" means this key only; the statement delegates key administration to IAM policies in the account, the standard key policy.
  #checkov:skip=CKV_AWS_111:In a key policy Resource "*" is the key itself; write access to it is granted only through IAM policies that name this key.
  #checkov:skip=CKV_AWS_356:A key policy can only name Resource "*", which means the key it is attached to.
  statement {
    sid       = "DelegateToIamPoliciesOfThisAccount"
    effect    = "Allow"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "edgewise" {
  description             = "${local.prefix}: Edgewise bundles, control plane volumes, backups and secrets"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "edgewise" {
  name          = "alias/${local.prefix}"
  target_key_id = aws_kms_key.edgewise.key_id
}
