"""Per-version serving statistics (requests, errors, latency percentiles, predicted-class counts, mean confidence
and drift over a sliding window) as MLflow metrics."""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass, field

from raymlops.serving.drift import Reference, psi, shares

LATENCY_WINDOW = 10_000  # latencies kept per version for the percentiles
DRIFT_WINDOW = 500  # predictions kept per version for drift and mean confidence (serve.drift_window)


@dataclass
class VersionStats:
    requests: int = 0
    images: int = 0
    errors: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    classes: Counter[str] = field(default_factory=Counter)
    recent_labels: deque[str] = field(default_factory=lambda: deque(maxlen=DRIFT_WINDOW))
    recent_confidence: deque[float] = field(default_factory=lambda: deque(maxlen=DRIFT_WINDOW))

    def mean_confidence(self) -> float | None:
        return sum(self.recent_confidence) / len(self.recent_confidence) if self.recent_confidence else None

    def drift(self, reference: Reference | None) -> float | None:
        """PSI of the window's predicted classes against the reference's test-set shares (None: no baseline yet)."""
        if reference is None or not self.recent_labels:
            return None
        return psi(reference.class_share, shares(self.recent_labels))


def _key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", text)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class ServingStats:
    """Counts per model version; `metrics()` names them `requests.v3`, `latency_p95_ms.v3`, `class_count.v3.cat`."""

    def __init__(self, drift_window: int = DRIFT_WINDOW) -> None:
        self.versions: dict[str, VersionStats] = {}
        self.references: dict[str, Reference | None] = {}  # version -> its drift baseline (None: it has none)
        self.drift_window = drift_window

    def record(
        self, version: str, latency_ms: float, labels: list[str], error: bool = False, confidences: list[float] | None = None
    ) -> None:
        stats = self.versions.get(str(version))
        if stats is None:
            w = self.drift_window
            stats = self.versions[str(version)] = VersionStats(recent_labels=deque(maxlen=w), recent_confidence=deque(maxlen=w))
        stats.requests += 1
        stats.errors += int(error)
        stats.images += len(labels)
        stats.latencies_ms.append(latency_ms)
        stats.classes.update(labels)
        stats.recent_labels.extend(labels)
        stats.recent_confidence.extend(confidences or [])

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for version, s in self.versions.items():
            v = f"v{version}"
            out[f"requests.{v}"] = s.requests
            out[f"images.{v}"] = s.images
            out[f"errors.{v}"] = s.errors
            if s.latencies_ms:
                lat = list(s.latencies_ms)
                out[f"latency_p50_ms.{v}"] = _percentile(lat, 0.5)
                out[f"latency_p95_ms.{v}"] = _percentile(lat, 0.95)
                out[f"latency_mean_ms.{v}"] = sum(lat) / len(lat)
            for label, n in s.classes.items():
                out[f"class_count.{v}.{_key(label)}"] = n
            confidence, drift = s.mean_confidence(), s.drift(self.references.get(version))
            if confidence is not None:
                out[f"mean_confidence.{v}"] = confidence
            if drift is not None:
                out[f"drift.{v}"] = drift
        return out
