# The control plane has no public address and accepts only:
#   8701/udp  QUIC bundle downloads          from node_cidrs
#   1883/tcp  embedded MQTT broker            from node_cidrs (not with AWS IoT Core)
#   8700/tcp  REST API: HTTP download fallback for nodes, and operators
#             from node_cidrs and operator_cidrs
# No SSH: shell access goes through SSM Session Manager. Nothing is open to 0.0.0.0/0
# (the variables refuse it); outbound it opens HTTPS and, with IoT Core, MQTT over TLS.

data "aws_subnet" "control_plane" {
  id = var.subnet_id
}

resource "aws_security_group" "control_plane" {
  name        = "${local.prefix}-control-plane"
  description = "Edgewise control plane: QUIC, MQTT and API from node and operator networks"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

locals {
  control_plane_ingress = merge(
    { for cidr in var.node_cidrs : "quic-${cidr}" => {
      cidr = cidr, protocol = "udp", port = 8701, description = "QUIC bundle downloads from edge nodes"
    } },
    { for cidr in var.node_cidrs : "http-nodes-${cidr}" => {
      cidr = cidr, protocol = "tcp", port = 8700, description = "HTTP bundle download fallback from edge nodes"
    } },
    { for cidr in var.operator_cidrs : "http-operators-${cidr}" => {
      cidr = cidr, protocol = "tcp", port = 8700, description = "REST API and dashboard for operators"
    } },
    local.iot_core ? {} : { for cidr in var.node_cidrs : "mqtt-${cidr}" => {
      cidr = cidr, protocol = "tcp", port = 1883, description = "Embedded MQTT broker for edge nodes"
    } },
  )

  control_plane_egress = merge(
    { for cidr in var.egress_cidrs : "https-${cidr}" => {
      cidr = cidr, port = 443, description = "HTTPS: S3, AWS APIs, SSM, alert webhooks"
    } },
    local.iot_core ? { for cidr in var.egress_cidrs : "mqtts-${cidr}" => {
      cidr = cidr, port = 8883, description = "MQTT over TLS to AWS IoT Core"
    } } : {},
  )
}

resource "aws_vpc_security_group_ingress_rule" "control_plane" {
  for_each = local.control_plane_ingress

  security_group_id = aws_security_group.control_plane.id
  description       = each.value.description
  cidr_ipv4         = each.value.cidr
  ip_protocol       = each.value.protocol
  from_port         = each.value.port
  to_port           = each.value.port
}

resource "aws_vpc_security_group_egress_rule" "control_plane" {
  for_each = local.control_plane_egress

  security_group_id = aws_security_group.control_plane.id
  description       = each.value.description
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
}

# The control plane's address lives on its own interface, so replacing the instance
# (a new release, a new AMI) keeps the address nodes and node configs use.
resource "aws_network_interface" "control_plane" {
  description     = "${local.prefix} control plane"
  subnet_id       = var.subnet_id
  private_ips     = var.private_ip == null ? null : [var.private_ip]
  security_groups = [aws_security_group.control_plane.id]

  tags = {
    Name = "${local.prefix}-control-plane"
  }
}
