# AWS IoT Core for fleets that use it as their broker (mqtt_broker = "iot-core";
# docs/cloud.md). `edgewise fleet sync --aws` makes the things and their certificates;
# Terraform owns the two policies and, optionally, the thing groups.
#
# The policy documents below must stay equal, as JSON, to the ones the control plane
# builds (control-plane/src/aws/iot_policy.rs): fleet sync compares them and leaves an
# equal policy alone, so Terraform and the sync never fight. If a release changes them,
# the sync reports AccessDenied on iot:CreatePolicyVersion (unless
# fleet_sync_manages_iot_policies is true): update the documents here.
#
# Topic layout (core/src/topics.rs): edgewise/v1/devices/{device id}/{desired, reported,
# telemetry, status}. A device's thing name is its device id and its MQTT client id, so
# ${iot:Connection.Thing.ThingName} pins every statement to the connecting device's
# own topics. ("$${" is HCL's escape for a literal "${".)

locals {
  thing_name_variable = "$${iot:Connection.Thing.ThingName}"
  device_topic_prefix = "edgewise/v1/devices"

  # Connect only as the thing the certificate is attached to.
  iot_connect_as_own_thing = {
    Effect    = "Allow"
    Action    = "iot:Connect"
    Resource  = "arn:aws:iot:*:*:client/${local.thing_name_variable}"
    Condition = { Bool = { "iot:Connection.Thing.IsAttached" = "true" } }
  }

  iot_device_policy = {
    Version = "2012-10-17"
    Statement = [
      local.iot_connect_as_own_thing,
      {
        # Its own state, telemetry windows and online/offline status (also its last will).
        Effect = "Allow"
        Action = "iot:Publish"
        Resource = [
          "arn:aws:iot:*:*:topic/${local.device_topic_prefix}/${local.thing_name_variable}/reported",
          "arn:aws:iot:*:*:topic/${local.device_topic_prefix}/${local.thing_name_variable}/telemetry",
          "arn:aws:iot:*:*:topic/${local.device_topic_prefix}/${local.thing_name_variable}/status",
        ]
      },
      {
        # reported and status are published retained.
        Effect = "Allow"
        Action = "iot:RetainPublish"
        Resource = [
          "arn:aws:iot:*:*:topic/${local.device_topic_prefix}/${local.thing_name_variable}/reported",
          "arn:aws:iot:*:*:topic/${local.device_topic_prefix}/${local.thing_name_variable}/status",
        ]
      },
      {
        # Its own signed assignments, and nothing it could publish there: a device can
        # never write `desired`, so it cannot forge assignments (which nodes verify anyway).
        Effect   = "Allow"
        Action   = "iot:Subscribe"
        Resource = "arn:aws:iot:*:*:topicfilter/${local.device_topic_prefix}/${local.thing_name_variable}/desired"
      },
      {
        Effect   = "Allow"
        Action   = "iot:Receive"
        Resource = "arn:aws:iot:*:*:topic/${local.device_topic_prefix}/${local.thing_name_variable}/desired"
      },
    ]
  }

  # The control plane's thing (edgewise-control-plane) publishes every device's
  # retained assignment and reads every device topic.
  iot_control_plane_policy = {
    Version = "2012-10-17"
    Statement = [
      local.iot_connect_as_own_thing,
      {
        Effect   = "Allow"
        Action   = ["iot:Publish", "iot:RetainPublish"]
        Resource = "arn:aws:iot:*:*:topic/${local.device_topic_prefix}/*/desired"
      },
      {
        Effect   = "Allow"
        Action   = "iot:Subscribe"
        Resource = "arn:aws:iot:*:*:topicfilter/${local.device_topic_prefix}/*"
      },
      {
        Effect   = "Allow"
        Action   = "iot:Receive"
        Resource = "arn:aws:iot:*:*:topic/${local.device_topic_prefix}/*"
      },
    ]
  }
}

# The names are fixed by the control plane (DEVICE_POLICY, CONTROL_PLANE_POLICY), so one
# account and region holds one Edgewise fleet.
resource "aws_iot_policy" "device" {
  name   = "edgewise-device"
  policy = jsonencode(local.iot_device_policy)
}

resource "aws_iot_policy" "control_plane" {
  name   = "edgewise-control-plane"
  policy = jsonencode(local.iot_control_plane_policy)
}

# Thing groups as fleet sync makes them (same description and attribute), so a later
# sync finds them in order.
resource "aws_iot_thing_group" "fleet" {
  for_each = toset(var.iot_thing_groups)

  name = each.value
  properties {
    description = "Edgewise device group ${each.value}"
    attribute_payload {
      attributes = {
        "managed-by" = "edgewise"
      }
    }
  }
}

# The device data endpoint (ATS) the control plane and nodes connect to on 8883.
data "aws_iot_endpoint" "data" {
  count         = local.iot_core ? 1 : 0
  endpoint_type = "iot:Data-ATS"
}

# The control plane's IoT client certificate and key, made by fleet sync
# (edgewise-control-plane.cert.pem / .key.pem). Terraform creates the empty secret; put
# the value in yourself, never through Terraform (it would land in the state):
#   aws secretsmanager put-secret-value --secret-id <mqtt_client_secret_arn> \
#     --secret-string "$(jq -n --rawfile cert iot/edgewise-control-plane.cert.pem \
#                               --rawfile key iot/edgewise-control-plane.key.pem '{$cert,$key}')"
resource "aws_secretsmanager_secret" "mqtt_client" {
  #checkov:skip=CKV2_AWS_57:The secret is an X.509 key pair issued by AWS IoT, not a password; it is renewed by issuing a new certificate with fleet sync (docs/cloud.md), which no rotation Lambda can do.
  count = local.iot_core ? 1 : 0

  name                    = "${local.prefix}/control-plane/mqtt-client-certificate"
  description             = "Edgewise control plane: AWS IoT client certificate and private key (JSON: cert, key)"
  kms_key_id              = aws_kms_key.edgewise.arn
  recovery_window_in_days = 30
}
