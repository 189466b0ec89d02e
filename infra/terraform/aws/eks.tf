# EKS: the control plane, an on-demand system node group (MLflow, the Ray head, operators) and a GPU spot
# node group that scales 0 -> gpu_node_max for the Ray GPU workers (label + taint below, matched by
# cluster/k8s/overlays/prod/raycluster-eks.yaml). The cluster autoscaler (IRSA role in irsa.tf) adds GPU
# nodes when Ray worker pods are pending and removes them when idle.

resource "aws_iam_role" "cluster" {
  name = "${var.name}-eks-cluster"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = ["sts:AssumeRole", "sts:TagSession"], Principal = { Service = "eks.amazonaws.com" } }]
  })
}

resource "aws_iam_role_policy_attachment" "cluster" {
  role       = aws_iam_role.cluster.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonEKSClusterPolicy"
}

# Envelope encryption of Kubernetes Secrets with the stack's key (encryption_config below).
resource "aws_iam_role_policy" "cluster_kms" {
  name = "encrypt-secrets"
  role = aws_iam_role.cluster.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"]
      Resource = aws_kms_key.this.arn
    }]
  })
}

resource "aws_cloudwatch_log_group" "eks" {
  name              = "/aws/eks/${var.name}/cluster" # the name EKS writes its control-plane logs to
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  #checkov:skip=CKV_AWS_338:retention is var.log_retention_days (90 by default); raise it where audit rules ask for a year
}

resource "aws_eks_cluster" "this" {
  name     = var.name
  version  = var.kubernetes_version
  role_arn = aws_iam_role.cluster.arn

  vpc_config {
    subnet_ids              = local.private_subnet_ids
    endpoint_private_access = true
    endpoint_public_access  = true # kubectl from the operator's machine, limited to api_allowed_cidrs
    public_access_cidrs     = var.api_allowed_cidrs
  }
  #checkov:skip=CKV_AWS_38:public_access_cidrs is var.api_allowed_cidrs, which has no default and whose validation refuses 0.0.0.0/0 (checkov cannot see an unset variable's value)
  #checkov:skip=CKV_AWS_39:the public endpoint is how the guide's kubectl reaches the cluster; public_access_cidrs limits it to var.api_allowed_cidrs (0.0.0.0/0 refused by validation); set endpoint_public_access=false behind a VPN

  access_config {
    authentication_mode                         = "API_AND_CONFIG_MAP"
    bootstrap_cluster_creator_admin_permissions = true # whoever runs `terraform apply` can run kubectl
  }

  encryption_config {
    resources = ["secrets"] # Kubernetes Secrets (the MLflow server's database URI) encrypted with the stack's key
    provider {
      key_arn = aws_kms_key.this.arn
    }
  }

  enabled_cluster_log_types = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

  depends_on = [aws_iam_role_policy_attachment.cluster, aws_iam_role_policy.cluster_kms, aws_cloudwatch_log_group.eks]
}

# IRSA: pods exchange their service-account token for the IAM role that trusts it (irsa.tf).
resource "aws_iam_openid_connect_provider" "eks" {
  url            = aws_eks_cluster.this.identity[0].oidc[0].issuer
  client_id_list = ["sts.amazonaws.com"]
}

resource "aws_iam_role" "node" {
  name = "${var.name}-eks-node"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "ec2.amazonaws.com" } }]
  })
}

# What every EKS node needs (join, CNI, pull from ECR); pods get their own AWS rights through IRSA, not these.
resource "aws_iam_role_policy_attachment" "node" {
  for_each   = toset(["AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"])
  role       = aws_iam_role.node.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/${each.value}"
}

resource "aws_eks_node_group" "system" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "system"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = local.private_subnet_ids
  capacity_type   = "ON_DEMAND" # the Ray head and MLflow must not be reclaimed
  instance_types  = var.system_instance_types
  ami_type        = "AL2023_x86_64_STANDARD"
  disk_size       = 50

  scaling_config {
    min_size     = var.system_node_count.min
    desired_size = var.system_node_count.desired
    max_size     = var.system_node_count.max
  }
  update_config {
    max_unavailable = 1
  }
  labels = { "raymlops.io/pool" = "system" }

  depends_on = [aws_iam_role_policy_attachment.node]
}

resource "aws_eks_node_group" "gpu_spot" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "gpu-spot"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = local.private_subnet_ids
  capacity_type   = "SPOT" # ~60-70 % below on-demand; raymlops restarts a reclaimed node's trials from their checkpoints
  instance_types  = var.gpu_instance_types
  ami_type        = "AL2023_x86_64_NVIDIA" # NVIDIA driver and container toolkit in the image
  disk_size       = 100                    # the raymlops image (CUDA torch) is ~10 GB

  scaling_config {
    min_size     = 0 # nothing runs, or costs, until a Ray worker pod asks for a GPU
    desired_size = 0
    max_size     = var.gpu_node_max
  }
  update_config {
    max_unavailable = 1
  }

  labels = local.gpu_node_label
  taint {
    key    = local.gpu_node_taint.key
    value  = local.gpu_node_taint.value
    effect = local.gpu_node_taint.effect # only pods that tolerate it (the Ray GPU workers) land here
  }

  # The cluster autoscaler reads this group's labels and taints from the EKS API to scale it up from zero.
  tags = {
    "k8s.io/cluster-autoscaler/enabled"                              = "true"
    "k8s.io/cluster-autoscaler/${var.name}"                          = "owned"
    "k8s.io/cluster-autoscaler/node-template/label/raymlops.io/pool" = local.gpu_node_label["raymlops.io/pool"]
  }

  lifecycle {
    ignore_changes = [scaling_config[0].desired_size] # the cluster autoscaler owns the current size
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}

# Managed add-ons, so their versions follow the cluster's; the VPC CNI also enforces the NetworkPolicy of
# cluster/k8s/base/networkpolicy.yaml (enableNetworkPolicy).
resource "aws_eks_addon" "vpc_cni" {
  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = "vpc-cni"
  resolve_conflicts_on_update = "OVERWRITE"
  configuration_values        = jsonencode({ enableNetworkPolicy = "true" })
}

resource "aws_eks_addon" "kube_proxy" {
  cluster_name = aws_eks_cluster.this.name
  addon_name   = "kube-proxy"
}

resource "aws_eks_addon" "coredns" {
  cluster_name = aws_eks_cluster.this.name
  addon_name   = "coredns"
  depends_on   = [aws_eks_node_group.system] # its pods need a node to become active
}
