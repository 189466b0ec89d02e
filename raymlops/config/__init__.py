"""The config layer: the typed schema, compose conf/ onto it with Hydra, validate it before Ray, dotted keys, and
the run contract.

`compose(overrides)` is the way in: it returns the validated, typed Config (config.schema) that crosses into Ray;
`to_dict` / `from_dict` turn it into plain values (checkpoints, MLflow params) and back.
"""

from raymlops.config.compose import compose, resolve_paths
from raymlops.config.contract import RunContract
from raymlops.config.dotted import apply_overrides, flatten, get_dotted, set_dotted
from raymlops.config.keys import conf_dir, experiments, unknown_key_message
from raymlops.config.schema import Config
from raymlops.config.search_space import normalise_space, validate_space
from raymlops.config.tree import from_dict, to_dict, with_overrides
from raymlops.config.validate import validate

__all__ = [
    "Config",
    "RunContract",
    "apply_overrides",
    "compose",
    "conf_dir",
    "experiments",
    "flatten",
    "from_dict",
    "get_dotted",
    "normalise_space",
    "resolve_paths",
    "set_dotted",
    "to_dict",
    "unknown_key_message",
    "validate",
    "validate_space",
    "with_overrides",
]
