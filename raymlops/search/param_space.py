"""The YAML search space as ray.tune samplers: flat dotted keys, applied onto the config per trial."""

from __future__ import annotations

from typing import Any

from ray import tune


def param_space(search_space: dict[str, Any]) -> dict[str, Any]:
    """{'optim.lr': tune.loguniform(...), ...}: flat dotted keys, applied onto the config per trial."""

    samplers = {
        "uniform": lambda s: tune.uniform(s["lower"], s["upper"]),
        "loguniform": lambda s: tune.loguniform(s["lower"], s["upper"]),
        "quniform": lambda s: tune.quniform(s["lower"], s["upper"], s["q"]),
        "randint": lambda s: tune.randint(s["lower"], s["upper"]),
        "choice": lambda s: tune.choice(s["values"]),
    }
    return {key: samplers[spec["type"]](spec) for key, spec in search_space.items()}
