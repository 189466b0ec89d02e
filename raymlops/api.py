"""raymlops from Python (a notebook, a script): the same searches, jobs and evaluations as the command lines.

    import raymlops as rm
    result = rm.search("smoke", overrides=["tune.num_samples=2"])
    result.best, result.trials, result.plot()
    model = rm.champion("raymlops-smoke")
    model.predict(["cat.png", "dog.jpg"])

Each call runs what its command line runs (`raymlops.tune.run` is `python -m raymlops.tune`'s body), in this
process: Ray is started on the first call and re-used by the next ones. Errors raise `raymlops.UserError` with
the message the command line prints; nothing exits the interpreter.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raymlops.core.errors import UserError
from raymlops.core.names import ALIAS_CHAMPION

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

DEFAULT_EXPERIMENT = "quickstart"
Image = Any  # a path (str or Path), image file bytes, a uint8 array (H, W[, C] or C, H, W) or a PIL image


@dataclass
class SearchResult:
    """What a search left: the best trial, its MLflow parent run, the registry's decision and every trial."""

    name: str
    metric: str
    mode: str
    parent_run_id: str | None
    best: dict[str, Any]  # trial_id, the metric, epochs, its search-space params, mlflow_run_id, test_acc
    champion_decision: str | None
    registered_version: str | None
    model_uri: str | None
    incomplete: str | None  # why not every trial finished (failed after retries, never ran); None when all did
    summary: dict[str, Any] = field(repr=False)  # what `raymlops-result:` prints on the command line
    rows: list[dict[str, Any]] = field(repr=False)
    epochs: int = field(repr=False, default=0)

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial, best first: trial_id, the metric, epochs run, the searched params, status, run id."""
        import pandas as pd

        return pd.DataFrame([{k: v for k, v in row.items() if k != "curve"} for row in self.rows])

    def plot(self) -> Figure:
        """The metric per epoch of every trial (the parent run's learning_curves.png), as a matplotlib Figure."""
        from raymlops.post.summary import learning_curves_figure

        return learning_curves_figure(self.rows, self.metric, self.epochs)


@dataclass
class TrainResult:
    """A training job's last epoch: metrics, its MLflow run and the model logged there."""

    metrics: dict[str, Any]
    run_id: str | None
    model_uri: str | None


class Champion:
    """A registered model version loaded in this process (MLflow's pyfunc): `predict(images)` -> labels."""

    def __init__(self, model_name: str, version: str, pyfunc: Any) -> None:
        self.model_name, self.version, self.pyfunc = model_name, version, pyfunc
        self.model_uri = f"models:/{model_name}/{version}"
        self.classes: list[str] = list(pyfunc.model_config.get("classes", []))

    def predict(self, images: Sequence[Image]) -> pd.DataFrame:
        """label, class_index, probability, probabilities (class -> probability) per image, in order."""
        return _predict_frame(self.pyfunc, images)

    def __repr__(self) -> str:
        return f"Champion({self.model_uri}, {len(self.classes)} classes)"


def search(experiment: str = DEFAULT_EXPERIMENT, overrides: Sequence[str] = ()) -> SearchResult:
    """`python -m raymlops.tune +experiment=EXPERIMENT OVERRIDES...`, returning its result. A search whose
    trials did not all finish returns (with `incomplete` saying why) and warns, as the command line exits 3."""
    from raymlops.tune import run

    config, summary = run(_argv(experiment, overrides))
    metric = config.tune.metric
    rows = summary.get("trial_rows", [])
    best = dict(next((r for r in rows if r["trial_id"] == summary["best_trial_id"]), rows[0] if rows else {}))
    best.pop("curve", None)
    best.update({k: summary[k] for k in ("test_acc", "test_loss") if k in summary})
    result = SearchResult(
        name=summary["search"],
        metric=metric,
        mode=config.tune.mode,
        parent_run_id=summary.get("parent_run_id"),
        best=best,
        champion_decision=summary.get("champion_decision"),
        registered_version=summary.get("registered_version"),
        model_uri=summary.get("model_uri"),
        incomplete=summary.get("incomplete"),
        summary={k: v for k, v in summary.items() if k != "trial_rows"},
        rows=rows,
        epochs=config.train.epochs,
    )
    if result.incomplete:
        warnings.warn(f"search {result.name} is incomplete: {result.incomplete}", stacklevel=2)
    return result


def train(experiment: str = DEFAULT_EXPERIMENT, overrides: Sequence[str] = ()) -> TrainResult:
    """`python -m raymlops.train +experiment=EXPERIMENT OVERRIDES...`, returning its last metrics and run."""
    from raymlops.train import model_uri, run  # `raymlops.train` itself is this function (raymlops/__init__.py)

    _, metrics = run(_argv(experiment, overrides))
    return TrainResult(metrics, metrics.get("mlflow_run_id"), model_uri(metrics))


def evaluate(model_uri: str, experiment: str = DEFAULT_EXPERIMENT, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """`python -m raymlops.evaluate model_uri=... +experiment=EXPERIMENT`: test_acc, test_loss, per-class
    accuracy, the confusion matrix and the role=evaluate run it logged (mlflow_run_id)."""
    from raymlops.evaluate import run

    return run([f"model_uri={model_uri}", *_argv(experiment, overrides)])


def champion(
    model_name: str | None = None,
    *,
    alias: str = ALIAS_CHAMPION,
    experiment: str = DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
) -> Champion:
    """The version registered under `alias` (the experiment's registry.model_name by default), loaded from the
    experiment's tracking URI (or `tracking_uri`)."""
    from raymlops.post.model_registry import alias_version

    uri, name = _tracking_and_model(experiment, tracking_uri, model_name)
    version = alias_version(uri, name, alias)
    if version is None:
        raise UserError(
            f"No {name}@{alias} in the registry at {uri}: run a search first (raymlops.search), or list the models "
            f"with python -m raymlops.registry --tracking-uri {uri} list."
        )
    return Champion(name, version, _load_pyfunc(uri, f"models:/{name}/{version}"))


def predict(
    model_uri: str, images: Sequence[Image], experiment: str = DEFAULT_EXPERIMENT, tracking_uri: str | None = None
) -> pd.DataFrame:
    """Predictions of any logged or registered model (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN/model)
    for a few images, in this process (`python -m raymlops.predict` is the Ray Data path for folders)."""
    uri, _ = _tracking_and_model(experiment, tracking_uri, None)
    return _predict_frame(_load_pyfunc(uri, model_uri), images)


def _argv(experiment: str, overrides: Sequence[str]) -> list[str]:
    if isinstance(overrides, str):
        raise UserError(f"overrides={overrides!r} must be a list of strings, e.g. overrides=[{overrides!r}].")
    return [f"+experiment={experiment}", *overrides]


def _tracking_and_model(experiment: str, tracking_uri: str | None, model_name: str | None) -> tuple[str, str]:
    from raymlops.config import compose

    config = compose([f"+experiment={experiment}"])
    return tracking_uri or config.mlflow.tracking_uri, model_name or config.registry.model_name


def _load_pyfunc(tracking_uri: str, model_uri: str) -> Any:
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from raymlops.tracking.model_store import download_model

    try:
        return mlflow.pyfunc.load_model(download_model(tracking_uri, model_uri))
    except (MlflowException, OSError) as err:
        raise UserError(
            f"Could not load {model_uri} from {tracking_uri} ({type(err).__name__}: {' '.join(str(err).split())[:200]}). "
            "Use models:/NAME@champion, models:/NAME/VERSION or runs:/RUN_ID/model."
        ) from None


def _predict_frame(pyfunc: Any, images: Sequence[Image]) -> pd.DataFrame:
    import pandas as pd
    from mlflow.exceptions import MlflowException

    if isinstance(images, str | Path | bytes):
        images = [images]
    try:
        return pyfunc.predict(pd.DataFrame({"image": [_image_bytes(im, i) for i, im in enumerate(images)]}))
    except MlflowException as err:
        raise UserError(" ".join(err.message.split())) from None


def _image_bytes(image: Image, index: int) -> bytes:
    """Image file bytes for the model's `image` column, from whatever a notebook holds."""
    import numpy as np

    from raymlops.models.image_codec import encode_image

    if isinstance(image, bytes | bytearray):
        return bytes(image)
    if isinstance(image, str | Path):
        try:
            return Path(image).read_bytes()
        except OSError as err:
            raise UserError(f"image {index}: cannot read {image} ({err.strerror or err}).") from None
    if hasattr(image, "save") and hasattr(image, "mode"):  # a PIL image
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
        raise UserError(
            f"image {index}: a {arr.dtype} array of shape {arr.shape}; pass a path, image bytes, a PIL image or a "
            "uint8 array (H, W), (H, W, C) or (C, H, W)."
        )
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.shape[-1] in (1, 3) and arr.shape[0] not in (1, 3):
        arr = arr.transpose(2, 0, 1)  # H, W, C -> C, H, W
    return encode_image(arr)
