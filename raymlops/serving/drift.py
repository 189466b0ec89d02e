"""Prediction drift: how far the classes a served version predicts have moved from what it predicted on the
test set at registration, as a population stability index (PSI) over the predicted classes."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

PSI_FLOOR = 1e-4  # share given to a class never seen on one side: keeps log(0) out, caps one class's term


@dataclass(frozen=True)
class Reference:
    """What a version predicted on the test set at registration (model-version tag names.TAG_SERVING_REFERENCE)."""

    class_share: dict[str, float]  # predicted label -> fraction of test images (sums to 1)
    mean_confidence: float  # mean top-1 probability on the test set
    n_test: int

    def to_json(self) -> str:
        return json.dumps({"class_share": self.class_share, "mean_confidence": self.mean_confidence, "n_test": self.n_test})

    @classmethod
    def from_json(cls, text: str) -> Reference:
        doc = json.loads(text)
        return cls({str(k): float(v) for k, v in doc["class_share"].items()}, float(doc["mean_confidence"]), int(doc["n_test"]))


def psi(expected: Mapping[str, float], observed: Mapping[str, float]) -> float:
    """Population stability index sum((o - e) * ln(o / e)) over the union of classes; both sides are normalised
    to shares first (observed may be counts). 0 = same mix; < 0.1 stable, 0.1-0.25 moderate, > 0.25 shifted."""
    e_total, o_total = sum(expected.values()), sum(observed.values())
    if e_total <= 0 or o_total <= 0:
        return 0.0
    out = 0.0
    for label in set(expected) | set(observed):
        e = max(expected.get(label, 0.0) / e_total, PSI_FLOOR)
        o = max(observed.get(label, 0.0) / o_total, PSI_FLOOR)
        out += (o - e) * math.log(o / e)
    return out


def shares(labels: Iterable[str]) -> dict[str, float]:
    counts: dict[str, float] = {}
    for label in labels:
        counts[label] = counts.get(label, 0.0) + 1.0
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}
