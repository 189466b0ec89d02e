# Inputs. Copy terraform.tfvars.example to terraform.tfvars and edit it; nothing here is a secret.

variable "name" {
  type        = string
  description = "Prefix of every resource name (EKS cluster, RDS instance, bucket, roles); lower case, digits and dashes."
  default     = "raymlops"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name))
    error_message = "name: 3-21 characters, lower case letters, digits and dashes, starting with a letter."
  }
}

variable "region" {
  type        = string
  description = "AWS region for everything (GPU spot capacity differs by region: check g5/g4dn availability)."
  default     = "us-west-2"
}

variable "tags" {
  type        = map(string)
  description = "Extra tags on every resource (cost allocation, owner)."
  default     = {}
}

variable "create_vpc" {
  type        = bool
  description = "true: create a VPC with public and private subnets in az_count zones; false: use vpc_id and the subnet ids below."
  default     = true
}

variable "az_count" {
  type        = number
  description = "Availability zones for a created VPC (2 or 3; EKS and Multi-AZ RDS need at least 2)."
  default     = 2
  validation {
    condition     = var.az_count >= 2 && var.az_count <= 3
    error_message = "az_count: 2 or 3."
  }
}

variable "vpc_cidr" {
  type        = string
  description = "CIDR of a created VPC; split into one public and one private subnet per zone."
  default     = "10.40.0.0/16"
}

variable "vpc_id" {
  type        = string
  description = "An existing VPC (only with create_vpc = false)."
  default     = null
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Private subnets of the existing VPC, in at least 2 zones, with a route to a NAT gateway (only with create_vpc = false)."
  default     = []
}

variable "kubernetes_version" {
  type        = string
  description = "EKS Kubernetes version (1.28 or newer)."
  default     = "1.32"
  validation {
    condition     = tonumber(split(".", var.kubernetes_version)[1]) >= 28
    error_message = "kubernetes_version: 1.28 or newer."
  }
}

variable "api_allowed_cidrs" {
  type        = list(string)
  description = "CIDRs that may reach the EKS API endpoint from the internet (your office / VPN, e.g. [\"203.0.113.7/32\"]); never 0.0.0.0/0."
  validation {
    condition     = length(var.api_allowed_cidrs) > 0 && !contains(var.api_allowed_cidrs, "0.0.0.0/0")
    error_message = "api_allowed_cidrs: at least one CIDR, and not 0.0.0.0/0."
  }
}

variable "system_instance_types" {
  type        = list(string)
  description = "On-demand instance types of the system node group (MLflow server, Ray head, operators)."
  default     = ["m6i.xlarge"]
}

variable "system_node_count" {
  type        = object({ min = number, desired = number, max = number })
  description = "System node group size (nodes); 2 keeps MLflow's two replicas on two nodes."
  default     = { min = 2, desired = 2, max = 4 }
}

variable "gpu_instance_types" {
  type        = list(string)
  description = "Spot instance types of the GPU node group (one NVIDIA GPU each: g5.xlarge = A10G 24 GB, g4dn.xlarge = T4 16 GB); several types widen spot capacity."
  default     = ["g5.xlarge", "g5.2xlarge", "g4dn.xlarge"]
}

variable "gpu_node_max" {
  type        = number
  description = "Most GPU spot nodes at once; the group starts at 0 and the cluster autoscaler adds nodes for pending Ray worker pods."
  default     = 5
}

variable "db_instance_class" {
  type        = string
  description = "RDS instance class of the MLflow backend store."
  default     = "db.t4g.medium"
}

variable "db_allocated_storage_gb" {
  type        = number
  description = "RDS storage in GiB (gp3); it grows up to 5x this on its own."
  default     = 50
}

variable "db_engine_version" {
  type        = string
  description = "RDS PostgreSQL major version."
  default     = "16"
}

variable "db_deletion_protection" {
  type        = bool
  description = "RDS deletion protection; set false (and apply) before `terraform destroy`."
  default     = true
}

variable "artifact_noncurrent_days" {
  type        = number
  description = "Days an overwritten or deleted artifact version is kept in the bucket before S3 removes it."
  default     = 30
}

variable "k8s_namespace" {
  type        = string
  description = "Kubernetes namespace of the MLflow server and the RayCluster (cluster/k8s/base/kustomization.yaml)."
  default     = "raymlops"
}

variable "image_tag" {
  type        = string
  description = "Tag of the raymlops image pushed to the ECR repository (the Dockerfile in docs/cluster.md)."
  default     = "0.1.0"
}

variable "mlflow_host" {
  type        = string
  description = "DNS name of the MLflow Ingress (HTTPS), e.g. mlflow.example.com; you point it at the ingress load balancer."
  default     = "mlflow.example.com"
}

variable "log_retention_days" {
  type        = number
  description = "Days CloudWatch keeps the EKS control-plane and VPC flow logs."
  default     = 90
}

variable "allow_destroy_with_data" {
  type        = bool
  description = "true lets `terraform destroy` delete the artifact bucket and the image repository with their contents; false (default) refuses while they hold anything."
  default     = false
}
