"""Batch inference with Ray Data: an image folder (or any raymlops data set's split) through an actor pool of
image-classifier pyfuncs, written to CSV or Parquet, with images/s and accuracy logged to an MLflow run."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raymlops.config.schema import Config
from raymlops.core.errors import UserError

log = logging.getLogger(__name__)
COLUMNS = ["path", "label", "class_index", "probability", "true_label", "error"]


class Predictor:
    """One actor of the pool: loads the pyfunc once, predicts a batch of rows (path, and image bytes or a file)."""

    def __init__(self, model_uri: str, tracking_uri: str, threads: int) -> None:
        import mlflow.pyfunc
        import torch

        from raymlops.tracking.model_store import download_model

        torch.set_num_threads(max(1, threads))
        self.model = mlflow.pyfunc.load_model(download_model(tracking_uri, model_uri))

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        images = list(batch["image"]) if "image" in batch else [Path(p).read_bytes() for p in batch["path"]]
        try:
            out = self._predict(images)
        except ValueError:  # one unreadable file must not sink the batch: find it row by row
            out = pd.concat([self._predict_or_error(im) for im in images], ignore_index=True)
        out.insert(0, "path", list(batch["path"]))
        out["true_label"] = list(batch["true_label"]) if "true_label" in batch else ""
        return out[COLUMNS]

    def _predict(self, images: list[bytes]) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException

        try:
            frame = self.model.predict(pd.DataFrame({"image": images}))
        except MlflowException as err:
            if err.get_http_status_code() != 400:
                raise
            raise ValueError(" ".join(err.message.split())) from None
        frame = frame[["label", "class_index", "probability"]].copy()
        frame["error"] = ""
        return frame

    def _predict_or_error(self, image: bytes) -> pd.DataFrame:
        try:
            return self._predict([image])
        except ValueError as err:
            return pd.DataFrame({"label": [""], "class_index": [-1], "probability": [float("nan")], "error": [str(err)]})


def items(config: Config) -> tuple[list[dict[str, Any]], bool, str]:
    """The rows to predict, whether they carry true labels, and a description of the source."""
    from raymlops.data.images import list_images
    from raymlops.models.image_codec import encode_image

    data, split = config.data, config.predict.split
    if data.name == "imagefolder":
        found = list_images(Path(str(data.root)), split)
        labels = found.labels or [""] * len(found.paths)
        return (
            [{"path": p, "true_label": c} for p, c in zip(found.paths, labels, strict=True)],
            bool(found.labels),
            str(found.root),
        )
    from raymlops.data import load_splits

    splits = load_splits(data, seed=config.train.seed)
    x, y = (splits.test_x, splits.test_y) if split == "test" else (splits.train_x, splits.train_y)
    rows = [
        {"path": f"{data.name}/{split}/{i:05d}", "image": encode_image(x[i].numpy()), "true_label": splits.classes[int(y[i])]}
        for i in range(len(y))
    ]
    return rows, True, f"{data.name} {split} split"


def model_classes(tracking_uri: str, model_uri: str) -> list[str]:
    """The class names inside the model (its MLmodel file only; nothing heavy is loaded)."""
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    from raymlops.tracking import transient
    from raymlops.tracking.model_store import download_model

    try:
        conf = Model.load(download_model(tracking_uri, model_uri, "MLmodel")).flavors["python_function"].get("config") or {}
    except (MlflowException, OSError) as err:
        if transient(err):
            raise
        raise UserError(
            f"Could not read model_uri={model_uri} ({type(err).__name__}: {' '.join(str(err).split())[:200]}). "
            "Use models:/NAME@champion, models:/NAME/VERSION or runs:/RUN_ID/model; list them with python -m raymlops.registry list NAME."
        ) from None
    if "classes" not in conf:
        raise UserError(f"{model_uri} is not an image classifier logged by raymlops (no classes in its pyfunc config).")
    return list(conf["classes"])


def pool_size(config: Config, gpu: bool) -> int:
    import ray

    p = config.predict
    if p.num_actors:
        return int(p.num_actors)
    res = ray.cluster_resources()
    by_cpu = int(res.get("CPU", 1) // p.cpus_per_actor)
    return max(1, min(by_cpu, int(res.get("GPU", 0))) if gpu else by_cpu)


def run_batch(config: Config, rows: list[dict[str, Any]]) -> tuple[pd.DataFrame, float]:
    """rows through map_batches on an actor pool; return the predictions (in input order) and the wall seconds."""
    import ray

    from raymlops.launch.cluster import connect

    connect(config)
    p = config.predict
    gpu = p.use_gpu is True or (p.use_gpu == "auto" and ray.cluster_resources().get("GPU", 0) > 0)
    size = pool_size(config, gpu)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = True
    print(f"Predicting {len(rows)} images with {size} actor(s) x {p.cpus_per_actor} CPU{' + 1 GPU' if gpu else ''}", flush=True)
    started = time.perf_counter()
    source = ray.data.from_items(rows, override_num_blocks=max(size * 2, min(len(rows) // p.batch_size, 200)))
    ds = source.map_batches(
        Predictor,
        fn_constructor_kwargs={
            "model_uri": p.model_uri,
            "tracking_uri": config.mlflow.tracking_uri,
            "threads": int(p.cpus_per_actor),
        },
        compute=ray.data.ActorPoolStrategy(size=size),
        batch_size=p.batch_size,
        batch_format="pandas",
        num_cpus=p.cpus_per_actor,
        num_gpus=1 if gpu else 0,
    )
    frames = list(ds.iter_batches(batch_format="pandas", batch_size=None))
    wall = time.perf_counter() - started
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)), wall


def write_output(frame: pd.DataFrame, output: str, labelled: bool) -> None:
    out = frame if labelled else frame.drop(columns=["true_label"])
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        out.to_parquet(path, index=False)
    else:
        out.to_csv(path, index=False)


def confusion(frame: pd.DataFrame, classes: list[str]) -> dict[str, Any]:
    """Accuracy and the confusion matrix (rows = true class) over rows with a known true class and no error."""
    index = {c: i for i, c in enumerate(classes)}
    ok = frame[(frame["error"] == "") & frame["true_label"].isin(index)]
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (ok["true_label"].map(index).to_numpy(int), ok["class_index"].to_numpy(int)), 1)
    acc = float(np.trace(cm) / max(cm.sum(), 1))
    per_class = {c: float(cm[i, i] / max(cm[i].sum(), 1)) for i, c in enumerate(classes)}
    return {"test_acc": acc, "confusion": cm.tolist(), "classes": classes, "per_class_acc": per_class, "n_test": int(cm.sum())}
