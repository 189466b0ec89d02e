"""The MLflow run of a batch prediction (`raymlops.role=predict`): throughput, accuracy, confusion matrix, output file."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from raymlops.config.schema import Config
from raymlops.core import names

MAX_OUTPUT_ARTIFACT_BYTES = 50 * 1024**2  # larger prediction files stay where output= put them


def log_predict_run(
    config: Config, source: str, frame: pd.DataFrame, wall_s: float, result: dict[str, Any] | None
) -> tuple[str, dict[str, float]]:
    """One run with images/s (and accuracy + confusion matrix when the folder has class subfolders)."""
    from raymlops import tracking
    from raymlops.post.evaluation import confusion_png

    mcfg, p = config.mlflow, config.predict
    uri = mcfg.tracking_uri
    exp_id = tracking.ensure_experiment(uri, mcfg.experiment_name, mcfg.artifact_location)
    c = tracking.client(uri)
    tags = {names.TAG_ROLE: "predict", "raymlops.model_uri": p.model_uri, "raymlops.data": source} | tracking.origin_tags()
    run = c.create_run(exp_id, run_name=f"predict {p.model_uri}", tags=tags)
    rid = run.info.run_id
    for key in ("model_uri", "batch_size", "num_actors", "cpus_per_actor", "use_gpu", "output"):
        c.log_param(rid, f"predict.{key}", str(getattr(p, key)))
    failed = int((frame["error"] != "").sum())
    metrics = {
        "images": float(len(frame)),
        "images_per_s": len(frame) / max(wall_s, 1e-9),
        "wall_s": wall_s,
        "unreadable": float(failed),
    }
    if result:
        metrics["accuracy"] = result["test_acc"]
    for key, value in metrics.items():
        c.log_metric(rid, key, value)
    with tempfile.TemporaryDirectory() as tmp:
        if result:
            confusion_png(result, Path(tmp) / "confusion_matrix.png", title=f"accuracy {result['test_acc']:.3f} on {source}")
            (Path(tmp) / "per_class_accuracy.json").write_text(
                json.dumps({k: result[k] for k in ("per_class_acc", "confusion", "classes")}, indent=2)
            )
            c.log_artifacts(rid, tmp, "evaluation")
        out = Path(p.output)
        if out.is_file() and out.stat().st_size <= MAX_OUTPUT_ARTIFACT_BYTES:
            c.log_artifact(rid, str(out), "predictions")
    c.set_terminated(rid)
    return str(rid), metrics
