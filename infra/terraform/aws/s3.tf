# S3: one bucket for MLflow artifacts (prefix mlflow/, written by the MLflow server) and Ray results and
# checkpoints (prefix raymlops/, written by the Ray pods). Versioned, old versions expire, private, KMS.

resource "aws_s3_bucket" "artifacts" {
  bucket_prefix = "${var.name}-artifacts-"
  force_destroy = var.allow_destroy_with_data # every version of every object goes with the bucket
  #checkov:skip=CKV_AWS_18:no server access logging bucket: CloudTrail data events are the audit trail if one is required; a log bucket doubles the buckets to secure
  #checkov:skip=CKV_AWS_144:no cross-region replication: artifacts and checkpoints are reproducible from the tracking database and code, replication doubles storage cost
  #checkov:skip=CKV2_AWS_62:no event notifications: nothing in raymlops consumes bucket events
}

resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  versioning_configuration {
    status = "Enabled" # an overwritten or deleted model or checkpoint can be recovered for artifact_noncurrent_days
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this.arn
    }
    bucket_key_enabled = true # one KMS call per object batch, not per request: checkpoints write many objects
  }
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket                  = aws_s3_bucket.artifacts.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  rule {
    object_ownership = "BucketOwnerEnforced" # ACLs off: access is IAM only
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket     = aws_s3_bucket.artifacts.id
  depends_on = [aws_s3_bucket_versioning.artifacts]
  rule {
    id     = "expire-old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.artifact_noncurrent_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7 # a killed trial's half-uploaded checkpoint
    }
    expiration {
      expired_object_delete_marker = true
    }
  }
}

# TLS only: a request over plain HTTP is refused whoever signs it.
resource "aws_s3_bucket_policy" "artifacts" {
  bucket     = aws_s3_bucket.artifacts.id
  depends_on = [aws_s3_bucket_public_access_block.artifacts]
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [aws_s3_bucket.artifacts.arn, "${aws_s3_bucket.artifacts.arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })
}
