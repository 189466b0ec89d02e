"""Logging a trained model to MLflow, with its signature, an input example and what a client needs to use it."""

from __future__ import annotations

import os

import torch
from torch import nn

from raymlops.data import Splits, normalise


def log_model(tracking_uri: str, run_id: str, model: nn.Module, splits: Splits) -> str:
    """Log the model as an MLflow PyTorch model with signature and input example; return its URI."""
    import mlflow
    import mlflow.pytorch
    import torchvision
    from mlflow.models import infer_signature

    model = model.to("cpu").float().eval()
    example = normalise(
        splits.test_x[:2], torch.tensor(splits.mean).view(1, -1, 1, 1), torch.tensor(splits.std).view(1, -1, 1, 1)
    )
    with torch.no_grad():
        out = model(example)
    signature = infer_signature(example.numpy(), out.numpy())
    mlflow.set_tracking_uri(tracking_uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            serialization_format="pickle",
            signature=signature,
            input_example=example.numpy(),
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"torchvision=={torchvision.__version__.split('+')[0]}",
            ],
            metadata={"classes": splits.classes, "mean": splits.mean, "std": splits.std},
        )
    return str(info.model_uri)
