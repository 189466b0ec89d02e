# IAM roles for service accounts (IRSA): a pod of the named Kubernetes service account gets short-lived
# AWS credentials for its role from EKS's OIDC provider; no access key exists anywhere.
#   mlflow             -> namespace var.k8s_namespace, service account mlflow-server: artifacts under s3://BUCKET/mlflow/
#   ray                -> namespace var.k8s_namespace, service account raymlops-ray: results and checkpoints under s3://BUCKET/raymlops/
#   cluster_autoscaler -> kube-system/cluster-autoscaler: resizes the EKS node groups (GPU spot 0 -> gpu_node_max)

locals {
  oidc_issuer = replace(aws_iam_openid_connect_provider.eks.url, "https://", "")
  irsa = {
    mlflow             = { namespace = var.k8s_namespace, service_account = local.mlflow_service_account }
    ray                = { namespace = var.k8s_namespace, service_account = local.ray_service_account }
    cluster_autoscaler = { namespace = "kube-system", service_account = local.autoscaler_account }
  }
  s3_prefix = { mlflow = "mlflow", ray = "raymlops" }
}

resource "aws_iam_role" "irsa" {
  for_each = local.irsa
  name     = "${var.name}-${replace(each.key, "_", "-")}"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRoleWithWebIdentity"
      Principal = { Federated = aws_iam_openid_connect_provider.eks.arn }
      Condition = {
        StringEquals = {
          "${local.oidc_issuer}:sub" = "system:serviceaccount:${each.value.namespace}:${each.value.service_account}"
          "${local.oidc_issuer}:aud" = "sts.amazonaws.com"
        }
      }
    }]
  })
}

# Read and write one prefix of the bucket (and list it), with the bucket's KMS key.
resource "aws_iam_role_policy" "s3" {
  for_each = local.s3_prefix
  name     = "s3-${each.value}"
  role     = aws_iam_role.irsa[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "ListPrefix"
        Effect    = "Allow"
        Action    = ["s3:ListBucket"]
        Resource  = aws_s3_bucket.artifacts.arn
        Condition = { StringLike = { "s3:prefix" = ["${each.value}/*", each.value] } }
      },
      {
        Sid      = "ObjectsUnderPrefix"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
        Resource = "${aws_s3_bucket.artifacts.arn}/${each.value}/*"
      },
      {
        Sid      = "BucketKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = aws_kms_key.this.arn
      },
    ]
  })
}

# The cluster autoscaler's documented policy: describe everything, resize only this cluster's groups.
resource "aws_iam_role_policy" "cluster_autoscaler" {
  name = "cluster-autoscaler"
  role = aws_iam_role.irsa["cluster_autoscaler"].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid    = "Describe" # read-only look-ups that IAM cannot scope to a resource (no resource-level permissions)
        Effect = "Allow"
        Action = [
          "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
          "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities", "autoscaling:DescribeTags",
          "ec2:DescribeImages", "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplateVersions",
          "ec2:GetInstanceTypesFromInstanceRequirements",
        ]
        Resource = "*"
      },
      {
        Sid      = "DescribeOwnNodegroups" # labels and taints of a group at size 0 (scale-up from zero)
        Effect   = "Allow"
        Action   = ["eks:DescribeNodegroup"]
        Resource = "arn:${local.partition}:eks:${var.region}:${local.account_id}:nodegroup/${var.name}/*/*"
      },
      {
        Sid      = "ResizeOwnGroups" # EKS tags its managed node groups' auto scaling groups with the cluster's name
        Effect   = "Allow"
        Action   = ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]
        Resource = "arn:${local.partition}:autoscaling:${var.region}:${local.account_id}:autoScalingGroup:*:autoScalingGroupName/eks-*"
        Condition = {
          StringEquals = { "aws:ResourceTag/k8s.io/cluster-autoscaler/${var.name}" = "owned" }
        }
      },
    ]
  })
}
