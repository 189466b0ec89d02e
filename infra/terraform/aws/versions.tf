# The AWS half of raymlops: VPC, EKS (system + GPU spot node groups), RDS PostgreSQL, S3, ECR, IRSA roles.
#   terraform -chdir=infra/terraform/aws init && terraform -chdir=infra/terraform/aws apply   (docs/guides/deploy-aws.md)
# Plain aws_* resources only (no registry modules), so the whole plan is readable here and checkable offline
# (tests/test_infra.py, `make infra-check`); init/validate/plan need the providers and were never run in this repo.
terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.81, < 7.0" # assumed floor (not checked here): AMI type AL2023_x86_64_NVIDIA, OIDC provider without thumbprints
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5"
    }
  }
  # State holds the generated database password: keep it in an encrypted, access-controlled backend, e.g.
  # backend "s3" { bucket = "YOUR-STATE-BUCKET", key = "raymlops/aws.tfstate", region = "...", encrypt = true }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = merge({ "app.kubernetes.io/part-of" = "raymlops", "raymlops:stack" = var.name }, var.tags)
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_availability_zones" "available" {
  state = "available"
  #checkov:skip=CKV_AWS_394:only the first az_count zone names are used (slice below): a zone AWS adds later sorts after them and is not picked up
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  azs        = slice(data.aws_availability_zones.available.names, 0, var.az_count)
  # The Kubernetes service accounts the IRSA roles trust: cluster/k8s/overlays/prod/service-accounts.yaml names them.
  mlflow_service_account = "mlflow-server"
  ray_service_account    = "raymlops-ray"
  autoscaler_account     = "cluster-autoscaler"
  # The GPU spot nodes' label and taint: cluster/k8s/overlays/prod/raycluster-eks.yaml selects and tolerates them.
  gpu_node_label = { "raymlops.io/pool" = "gpu-spot" }
  gpu_node_taint = { key = "nvidia.com/gpu", value = "true", effect = "NO_SCHEDULE" }
}
