"""Every YAML in conf/ composes and validates; search spaces build; bad values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from raymlops import config as C
from raymlops.config.schema import ModelName, TrainConfig
from raymlops.core.errors import UserError
from raymlops.search.param_space import param_space
from raymlops.search.schedulers import build_scheduler
from raymlops.search.searchers import build_search_alg

CONF = Path(__file__).resolve().parent.parent / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
GROUP_CHOICES = [
    (g.name, p.stem) for g in sorted(CONF.iterdir()) if g.is_dir() and g.name != "experiment" for p in sorted(g.glob("*.yaml"))
]


def test_experiments_listed() -> None:
    required = {
        "quickstart",
        "smoke",
        "cifar10_100trials",
        "cifar10_optuna",
        "cifar10_hyperband",
        "cifar100_resnet18",
        "fashion_mnist_quick",
        "cifar10_pbt",
        "cifar10_pareto",
    }
    assert required <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_space_builds(name: str) -> None:
    extra = ["data.root=/tmp/images"] if name == "imagefolder" else []
    cfg = C.compose([f"+experiment={name}", *extra])
    assert cfg.name == name
    space = param_space(cfg.search_space)
    assert set(space) == set(cfg.search_space)
    assert build_scheduler(cfg) is not None
    if cfg.search_alg.name == "optuna":
        assert build_search_alg(cfg, 2) is not None
    first_line = (CONF / "experiment" / f"{name}.yaml").read_text().splitlines()
    assert any("python -m raymlops." in line for line in first_line[:4]), "each experiment YAML starts with its command"


@pytest.mark.parametrize(("group", "choice"), GROUP_CHOICES)
def test_every_group_choice_composes(group: str, choice: str) -> None:
    extra = ["data.root=/tmp/images"] if (group, choice) == ("data", "imagefolder") else []
    cfg = C.compose(["+experiment=smoke", f"{group}={choice}", *extra])
    key = "name" if group != "mlflow" else "tracking_uri"
    assert getattr(getattr(cfg, group), key)


def test_typed_config_and_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = C.compose(["+experiment=smoke", "storage_path=rel/results"])
    assert type(cfg) is C.Config and type(cfg.train) is TrainConfig and cfg.model.name is ModelName.fast_cnn
    assert cfg.storage_path == str(tmp_path / "rel" / "results")
    assert cfg.mlflow.tracking_uri.startswith("sqlite:////")
    assert cfg.overrides == ["+experiment=smoke", "storage_path=rel/results"]
    plain = C.to_dict(C.compose(["+experiment=smoke"]))  # checkpoints and MLflow params: plain values only
    assert type(plain["train"]) is dict and type(plain["model"]["name"]) is str
    assert C.from_dict(C.Config, plain) == C.compose(["+experiment=smoke"])
    trial = C.with_overrides(cfg, {"optim.lr": 0.5, "model.name": "resnet18"})
    assert trial.optim.lr == 0.5 and trial.model.name is ModelName.resnet18 and cfg.optim.lr != 0.5
    pareto = C.compose(["+experiment=cifar10_pareto"])  # an Optional section (registry.select) stays typed
    select = C.with_overrides(pareto, {"optim.lr": 0.1}).registry.select
    assert select is not None and select.metric == "val_acc" and select.constraints == {"latency_ms": {"le": 3.0}}


def test_the_schema_refuses_bad_types_and_keys_at_compose() -> None:
    cases = {
        "train.epochs=three": ["train.epochs='three'", "an integer", "train.epochs=10"],
        "scaling.warm_workers=maybe": ["scaling.warm_workers='maybe'", "true or false"],
        "tune.mode=maximize": ["tune.mode='maximize'", "max or min"],
        "optim.name=adam": ["optim.name='adam'", "adamw"],
        "+scaling.num_gpus=1": ["'scaling.num_gpus'", "scaling.use_gpu"],
        "registry.select={metric:val_acc,bound:3}": ["registry.select.bound"],
    }
    for override, words in cases.items():
        with pytest.raises(UserError) as err:
            C.compose(["+experiment=smoke", override])
        assert all(w in str(err.value) for w in words), (override, str(err.value))


def test_mapping_overrides_replace_what_the_experiment_set() -> None:
    cfg = C.compose(["+experiment=cifar10_pareto", "tune.objectives={val_acc:max,params_m:min}", "search_space={}"])
    assert cfg.tune.objectives == {"val_acc": "max", "params_m": "min"} and cfg.search_space == {}
    assert C.compose(["+experiment=cifar10_pareto", "~search_space"]).search_space == {}
    select = C.compose(["+experiment=smoke", "registry.select={metric:val_loss}"]).registry.select
    assert select is not None and select.metric == "val_loss" and select.constraints == {}


def test_the_reference_is_generated_from_the_schema() -> None:
    from raymlops.config import reference

    on_disk = (CONF.parent / "docs" / "config-reference.md").read_text()
    assert on_disk == reference.markdown(), "docs/config-reference.md is stale: python -m raymlops.config.reference"


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("model.name=resnet50", "model.name"),
        ("data.name=imagenet", "data.name"),
        ("optim.lr=0", "optim.lr"),
        ("optim.lr=-0.1", "optim.lr"),
        ("train.epochs=0", "train.epochs"),
        ("train.batch_size=-8", "train.batch_size"),
        ("scaling.num_workers=3", "divide evenly"),
        ("tune.num_samples=0", "tune.num_samples"),
        ("tune.metric=accuracy", "never reported"),
        ("optim.lrr=0.1", "optim.lr"),
        ("scheduler=asha2", "scheduler"),
        ("+search_space.optim.lr={type:loguniform,lower:0,upper:1}", "lower > 0"),
        ("+search_space.optim.lr={type:uniform,lower:0.5,upper:0.1}", "must be <"),
        ("+search_space.model.name={type:choice,values:[vgg]}", "vgg"),
    ],
)
def test_bad_values_are_refused_with_the_key(override: str, needle: str) -> None:
    with pytest.raises((UserError, SystemExit)) as err:
        C.compose(["+experiment=smoke", override])
    assert needle in str(err.value)


def test_flatten_and_apply_overrides() -> None:
    tree = {"optim": {"lr": 0.1, "name": "sgd"}, "train": {"epochs": 2}}
    assert C.flatten(tree) == {"optim.lr": 0.1, "optim.name": "sgd", "train.epochs": 2}
    new = C.apply_overrides(tree, {"optim.lr": 0.5})
    assert new["optim"]["lr"] == 0.5 and tree["optim"]["lr"] == 0.1
