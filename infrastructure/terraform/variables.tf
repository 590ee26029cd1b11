# --- Where and what ----------------------------------------------------------------

variable "region" {
  description = "AWS region for every resource (the control plane, the bucket and AWS IoT Core)."
  type        = string
  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1."
  }
}

variable "name" {
  description = "Name prefix of every resource (bucket names add the environment and the account id)."
  type        = string
  default     = "edgewise"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name))
    error_message = "name must be 3 to 20 lower-case letters, digits or '-', starting with a letter."
  }
}

variable "environment" {
  description = "Environment name, part of resource names and tags (prod, staging, ...)."
  type        = string
  default     = "prod"
  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,9}$", var.environment))
    error_message = "environment must be 2 to 10 lower-case letters or digits, starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

# --- Network ---------------------------------------------------------------------------

variable "vpc_id" {
  description = "VPC of the control plane."
  type        = string
  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "subnet_id" {
  description = "Private subnet (no route from an internet gateway; egress through NAT or VPC endpoints) for the control plane's network interface. Its availability zone also holds the data volume."
  type        = string
  validation {
    condition     = can(regex("^subnet-[0-9a-f]{8,17}$", var.subnet_id))
    error_message = "subnet_id must look like subnet-0123456789abcdef0."
  }
}

variable "private_ip" {
  description = "Fixed private address of the control plane's network interface inside subnet_id; null lets AWS pick one. The interface outlives instance replacements either way, so the address stays stable."
  type        = string
  default     = null
  validation {
    condition     = var.private_ip == null || can(cidrhost("${coalesce(var.private_ip, "0.0.0.0")}/32", 0))
    error_message = "private_ip must be an IPv4 address."
  }
}

variable "node_cidrs" {
  description = "Networks the edge nodes connect from (site VPNs, Direct Connect, peered VPCs). Plain MQTT carries device passwords and the REST API has no authentication, so the internet (0.0.0.0/0) is refused here."
  type        = list(string)
  validation {
    condition     = length(var.node_cidrs) > 0 && alltrue([for c in var.node_cidrs : can(cidrhost(c, 0)) && !startswith(c, "0.0.0.0/")])
    error_message = "node_cidrs must list at least one IPv4 CIDR block, and none may be 0.0.0.0/x."
  }
}

variable "operator_cidrs" {
  description = "Networks operators reach the REST API and dashboard (port 8700) from. The API has no authentication of its own: list only trusted networks (or use SSM port forwarding and leave this empty)."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.operator_cidrs : can(cidrhost(c, 0)) && !startswith(c, "0.0.0.0/")])
    error_message = "operator_cidrs must be IPv4 CIDR blocks, and none may be 0.0.0.0/x."
  }
}

variable "egress_cidrs" {
  description = "Where the control plane may open HTTPS (S3, AWS APIs, alert webhooks) and, with AWS IoT Core, MQTT over TLS (8883). Defaults to anywhere, since AWS public endpoints have no fixed ranges; narrow it when VPC endpoints and a proxy carry that traffic."
  type        = list(string)
  default     = ["0.0.0.0/0"]
  validation {
    condition     = length(var.egress_cidrs) > 0 && alltrue([for c in var.egress_cidrs : can(cidrhost(c, 0))])
    error_message = "egress_cidrs must list at least one IPv4 CIDR block."
  }
}

# --- Control plane instance ----------------------------------------------------------

variable "instance_type" {
  description = "EC2 instance type of the control plane. Local training jobs run on it too: size for them, or use Kubernetes/SageMaker training."
  type        = string
  default     = "m7i.large"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must be an EC2 instance type such as m7i.large."
  }
}

variable "architecture" {
  description = "CPU architecture of the instance and of the release binaries: x86_64 or arm64 (then pick a Graviton instance_type)."
  type        = string
  default     = "x86_64"
  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "ami_ssm_parameter" {
  description = "SSM parameter naming the AMI; null means the latest Amazon Linux 2023 for var.architecture (glibc 2.34: the release binaries must be built against glibc 2.34 or older). The instance keeps the AMI it was created with."
  type        = string
  default     = null
  validation {
    condition     = var.ami_ssm_parameter == null || can(regex("^/", coalesce(var.ami_ssm_parameter, "/")))
    error_message = "ami_ssm_parameter must be an SSM parameter path starting with '/'."
  }
}

variable "root_volume_size_gb" {
  description = "Size of the root volume in GiB."
  type        = number
  default     = 20
  validation {
    condition     = var.root_volume_size_gb >= 8 && var.root_volume_size_gb <= 1024
    error_message = "root_volume_size_gb must be between 8 and 1024."
  }
}

variable "data_volume_size_gb" {
  description = "Size in GiB of the data volume (the control plane's data folder: sled store, bundle cache, keys, CA, training job folders). It survives instance replacement."
  type        = number
  default     = 50
  validation {
    condition     = var.data_volume_size_gb >= 10 && var.data_volume_size_gb <= 16384
    error_message = "data_volume_size_gb must be between 10 and 16384."
  }
}

variable "backup_retention_days" {
  description = "How long AWS Backup keeps the daily snapshots of the data volume."
  type        = number
  default     = 35
  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 3650
    error_message = "backup_retention_days must be between 1 and 3650."
  }
}

