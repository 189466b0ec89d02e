# ECR: the raymlops image (FROM rayproject/ray:2.60.0-py311-gpu + the pinned stack, Dockerfile in
# docs/cluster.md) that the MLflow server and every Ray pod run.

resource "aws_ecr_repository" "raymlops" {
  name                 = var.name
  force_delete         = var.allow_destroy_with_data
  image_tag_mutability = "IMMUTABLE" # a tag names one image forever: pods on old and new nodes run the same code
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.this.arn
  }
}

resource "aws_ecr_lifecycle_policy" "raymlops" {
  repository = aws_ecr_repository.raymlops.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "keep the 20 newest images (~10 GB each)"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 20 }
      action       = { type = "expire" }
    }]
  })
}
