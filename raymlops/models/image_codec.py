"""The model's input format: image file bytes decoded to the size and channels a model was trained on (RGB or
grayscale, any size), and tensors encoded back to PNG/JPEG."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

MAX_IMAGE_BYTES = 20 * 1024**2  # a request image larger than this is refused, not decoded
MAX_IMAGE_PIXELS = 40_000_000  # PIL's decompression-bomb guard, explicit


class ImageDecodeError(ValueError):
    """Bytes that are not a decodable image; the message is one line."""


def decode_image(raw: bytes, channels: int, height: int, width: int) -> np.ndarray:
    """PNG/JPEG/... bytes -> uint8 [channels, height, width], converted (RGB or grayscale) and resized
    bilinearly the way raymlops.data decodes image folders for training."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise ImageDecodeError(f"expected image file bytes, got {type(raw).__name__}")
    if len(raw) == 0:
        raise ImageDecodeError("empty image (0 bytes)")
    if len(raw) > MAX_IMAGE_BYTES:
        raise ImageDecodeError(f"image of {len(raw)} bytes exceeds the {MAX_IMAGE_BYTES} byte limit")
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(io.BytesIO(raw)) as opened:
            im = opened.convert("L" if channels == 1 else "RGB")
            if im.size != (width, height):
                im = im.resize((width, height), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except UnidentifiedImageError:
        raise ImageDecodeError("not a decodable image (PNG or JPEG expected): unknown image format") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        reason = " ".join(str(err).split())[:120] or type(err).__name__
        raise ImageDecodeError(f"not a decodable image (PNG or JPEG expected): {reason}") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def encode_image(chw: Any, fmt: str = "PNG") -> bytes:
    """uint8 [C, H, W] (C = 1 or 3) -> image file bytes (PNG by default, or JPEG)."""
    from PIL import Image

    arr = np.asarray(chw, dtype=np.uint8)
    im = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
    out = io.BytesIO()
    im.save(out, format=fmt)
    return out.getvalue()
