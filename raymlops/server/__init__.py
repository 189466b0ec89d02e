"""A shared MLflow tracking server as plain processes: PostgreSQL (backend store) + `mlflow server`.

`python -m raymlops.server start|stop|status` (see processes.py); both bind 127.0.0.1.
"""

from raymlops.server.processes import HOST, start_mlflow, start_postgres, stop, wait_healthy

__all__ = ["HOST", "start_mlflow", "start_postgres", "stop", "wait_healthy"]