# --- Edgewise release and settings ---------------------------------------------------

variable "edgewise_version" {
  description = "Release to run. The instance installs s3://<artifact bucket>/releases/edgewise/<version>/linux-<architecture>/{edgewise,edgewise-train}, uploaded there beforehand. Changing it replaces the instance (the data volume and network interface stay)."
  type        = string
  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+(-[0-9A-Za-z.-]+)?$", var.edgewise_version))
    error_message = "edgewise_version must be a semantic version such as 0.1.0."
  }
}

variable "edgewise_sha256" {
  description = "SHA-256 of the edgewise binary of that release; the instance refuses any other bytes."
  type        = string
  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.edgewise_sha256))
    error_message = "edgewise_sha256 must be 64 lower-case hex digits."
  }
}

variable "edgewise_train_sha256" {
  description = "SHA-256 of the edgewise-train binary of that release (local training jobs)."
  type        = string
  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.edgewise_train_sha256))
    error_message = "edgewise_train_sha256 must be 64 lower-case hex digits."
  }
}

variable "release_public_keys" {
  description = "Release public keys whose bundles the control plane accepts: the JSON text of each .pub file from `edgewise-train keygen` (public, not secret)."
  type        = list(string)
  validation {
    condition     = length(var.release_public_keys) > 0 && alltrue([for k in var.release_public_keys : can(jsondecode(k).public_key)])
    error_message = "release_public_keys must hold at least one .pub file's JSON (with a public_key field)."
  }
}

variable "advertise_host" {
  description = "Host name nodes use to reach the control plane (written into node configs and the QUIC certificate). null means the network interface's private address; prefer a DNS name you control, so the address can change later."
  type        = string
  default     = null
  validation {
    condition     = var.advertise_host == null || can(regex("^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$", coalesce(var.advertise_host, "x")))
    error_message = "advertise_host must be a DNS name or an IPv4 address."
  }
}

variable "artifact_prefix" {
  description = "Key prefix of the bundle store in the bucket: the control plane runs with --artifact-store s3://<bucket>/<prefix> and keeps bundles under <prefix>/artifacts/."
  type        = string
  default     = "edgewise"
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]*[a-z0-9])?(/[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$", var.artifact_prefix))
    error_message = "artifact_prefix must be lower-case path segments separated by '/', without leading or trailing '/'."
  }
}

variable "presigned_downloads" {
  description = "Let nodes download bundles straight from S3 through presigned URLs (--presigned-downloads), with QUIC as fallback. Nodes then need HTTPS access to S3."
  type        = bool
  default     = false
}

variable "bundle_noncurrent_retention_days" {
  description = "How long overwritten or deleted objects stay recoverable as noncurrent versions in the artifact bucket."
  type        = number
  default     = 90
  validation {
    condition     = var.bundle_noncurrent_retention_days >= 1 && var.bundle_noncurrent_retention_days <= 3650
    error_message = "bundle_noncurrent_retention_days must be between 1 and 3650."
  }
}

variable "access_log_retention_days" {
  description = "How long S3 server access logs of the artifact bucket are kept."
  type        = number
  default     = 365
  validation {
    condition     = var.access_log_retention_days >= 1 && var.access_log_retention_days <= 3650
    error_message = "access_log_retention_days must be between 1 and 3650."
  }
}

# --- MQTT broker and AWS IoT Core ----------------------------------------------------

variable "mqtt_broker" {
  description = "`embedded`: the control plane's own broker on 1883, nodes authenticate with passwords. `iot-core`: AWS IoT Core, nodes and control plane authenticate with X.509 certificates made by `edgewise fleet sync --aws` (docs/cloud.md); the control plane's certificate and key are read at boot from the Secrets Manager secret this module creates."
  type        = string
  default     = "embedded"
  validation {
    condition     = contains(["embedded", "iot-core"], var.mqtt_broker)
    error_message = "mqtt_broker must be embedded or iot-core."
  }
}

variable "iot_thing_groups" {
  description = "Edgewise device groups to create as AWS IoT thing groups up front. `edgewise fleet sync --aws` creates any it finds missing; listing them here keeps them under Terraform."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for g in var.iot_thing_groups : can(regex("^[A-Za-z0-9_:-]{1,128}$", g))])
    error_message = "iot_thing_groups entries must be valid thing group names: 1 to 128 of letters, digits, '_', ':' or '-'."
  }
}

variable "fleet_sync_principal_arns" {
  description = "IAM principals (users, roles, or account roots) allowed to assume the fleet-sync role that runs `edgewise fleet sync --aws`. Empty: no role is created, only the managed policy, to attach to an operator group or SSO permission set."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for a in var.fleet_sync_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(root|user/.+|role/.+)$", a))])
    error_message = "fleet_sync_principal_arns entries must be IAM user, role or account root ARNs."
  }
}

variable "fleet_sync_manages_iot_policies" {
  description = "false (default): Terraform owns the IoT policies edgewise-device and edgewise-control-plane, and fleet sync may only read them, so a compromised operator machine cannot widen what devices may do. true: fleet sync may create and update them itself."
  type        = bool
  default     = false
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the customer managed KMS key is deleted after destroy."
  type        = number
  default     = 30
  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}
