"""The image-in model without Ray: decoding any PNG/JPEG, the logged pyfunc (labels, probabilities, 400s),
the raw tensor model beside it, request parsing, the traffic split, serving stats and the serve/predict config."""

from __future__ import annotations

import base64
import io
import json
import logging
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import overrides
from PIL import Image

from raymlops.config import compose
from raymlops.config.schema import DataConfig, DatasetName, ModelConfig, ModelName
from raymlops.core.errors import UserError
from raymlops.data.images import list_images
from raymlops.models.image_codec import ImageDecodeError, decode_image, encode_image
from raymlops.serving.routing import RequestError, parse_images, pick_alias
from raymlops.serving.stats import ServingStats

SYNTH = DataConfig(name=DatasetName.synthetic, num_train=300, num_test=40, num_classes=10, image_size=32, val_fraction=0.1)


def _png(arr: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(out, format=fmt)
    return out.getvalue()


def test_decode_converts_and_resizes_any_image() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    assert (decode_image(_png(rgb), 3, 32, 32) == rgb.transpose(2, 0, 1)).all()  # PNG is lossless: exact
    assert decode_image(_png(rgb, fmt="JPEG"), 3, 32, 32).shape == (3, 32, 32)
    gray = rng.integers(0, 255, (50, 70), dtype=np.uint8)
    assert decode_image(_png(gray), 3, 32, 32).shape == (3, 32, 32)  # grayscale -> RGB, 70x50 -> 32x32
    rgba = rng.integers(0, 255, (64, 64, 4), dtype=np.uint8)
    assert decode_image(_png(rgba), 1, 28, 28).shape == (1, 28, 28)  # RGBA -> L
    for bad, reason in (
        (b"not an image", "unknown image format"),
        (b"", "empty image"),
        (_png(rgb)[:60], "not a decodable image"),
    ):
        with pytest.raises(ImageDecodeError, match=reason) as err:
            decode_image(bad, 3, 32, 32)
        assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny untrained fast_cnn logged through training.model_io.log_model to a fresh SQLite store."""
    import mlflow

    from raymlops.data import load_splits
    from raymlops.models.small_images import build_model
    from raymlops.training.model_io import log_model

    tmp = tmp_path_factory.mktemp("logged")
    uri = f"sqlite:///{tmp}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("image-model", artifact_location=str(tmp / "artifacts"))
    torch.manual_seed(0)
    splits = load_splits(SYNTH, seed=0)
    model = build_model(ModelConfig(name=ModelName.fast_cnn, width=8), 3, 10).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so predictions differ between images
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.running_mean.uniform_(-0.5, 0.5)
    run = mlflow.MlflowClient(uri).create_run(exp)
    notices: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: notices.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("mlflow").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model_uri = log_model(uri, run.info.run_id, model, splits)
    finally:
        logging.getLogger("mlflow").removeHandler(handler)
    notices += [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    return {"uri": uri, "model_uri": model_uri, "splits": splits, "model": model, "notices": notices}


def test_logging_a_model_prints_no_warning_a_user_cannot_act_on(logged: dict[str, Any]) -> None:
    """MLflow's "Add type hints to the `predict` method", CloudPickle and pickle-format notices printed after
    every search; the pyfunc is typed and logged from code, the pickle notice of our own raw model is dropped."""
    assert not [n for n in logged["notices"] if "type hint" in n or "ickle" in n], logged["notices"]


def test_logged_model_pins_the_installed_stack_without_importing_torchvision(logged: dict[str, Any]) -> None:
    """requirements.txt pins what this environment has; a search's driver reads the versions from the installed
    distributions instead of importing torchvision (2.3 s there, for a version string)."""
    import subprocess
    import sys
    from importlib import metadata

    import mlflow.pyfunc

    pins = Path(mlflow.pyfunc.get_model_dependencies(logged["model_uri"])).read_text().split()
    for name in ("torch", "torchvision", "pillow"):
        assert f"{name}=={metadata.version(name).split('+')[0]}" in pins, pins
    probe = "import sys; from raymlops.training import model_io; model_io._requirements(); print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_logged_model_takes_images_and_keeps_the_raw_model(logged: dict[str, Any]) -> None:
    import mlflow.pyfunc
    import mlflow.pytorch

    splits, uri = logged["splits"], logged["model_uri"]
    pyfunc = mlflow.pyfunc.load_model(uri)
    assert pyfunc.metadata.get_input_schema().input_names() == ["image"]
    pngs = [encode_image(splits.test_x[i].numpy()) for i in range(8)]
    out = pyfunc.predict(pd.DataFrame({"image": pngs}))
    assert list(out.columns) == ["label", "class_index", "probability", "probabilities"]
    raw = mlflow.pytorch.load_model(uri)  # the tensor model raymlops.evaluate loads, same URI
    mean, std = torch.tensor(splits.mean).view(1, -1, 1, 1), torch.tensor(splits.std).view(1, -1, 1, 1)
    with torch.no_grad():
        probs = torch.softmax(raw((splits.test_x[:8].float() / 255 - mean) / std), 1)
    assert out["class_index"].tolist() == probs.argmax(1).tolist()
    assert out["label"].tolist() == [splits.classes[i] for i in probs.argmax(1).tolist()]
    assert np.allclose(out["probability"], probs.max(1).values.numpy(), atol=1e-5)
    for row in out.to_dict(orient="records"):
        assert set(row["probabilities"]) == set(splits.classes)
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["probabilities"][row["label"]] == pytest.approx(row["probability"])
    # base64 text is accepted as well as bytes; a JPEG and a big grayscale image go through
    gray = np.asarray(Image.fromarray(splits.test_x[0].permute(1, 2, 0).numpy()).convert("L").resize((96, 96)))
    mixed = [base64.b64encode(pngs[0]).decode(), encode_image(splits.test_x[1].numpy(), "JPEG"), _png(gray)]
    assert pyfunc.predict(pd.DataFrame({"image": mixed}))["label"].iloc[0] == out["label"].iloc[0]


def test_logged_model_refuses_bad_input_as_400(logged: dict[str, Any]) -> None:
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    pyfunc = mlflow.pyfunc.load_model(logged["model_uri"])
    good = encode_image(logged["splits"].test_x[0].numpy())
    for frame, reason in (
        (pd.DataFrame({"image": [good, b"GIF89a garbage"]}), "row 1: not a decodable image"),
        (pd.DataFrame({"image": pd.Series([], dtype=object)}), "no images"),
    ):
        with pytest.raises(MlflowException, match=reason) as err:
            pyfunc.predict(frame)
        assert err.value.get_http_status_code() == 400 and "\n" not in err.value.message


def test_parse_images_and_split() -> None:
    png = _png(np.zeros((4, 4, 3), dtype=np.uint8))
    b64 = base64.b64encode(png).decode()
    assert parse_images(png, "image/png") == [png]
    split = {"dataframe_split": {"columns": ["image"], "data": [[b64], [b64]]}}
    assert parse_images(json.dumps(split).encode(), "application/json") == [png, png]
    assert parse_images(json.dumps({"image": b64}).encode(), "application/json; charset=utf-8") == [png]
    for body, reason in (
        (b"{not json", "malformed JSON"),
        (b"", "empty request body"),
        (json.dumps({"dataframe_split": {"columns": ["image"], "data": []}}).encode(), "no images"),
        (json.dumps({"dataframe_split": {"columns": ["x"], "data": [[1]]}}).encode(), "columns"),
        (json.dumps({"image": 5}).encode(), "base64 string"),
        (b"[1, 2]", "must be an object"),
    ):
        with pytest.raises(RequestError, match=reason):
            parse_images(body, "application/json")
    rng = random.Random(0)
    assert {pick_alias(None, 0.0, "champion", "challenger", rng) for _ in range(50)} == {"champion"}
    picks = [pick_alias(f"user-{i}", 0.1, "champion", "challenger", rng) for i in range(2000)]
    assert 120 < picks.count("challenger") < 280  # ~10 %
    assert all(pick_alias(f"user-{i}", 0.1, "champion", "challenger", rng) == picks[i] for i in range(200))  # sticky


def test_serving_stats_per_version() -> None:
    stats = ServingStats()
    for i in range(20):
        stats.record("1", float(i), ["cat"])
    stats.record("2", 5.0, ["dog", "cat"])
    stats.record("2", 7.0, [], error=True)
    m = stats.metrics()
    assert m["requests.v1"] == 20 and m["requests.v2"] == 2 and m["errors.v2"] == 1 and m["images.v2"] == 2
    assert m["latency_p50_ms.v1"] in (9.0, 10.0) and m["latency_p95_ms.v1"] == 18.0
    assert m["class_count.v1.cat"] == 20 and m["class_count.v2.dog"] == 1


def test_list_images_layouts(tmp_path: Path) -> None:
    png = _png(np.zeros((4, 4, 3), dtype=np.uint8))
    for part in ("train", "test"):
        for c in ("a", "b"):
            (tmp_path / "ds" / part / c).mkdir(parents=True)
            (tmp_path / "ds" / part / c / "0.png").write_bytes(png)
    found = list_images(tmp_path / "ds")  # a data set's layout: its test split, labelled
    assert found.root == tmp_path / "ds" / "test" and found.labels == ["a", "b"]
    assert list_images(tmp_path / "ds" / "train" / "a").labels is None  # a flat folder: unlabelled
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="No images"):
        list_images(tmp_path / "empty")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("serve.port=70000", "serve.port"),
        ("serve.challenger_traffic=1.5", "serve.challenger_traffic"),
        ("serve.min_replicas=3", "exceeds serve.max_replicas"),
        ("serve.poll_interval_s=0", "serve.poll_interval_s"),
        ("predict.output=out.txt", ".csv or .parquet"),
        ("predict.split=val", "predict.split"),
    ],
)
def test_serve_and_predict_config_validated(store: dict[str, str], override: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        compose(overrides(store, "+experiment=smoke", override))
