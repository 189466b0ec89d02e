"""A shared MLflow tracking server as plain processes: PostgreSQL (tracking + auth databases) and
`mlflow server` (basic auth, HTTPS), with users, permissions, backup and restore.

`python -m raymlops.server --help` (cli.py). Both processes bind 127.0.0.1 (postgres.py, processes.py).
"""

from raymlops.server.postgres import HOST, start_postgres
from raymlops.server.processes import Settings, start_mlflow, stop, wait_healthy

__all__ = ["HOST", "Settings", "start_mlflow", "start_postgres", "stop", "wait_healthy"]
