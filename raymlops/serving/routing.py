"""What a /predict request carries (image bytes, or MLflow's JSON form) and which alias answers it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
from typing import Any

REQUEST_KEY_HEADER = "x-request-key"  # requests with the same key always reach the same alias


class RequestError(ValueError):
    """A request the server cannot use: answered with HTTP 400 and this one-line message."""


def parse_images(body: bytes, content_type: str) -> list[bytes]:
    """Image file bytes from a request: a raw image body, or JSON {"dataframe_split": {"columns": ["image"],
    "data": [["<base64>"], ...]}} (also {"dataframe_records": [{"image": ...}]} and {"image": "<base64>"})."""
    mime = (content_type or "").split(";")[0].strip().lower()
    if not body:
        raise RequestError("empty request body: send an image file or JSON with base64 images")
    if mime != "application/json":
        return [body]
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RequestError(f"malformed JSON body: {err.msg if hasattr(err, 'msg') else err}") from None
    cells = _image_cells(doc)
    if not cells:
        raise RequestError("no images: send at least one row in column 'image'")
    return [_b64(cell, row) for row, cell in enumerate(cells)]


def _image_cells(doc: Any) -> list[Any]:
    if not isinstance(doc, dict):
        raise RequestError(
            'JSON body must be an object, e.g. {"dataframe_split": {"columns": ["image"], "data": [["<base64>"]]}}'
        )
    if "dataframe_split" in doc:
        split = doc["dataframe_split"]
        if not isinstance(split, dict) or "image" not in (split.get("columns") or []) or not isinstance(split.get("data"), list):
            raise RequestError('dataframe_split needs "columns" with "image" and a "data" list of rows')
        col = split["columns"].index("image")
        if not all(isinstance(r, list) and len(r) > col for r in split["data"]):
            raise RequestError("dataframe_split rows must be lists holding the image column")
        return [r[col] for r in split["data"]]
    if "dataframe_records" in doc and isinstance(doc["dataframe_records"], list):
        return [r.get("image") if isinstance(r, dict) else None for r in doc["dataframe_records"]]
    if "image" in doc:
        return [doc["image"]]
    raise RequestError(f"JSON body has none of dataframe_split, dataframe_records, image (got keys {sorted(doc)[:5]})")


def _b64(cell: Any, row: int) -> bytes:
    if not isinstance(cell, str):
        raise RequestError(f"row {row}: image must be a base64 string, got {type(cell).__name__}")
    try:
        return base64.b64decode(cell, validate=False)
    except (binascii.Error, ValueError):
        raise RequestError(f"row {row}: image is not valid base64") from None


def pick_alias(key: str | None, challenger_traffic: float, champion: str, challenger: str, rng: random.Random) -> str:
    """champion or challenger: challenger_traffic of the requests; by a hash of key when given (sticky)."""
    if challenger_traffic <= 0:
        return champion
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64 if key else rng.random()
    return challenger if bucket < challenger_traffic else champion
