# Edgewise on AWS: the control plane on one EC2 instance in a private subnet, its
# bundles in a versioned, KMS-encrypted S3 bucket, and AWS IoT Core policies and thing
# groups for fleets that use IoT Core as their broker. See ../README.md.

locals {
  prefix     = "${var.name}-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  artifact_bucket_name = "${local.prefix}-artifacts-${local.account_id}"
  log_bucket_name      = "${local.prefix}-access-logs-${local.account_id}"

  # Keys the control plane writes (docs/cloud.md: PREFIX/artifacts/<sha256>) and the
  # release binaries the instance installs at boot.
  artifact_key_prefix = "${var.artifact_prefix}/artifacts/"
  release_key_prefix  = "releases/edgewise/"

  iot_core = var.mqtt_broker == "iot-core"
}
