"""Terminal output for the entry points: logging set-up and small tables."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from typing import Any

from raymlops.core.redact import redact_text


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class _ResumeNoise(logging.Filter):
    """Tune's result.json / progress.csv loggers, when a trial resumes from a checkpoint (a trial paused by
    promotion ASHA, or restarted), try to fetch those files from storage_path and warn "Remote file not
    found" when Tune has not synced them there yet; the local copy they append to is intact."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Remote file not found:")


def setup_logging() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("raymlops").setLevel(logging.INFO)
    for noisy in ("alembic", "mlflow", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # MLflow gives its loggers a handler of their own that bypasses the redaction above: keep it from
    # doing so (read when mlflow is first imported) and undo it where mlflow is imported already.
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    for name in ("mlflow", "alembic", "sqlalchemy.engine", "huey"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    tune_loggers = logging.getLogger("ray.tune.logger.logger")
    if not any(isinstance(f, _ResumeNoise) for f in tune_loggers.filters):
        tune_loggers.addFilter(_ResumeNoise())
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    # MLflow asks for type hints on a pyfunc's predict; raymlops' image model takes a DataFrame of image bytes
    warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method", category=UserWarning)


def set_verbose(verbose: bool) -> None:
    """console.verbose=true (-v): Ray's and Tune's INFO lines, and none of the filters above."""
    if not verbose:
        return
    logging.getLogger("ray").setLevel(logging.INFO)
    tune_loggers = logging.getLogger("ray.tune.logger.logger")
    for f in [f for f in tune_loggers.filters if isinstance(f, _ResumeNoise)]:
        tune_loggers.removeFilter(f)
    warnings.resetwarnings()


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain fixed-width table; floats shown with 4 significant decimals."""

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    cells = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def print_result(result: dict[str, Any]) -> None:
    """The entry point's last line, `raymlops-result: {json}`: run ids, URIs and metrics for a scheduler to read
    (pipelines/ parses it, also from `ray job submit`'s streamed output). Only JSON scalars; nothing secret."""
    import json

    from raymlops.core.names import RESULT_PREFIX

    scalars = {k: v for k, v in result.items() if isinstance(v, str | int | float | bool) or v is None}
    print(RESULT_PREFIX + json.dumps(scalars, sort_keys=True), flush=True)
