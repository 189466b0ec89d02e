# What raymlops needs, and nothing secret (the database password stays in Secrets Manager):
#   terraform output -raw kustomize_env > cluster/k8s/overlays/prod/terraform.env   (docs/guides/deploy-aws.md)

output "cluster_name" {
  description = "EKS cluster: aws eks update-kubeconfig --region REGION --name CLUSTER_NAME"
  value       = aws_eks_cluster.this.name
}

output "region" {
  description = "AWS region of the stack."
  value       = var.region
}

output "tracking_db_uri" {
  description = "MLflow --backend-store-uri WITHOUT the password (insert it from db_credentials_secret_arn); TLS required."
  value       = "postgresql+psycopg2://${aws_db_instance.this.username}@${aws_db_instance.this.endpoint}/${aws_db_instance.this.db_name}?sslmode=require"
}

output "auth_db_uri" {
  description = "basic_auth.ini database_uri WITHOUT the password: the mlflow_auth database on the same instance."
  value       = "postgresql+psycopg2://${aws_db_instance.this.username}@${aws_db_instance.this.endpoint}/mlflow_auth?sslmode=require"
}

output "db_credentials_secret_arn" {
  description = "Secrets Manager secret (JSON: username, password, host, port, dbname) holding the generated password."
  value       = aws_secretsmanager_secret.db.arn
}

output "artifact_bucket" {
  description = "S3 bucket of MLflow artifacts and Ray results."
  value       = aws_s3_bucket.artifacts.id
}

output "mlflow_artifacts_destination" {
  description = "MLflow --artifacts-destination (the mlflow-server Secret's artifacts-destination)."
  value       = "s3://${aws_s3_bucket.artifacts.id}/mlflow"
}

output "ray_storage_path" {
  description = "RAYMLOPS_STORAGE_PATH of the Ray pods: Tune results and checkpoints, reachable from every node."
  value       = "s3://${aws_s3_bucket.artifacts.id}/raymlops"
}

output "mlflow_role_arn" {
  description = "IAM role of the mlflow-server service account (eks.amazonaws.com/role-arn annotation)."
  value       = aws_iam_role.irsa["mlflow"].arn
}

output "ray_role_arn" {
  description = "IAM role of the raymlops-ray service account of the Ray head and workers."
  value       = aws_iam_role.irsa["ray"].arn
}

output "cluster_autoscaler_role_arn" {
  description = "IAM role of kube-system/cluster-autoscaler, which scales the GPU spot group from 0."
  value       = aws_iam_role.irsa["cluster_autoscaler"].arn
}

output "image_repository" {
  description = "ECR repository to push the raymlops image to."
  value       = aws_ecr_repository.raymlops.repository_url
}

output "kustomize_env" {
  description = "The values cluster/k8s/overlays/prod reads, as an env file (KEY=value lines)."
  value = join("\n", [
    "IMAGE=${aws_ecr_repository.raymlops.repository_url}:${var.image_tag}",
    "MLFLOW_ROLE_ARN=${aws_iam_role.irsa["mlflow"].arn}",
    "RAY_ROLE_ARN=${aws_iam_role.irsa["ray"].arn}",
    "RAYMLOPS_STORAGE_PATH=s3://${aws_s3_bucket.artifacts.id}/raymlops",
    "MLFLOW_HOST=${var.mlflow_host}",
    "",
  ])
}
