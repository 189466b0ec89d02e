"""Test-set evaluation of a model: accuracy, loss, confusion matrix and per-class accuracy, logged to MLflow."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from raymlops.core.errors import UserError
from raymlops.data import Splits
from raymlops.tracking.client import client
from raymlops.training.ops import predict


def evaluate_model(
    model: nn.Module, splits: Splits, device: torch.device | None = None, batch_size: int = 1024
) -> dict[str, Any]:
    """test_acc, test_loss, the confusion matrix (rows = true class) and per-class accuracy."""
    device = device or torch.device("cpu")
    model = model.to(device).float().eval()
    mean = torch.tensor(splits.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(splits.std, device=device).view(1, -1, 1, 1)
    x, y = splits.test_x.to(device), splits.test_y.to(device)
    logits = predict(model, x, mean, std, batch_size)
    loss = float(nn.functional.cross_entropy(logits, y))
    pred = logits.argmax(1)
    k = splits.num_classes
    confusion = torch.bincount(y * k + pred, minlength=k * k).view(k, k).cpu()
    per_class = {c: float(confusion[i, i] / max(int(confusion[i].sum()), 1)) for i, c in enumerate(splits.classes)}
    predicted = confusion.sum(0)  # columns: how often each class was predicted
    return {
        "test_acc": float((pred == y).float().mean()),
        "test_loss": loss,
        "confusion": confusion.tolist(),
        "per_class_acc": per_class,
        "classes": splits.classes,
        "n_test": len(y),
        "predicted_share": {c: float(predicted[i]) / max(len(y), 1) for i, c in enumerate(splits.classes)},
        "mean_confidence": float(logits.softmax(1).max(1).values.mean()),
    }


def serving_reference(result: dict[str, Any]) -> str:
    """The drift baseline kept on a registered version (tag names.TAG_SERVING_REFERENCE): what it predicted on the
    test set. Read back by raymlops.serving.drift.Reference.from_json."""
    share, conf, n = result["predicted_share"], result["mean_confidence"], result["n_test"]
    return json.dumps({"class_share": share, "mean_confidence": conf, "n_test": n})


def confusion_png(result: dict[str, Any], path: Path, title: str = "") -> None:
    import os

    import matplotlib

    if "MPLBACKEND" not in os.environ:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.array(result["confusion"], dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(result["classes"])
    fig, ax = plt.subplots(figsize=(max(5, k * 0.55), max(4.5, k * 0.5)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if k <= 20:
        ax.set_xticks(range(k), result["classes"], rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), result["classes"], fontsize=8)
        for i in range(k):
            for j in range(k):
                ax.text(
                    j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7, color="white" if norm[i, j] > 0.5 else "black"
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"test accuracy {result['test_acc']:.3f}")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def log_evaluation(tracking_uri: str, run_ids: list[str], result: dict[str, Any], model_uri: str = "") -> None:
    """test_acc/test_loss metrics plus confusion_matrix.png and per_class_accuracy.json on each run."""
    c = client(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        confusion_png(result, d / "confusion_matrix.png")
        (d / "per_class_accuracy.json").write_text(
            json.dumps(
                {
                    "model_uri": model_uri,
                    "test_acc": result["test_acc"],
                    "n_test": result["n_test"],
                    "per_class_accuracy": result["per_class_acc"],
                    "confusion": result["confusion"],
                    "classes": result["classes"],
                },
                indent=2,
            )
        )
        for run_id in dict.fromkeys(run_ids):
            c.log_metric(run_id, "test_acc", result["test_acc"])
            c.log_metric(run_id, "test_loss", result["test_loss"])
            c.log_artifact(run_id, str(d / "confusion_matrix.png"), "evaluation")
            c.log_artifact(run_id, str(d / "per_class_accuracy.json"), "evaluation")


def load_logged_model(tracking_uri: str, model_uri: str) -> nn.Module:
    """The pytorch flavor of model_uri, fetched from tracking_uri (a bug or an outage raises as it is)."""
    import mlflow.pytorch
    from mlflow.exceptions import MlflowException

    from raymlops.tracking import transient
    from raymlops.tracking.model_store import download_model

    try:
        model: nn.Module = mlflow.pytorch.load_model(download_model(tracking_uri, model_uri), map_location="cpu")
    except (MlflowException, OSError) as err:
        if transient(err):
            raise
        raise UserError(
            f"Could not load model_uri={model_uri} ({type(err).__name__}: {' '.join(str(err).split())[:200]}). "
            "Use models:/NAME@champion, models:/NAME/VERSION or runs:/RUN_ID/model; list them with python -m raymlops.registry list."
        ) from None
    return model
