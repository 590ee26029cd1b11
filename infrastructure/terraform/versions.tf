terraform {
  # Checked with 1.11; nothing here needs more than 1.6.
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # Written and validated against 5.100; 6.x changes aws_instance's network
      # interface blocks and needs a review first.
      version = "~> 5.100"
    }
  }

  # State holds no secrets of Edgewise's (no private keys, no passwords), but it does
  # hold the account's resource layout: keep it in an encrypted, versioned bucket, e.g.
  # backend "s3" {
  #   bucket       = "acme-terraform-state"
  #   key          = "edgewise/prod.tfstate"
  #   region       = "eu-west-1"
  #   encrypt      = true
  #   use_lockfile = true
  # }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      "app"                  = "edgewise"
      "edgewise:environment" = var.environment
      "managed-by"           = "terraform"
    })
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}
