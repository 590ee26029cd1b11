# The control plane runs on one EC2 instance, by design: its registry, fleet and
# rollouts live in one sled store that a single process opens, on a local disk. EBS
# gives that store the fsync semantics it relies on (a network file system such as EFS,
# which Fargate would need, does not), and a separate data volume plus a separate
# network interface let the instance be replaced (new release, new AMI) without losing
# either the data or the address. EC2 automatic recovery restarts it on host failure;
# AWS Backup snapshots the data volume daily.

locals {
  ami_parameter = coalesce(
    var.ami_ssm_parameter,
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-${var.architecture}",
  )
  advertise_host = coalesce(var.advertise_host, aws_network_interface.control_plane.private_ip)

  serve_args = join(" ", compact([
    "--artifact-store s3://${aws_s3_bucket.artifacts.id}/${var.artifact_prefix}",
    "--aws-region ${local.region}",
    var.presigned_downloads ? "--presigned-downloads" : "",
    local.iot_core ? "--mqtt mqtts://${one(data.aws_iot_endpoint.data[*].endpoint_address)}:8883" : "",
    local.iot_core ? "--mqtt-client-cert /etc/edgewise/mqtt/client.pem --mqtt-client-key /etc/edgewise/mqtt/client.key" : "",
  ]))
}

data "aws_ssm_parameter" "ami" {
  name = local.ami_parameter
}

resource "aws_instance" "control_plane" {
  ami                  = data.aws_ssm_parameter.ami.insecure_value
  instance_type        = var.instance_type
  iam_instance_profile = aws_iam_instance_profile.control_plane.name
  ebs_optimized        = true
  monitoring           = true

  network_interface {
    network_interface_id = aws_network_interface.control_plane.id
    device_index         = 0
  }

  # IMDSv2 only, and not reachable from containers one hop further.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size_gb
    encrypted             = true
    kms_key_id            = aws_kms_key.edgewise.arn
    delete_on_termination = true
  }

  # Installs the release from the bucket (checking both SHA-256s), mounts the data
  # volume, writes the unit from deployment/systemd and starts it. A new release
  # changes the script and so replaces the instance; the data volume and the network
  # interface carry over.
  user_data = templatefile("${path.module}/templates/control-plane-user-data.sh.tftpl", {
    region                = local.region
    bucket                = aws_s3_bucket.artifacts.id
    release_prefix        = local.release_key_prefix
    version               = var.edgewise_version
    platform              = "linux-${var.architecture}"
    edgewise_sha256       = var.edgewise_sha256
    edgewise_train_sha256 = var.edgewise_train_sha256
    data_volume_id        = aws_ebs_volume.data.id
    unit_b64              = filebase64("${path.module}/../../deployment/systemd/edgewise-control-plane.service")
    release_keys_b64      = [for key in var.release_public_keys : base64encode(key)]
    advertise_host        = local.advertise_host
    serve_args            = local.serve_args
    mqtt_secret_arn       = local.iot_core ? one(aws_secretsmanager_secret.mqtt_client[*].arn) : ""
  })
  user_data_replace_on_change = true

  tags = {
    Name = "${local.prefix}-control-plane"
  }

  lifecycle {
    # A newer AMI is picked up deliberately (terraform apply -replace), not on every plan.
    ignore_changes = [ami]
  }
}

# The data folder (/var/lib/edgewise-control-plane): sled store, bundle cache, deployment
# signing key, CA, training job folders.
resource "aws_ebs_volume" "data" {
  availability_zone = data.aws_subnet.control_plane.availability_zone
  type              = "gp3"
  size              = var.data_volume_size_gb
  encrypted         = true
  kms_key_id        = aws_kms_key.edgewise.arn

  tags = {
    Name = "${local.prefix}-control-plane-data"
  }

  lifecycle {
    # Losing this volume means re-registering the fleet: destroy it only on purpose
    # (remove this line first).
    prevent_destroy = true
  }
}

resource "aws_volume_attachment" "data" {
  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.data.id
  instance_id = aws_instance.control_plane.id
  # Stop the instance before detaching, so sled is flushed and the filesystem clean.
  stop_instance_before_detaching = true
}

# --- Backups of the data volume ------------------------------------------------------

resource "aws_backup_vault" "control_plane" {
  name        = "${local.prefix}-control-plane"
  kms_key_arn = aws_kms_key.edgewise.arn
}

resource "aws_backup_plan" "control_plane" {
  name = "${local.prefix}-control-plane"

  rule {
    rule_name         = "daily"
    target_vault_name = aws_backup_vault.control_plane.name
    schedule          = "cron(0 3 * * ? *)"
    start_window      = 60
    completion_window = 360

    lifecycle {
      delete_after = var.backup_retention_days
    }
  }
}

resource "aws_backup_selection" "control_plane" {
  name         = "${local.prefix}-control-plane-data"
  plan_id      = aws_backup_plan.control_plane.id
  iam_role_arn = aws_iam_role.backup.arn
  resources    = [aws_ebs_volume.data.arn]
}
