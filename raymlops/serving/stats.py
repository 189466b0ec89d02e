"""Per-version serving statistics (requests, errors, latency percentiles, predicted-class counts) as MLflow metrics."""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass, field

LATENCY_WINDOW = 10_000  # latencies kept per version for the percentiles


@dataclass
class VersionStats:
    requests: int = 0
    images: int = 0
    errors: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    classes: Counter[str] = field(default_factory=Counter)


def _key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", text)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class ServingStats:
    """Counts per model version; `metrics()` names them `requests.v3`, `latency_p95_ms.v3`, `class_count.v3.cat`."""

    def __init__(self) -> None:
        self.versions: dict[str, VersionStats] = {}

    def record(self, version: str, latency_ms: float, labels: list[str], error: bool = False) -> None:
        stats = self.versions.setdefault(str(version), VersionStats())
        stats.requests += 1
        stats.errors += int(error)
        stats.images += len(labels)
        stats.latencies_ms.append(latency_ms)
        stats.classes.update(labels)

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
        return out
