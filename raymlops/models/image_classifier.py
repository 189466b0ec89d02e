"""The registered model's pyfunc: image file bytes in, class label and probabilities out.

The preprocessing (channels, size, mean, std) and the class names travel in the model's
`model_config`; the raw tensor model sits beside it as an artifact (and as the pytorch flavor).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import ColSpec, Schema

from raymlops.models.device import choose_device
from raymlops.models.image_codec import ImageDecodeError, decode_image

IMAGE_COLUMN = "image"
RAW_MODEL_ARTIFACT = "raw_model"  # the pytorch-flavor model dir inside the pyfunc's artifacts
OUTPUT_COLUMNS = ("label", "class_index", "probability", "probabilities")


@dataclass
class Preprocessing:
    """What a client would otherwise need to know: input size and channels, normalisation, class order."""

    classes: list[str]
    mean: list[float]  # per channel, 0..1 units
    std: list[float]
    channels: int
    height: int
    width: int

    def as_config(self) -> dict[str, Any]:
        return asdict(self)


def invalid(message: str) -> MlflowException:
    """A client error: MLflow's scoring server answers it with HTTP 400 and this one-line message."""
    return MlflowException.invalid_parameter_value(message)


def signature() -> ModelSignature:
    return ModelSignature(
        inputs=Schema([ColSpec("binary", IMAGE_COLUMN)]),
        outputs=Schema(
            [ColSpec("string", "label"), ColSpec("long", "class_index"), ColSpec("double", "probability")]
            # `probabilities` (class name -> probability) is left out: a map column has no stable schema type
        ),
    )


def image_bytes(value: Any, row: int) -> bytes:
    """A cell of the image column: raw bytes, or base64 text (Ray Serve's JSON form, a hand-made DataFrame)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=False)
        except (binascii.Error, ValueError):
            raise invalid(f"row {row}: column '{IMAGE_COLUMN}' is not valid base64") from None
    raise invalid(f"row {row}: column '{IMAGE_COLUMN}' must hold image bytes (base64 in JSON), got {type(value).__name__}")


class ImageClassifier(PythonModel):  # type: ignore[misc]
    """pyfunc over the trained nn.Module: DataFrame[image bytes] -> DataFrame[label, class_index, probability, probabilities]."""

    batch_size = 256  # images per forward pass

    def load_context(self, context: Any) -> None:
        import mlflow.pytorch

        self.prep = Preprocessing(**context.model_config)
        self.device = choose_device("auto")  # CUDA, then Apple's MPS, then the CPU
        self.model = mlflow.pytorch.load_model(context.artifacts[RAW_MODEL_ARTIFACT], map_location=self.device).eval()
        self._mean = torch.tensor(self.prep.mean, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(self.prep.std, device=self.device).view(1, -1, 1, 1)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        # a DataFrame hint: MLflow validates against the logged signature, not a schema inferred from the hint
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if IMAGE_COLUMN not in frame.columns:
            raise invalid(
                f'no \'{IMAGE_COLUMN}\' column; send {{"dataframe_split": {{"columns": ["image"], "data": [["<base64>"]]}}}}'
            )
        if len(frame) == 0:
            raise invalid(f"no images: send at least one row in column '{IMAGE_COLUMN}'")
        batch = np.stack([self._decode(v, i) for i, v in enumerate(frame[IMAGE_COLUMN].tolist())])
        probs = self.probabilities(batch)
        return self.to_frame(probs)

    def _decode(self, value: Any, row: int) -> np.ndarray:
        p = self.prep
        try:
            return decode_image(image_bytes(value, row), p.channels, p.height, p.width)
        except ImageDecodeError as err:
            raise invalid(f"row {row}: {err}") from None

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, C, H, W] -> softmax probabilities [N, classes]."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                x = torch.from_numpy(images[start : start + self.batch_size]).to(self.device)
                x = (x.float().div_(255) - self._mean) / self._std
                out.append(torch.softmax(self.model(x).float(), dim=1).cpu())
        return torch.cat(out).numpy()

    def to_frame(self, probs: np.ndarray) -> pd.DataFrame:
        classes = self.prep.classes
        index = probs.argmax(1)
        return pd.DataFrame(
            {
                "label": [classes[i] for i in index],
                "class_index": index.astype(np.int64),
                "probability": probs[np.arange(len(index)), index].astype(np.float64),
                "probabilities": [dict(zip(classes, map(float, row), strict=True)) for row in probs],
            }
        )
