output "artifact_bucket" {
  description = "Name of the artifact bucket (bundles and release binaries)."
  value       = aws_s3_bucket.artifacts.id
}

output "artifact_store" {
  description = "Value of `edgewise serve --artifact-store` (already set on the instance)."
  value       = "s3://${aws_s3_bucket.artifacts.id}/${var.artifact_prefix}"
}

output "release_upload_prefix" {
  description = "Where to upload a release's edgewise and edgewise-train before setting edgewise_version."
  value       = "s3://${aws_s3_bucket.artifacts.id}/${local.release_key_prefix}${var.edgewise_version}/linux-${var.architecture}/"
}

output "access_log_bucket" {
  description = "Bucket holding the artifact bucket's server access logs."
  value       = aws_s3_bucket.access_logs.id
}

output "kms_key_arn" {
  description = "Customer managed key encrypting the bucket, the volumes, the backups and the secret."
  value       = aws_kms_key.edgewise.arn
}

output "control_plane_instance_id" {
  description = "Instance id of the control plane (aws ssm start-session --target <id>)."
  value       = aws_instance.control_plane.id
}

output "control_plane_private_ip" {
  description = "Private address of the control plane's network interface; stable across instance replacement."
  value       = aws_network_interface.control_plane.private_ip
}

output "advertise_host" {
  description = "The host name or address nodes are told to use."
  value       = local.advertise_host
}

output "control_plane_url" {
  description = "REST API and dashboard, reachable from operator_cidrs (or through SSM port forwarding)."
  value       = "http://${local.advertise_host}:8700"
}

output "control_plane_role_arn" {
  description = "IAM role of the control plane instance."
  value       = aws_iam_role.control_plane.arn
}

output "control_plane_security_group_id" {
  description = "Security group of the control plane."
  value       = aws_security_group.control_plane.id
}

output "fleet_sync_policy_arn" {
  description = "Managed policy for operators who run `edgewise fleet sync --aws`."
  value       = aws_iam_policy.fleet_sync.arn
}

output "fleet_sync_role_arn" {
  description = "Role to assume for `edgewise fleet sync --aws` (null when fleet_sync_principal_arns is empty)."
  value       = one(aws_iam_role.fleet_sync[*].arn)
}

output "iot_device_policy" {
  description = "AWS IoT policy attached to every device certificate."
  value       = aws_iot_policy.device.name
}

output "iot_control_plane_policy" {
  description = "AWS IoT policy of the control plane's certificate."
  value       = aws_iot_policy.control_plane.name
}

output "iot_thing_group_arns" {
  description = "Thing groups created for var.iot_thing_groups."
  value       = { for name, group in aws_iot_thing_group.fleet : name => group.arn }
}

output "iot_data_endpoint" {
  description = "AWS IoT Core device data endpoint (mqtts://<this>:8883), when mqtt_broker is iot-core."
  value       = one(data.aws_iot_endpoint.data[*].endpoint_address)
}

output "mqtt_client_secret_arn" {
  description = "Secret to fill with the control plane's IoT certificate and key (JSON: cert, key), when mqtt_broker is iot-core."
  value       = one(aws_secretsmanager_secret.mqtt_client[*].arn)
}
