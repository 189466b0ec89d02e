"""The config layer: compose conf/ with Hydra, validate it before Ray, dotted keys, and the run contract.

`compose(overrides)` is the way in: it returns the validated plain dict that crosses into Ray.
"""

from raymlops.config.compose import compose, resolve_paths
from raymlops.config.contract import RunContract
from raymlops.config.dotted import apply_overrides, flatten, get_dotted, set_dotted
from raymlops.config.keys import conf_dir, experiments, unknown_key_message
from raymlops.config.search_space import normalise_space, validate_space
from raymlops.config.validate import validate

__all__ = [
    "RunContract",
    "apply_overrides",
    "compose",
    "conf_dir",
    "experiments",
    "flatten",
    "get_dotted",
    "normalise_space",
    "resolve_paths",
    "set_dotted",
    "unknown_key_message",
    "validate",
    "validate_space",
]
