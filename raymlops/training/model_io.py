"""Logging a trained model to MLflow as one model with two flavors: `python_function` takes image files
(raymlops.models.image_classifier) and `pytorch` is the raw tensor model that raymlops.evaluate loads."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from torch import nn

from raymlops.data import Splits
from raymlops.models.image_codec import encode_image


def log_model(tracking_uri: str, run_id: str, model: nn.Module, splits: Splits) -> str:
    """Log the model under the run's `model` path: image-in pyfunc plus pytorch flavor; return its URI."""
    from raymlops.models.image_classifier import IMAGE_COLUMN, Preprocessing
    from raymlops.tracking.model_store import log_model as log_to_store

    model = model.to("cpu").float().eval()
    _, channels, height, width = splits.test_x.shape
    prep = Preprocessing(list(splits.classes), list(splits.mean), list(splits.std), int(channels), int(height), int(width))
    example = {IMAGE_COLUMN: [encode_image(splits.test_x[i].numpy()) for i in range(min(2, len(splits.test_x)))]}
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    metadata = {"classes": prep.classes, "mean": prep.mean, "std": prep.std, "input": "image file bytes"}
    with tempfile.TemporaryDirectory() as tmp:

        def save(path: str, mlflow_model: Any) -> None:
            _save_model(path, mlflow_model, torch_model=model, prep=prep, staging_dir=Path(tmp), input_example=_frame(example))

        return log_to_store(tracking_uri, run_id, "model", save, metadata)


def _frame(example: dict[str, list[bytes]]) -> Any:
    import pandas as pd

    return pd.DataFrame(example)


def _requirements() -> list[str]:
    """The served model's pins, read from the installed distributions: importing torchvision to read its
    version cost a search's driver 2.3 s (its ops pull in torch._dynamo), and the driver needs nothing else of it."""
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in ("torch", "torchvision", "pillow")]


def _save_model(
    path: str, mlflow_model: Any, torch_model: nn.Module, prep: Any, staging_dir: Path, input_example: Any, **_: Any
) -> None:
    """The flavor's save step: the raw model saved by mlflow.pytorch, wrapped by the image pyfunc, and its
    pytorch flavor re-pointed at the copy inside the pyfunc's artifacts."""
    import mlflow.pyfunc
    import mlflow.pytorch
    from mlflow.models import Model

    from raymlops.models import image_classifier
    from raymlops.models.image_classifier import RAW_MODEL_ARTIFACT, signature

    raw_dir = staging_dir / RAW_MODEL_ARTIFACT
    with _quiet_pickle_notice():
        mlflow.pytorch.save_model(torch_model, str(raw_dir), serialization_format="pickle", pip_requirements=_requirements())
    mlflow.pyfunc.save_model(
        path,
        # models from code: the pyfunc is built from raymlops.models.pyfunc_entry on load, not unpickled
        python_model=str(Path(image_classifier.__file__).with_name("pyfunc_entry.py")),
        artifacts={RAW_MODEL_ARTIFACT: str(raw_dir)},
        model_config=prep.as_config(),
        signature=signature(),
        input_example=input_example,
        pip_requirements=_requirements(),
        mlflow_model=mlflow_model,
    )
    inner = mlflow_model.flavors["python_function"]["artifacts"][RAW_MODEL_ARTIFACT]["path"]
    torch_conf = dict(Model.load(str(raw_dir)).flavors["pytorch"])
    torch_conf["model_data"] = f"{inner}/{torch_conf['model_data']}"
    mlflow_model.add_flavor("pytorch", **torch_conf)
    mlflow_model.save(os.path.join(path, "MLmodel"))


class _DropPickleNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Pickle or CloudPickle format" not in record.getMessage()


@contextmanager
def _quiet_pickle_notice() -> Iterator[None]:
    """mlflow.pytorch warns on every pickled save. raymlops writes these models and loads them itself (the
    pytorch flavor is what raymlops.evaluate reads; the served pyfunc is built from code), and pt2, the
    format MLflow suggests, has no `.eval()`/training modes that evaluation needs: the notice is nothing a
    user can act on, so it is dropped for this one call (docs: "What MLflow records", model formats)."""
    logger, notice = logging.getLogger("mlflow.pytorch"), _DropPickleNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)
