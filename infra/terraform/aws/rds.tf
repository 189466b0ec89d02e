# RDS PostgreSQL: the MLflow backend store (database `mlflow`) and its auth database (`mlflow_auth`, created
# once by the guide). Multi-AZ, encrypted, private; the master password is generated here and kept in
# AWS Secrets Manager, never in a variable, an output or the repository.

resource "aws_db_subnet_group" "this" {
  name       = var.name
  subnet_ids = local.private_subnet_ids
}

resource "aws_security_group" "db" {
  name        = "${var.name}-db"
  description = "PostgreSQL from the EKS cluster only"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "db_from_eks" {
  security_group_id            = aws_security_group.db.id
  description                  = "PostgreSQL from the EKS nodes and pods (the cluster security group)"
  referenced_security_group_id = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "random_password" "db" {
  length  = 40
  special = false # letters and digits: the password sits inside a postgresql:// URI without escaping
}

resource "aws_secretsmanager_secret" "db" {
  name_prefix = "${var.name}/mlflow-db-"
  description = "Master credentials of the ${var.name} MLflow PostgreSQL (username, password, host, port, dbname)"
  kms_key_id  = aws_kms_key.this.arn
  #checkov:skip=CKV2_AWS_57:no automatic rotation: the MLflow server reads the password from a Kubernetes Secret made from this one, so a rotation is a planned step (docs/guides/deploy-aws.md, "Rotating the database password")
}

resource "aws_secretsmanager_secret_version" "db" {
  secret_id = aws_secretsmanager_secret.db.id
  secret_string = jsonencode({
    engine   = "postgres"
    username = aws_db_instance.this.username
    password = random_password.db.result
    host     = aws_db_instance.this.address
    port     = aws_db_instance.this.port
    dbname   = aws_db_instance.this.db_name
  })
}

resource "aws_db_parameter_group" "this" {
  name   = "${var.name}-postgres${var.db_engine_version}"
  family = "postgres${var.db_engine_version}"
  parameter {
    name  = "rds.force_ssl" # clients must use TLS (the tracking URI carries sslmode=require)
    value = "1"
  }
  parameter {
    name  = "log_min_duration_statement" # slow queries (ms) reach the CloudWatch postgresql log
    value = "1000"
  }
  parameter {
    name  = "log_statement"
    value = "ddl"
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name = "${var.name}-rds-monitoring"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "monitoring.rds.amazonaws.com" } }]
  })
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "this" {
  identifier     = "${var.name}-mlflow"
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class
  db_name        = "mlflow"
  username       = "mlflow"
  password       = random_password.db.result

  allocated_storage     = var.db_allocated_storage_gb
  max_allocated_storage = var.db_allocated_storage_gb * 5
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.this.arn

  multi_az               = true # a standby in a second zone; failover ~1-2 minutes
  publicly_accessible    = false
  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  parameter_group_name   = aws_db_parameter_group.this.name

  backup_retention_period             = 7
  copy_tags_to_snapshot               = true
  deletion_protection                 = var.db_deletion_protection
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${var.name}-mlflow-final"
  auto_minor_version_upgrade          = true
  iam_database_authentication_enabled = true
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]
  performance_insights_enabled        = true
  performance_insights_kms_key_id     = aws_kms_key.this.arn
  monitoring_interval                 = 60
  monitoring_role_arn                 = aws_iam_role.rds_monitoring.arn
}
