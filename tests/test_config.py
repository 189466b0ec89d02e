"""Every YAML in conf/ composes and validates; search spaces build; bad values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from raymlops import config as C
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
    assert cfg["name"] == name
    space = param_space(cfg)
    assert set(space) == set(cfg["search_space"])
    assert build_scheduler(cfg) is not None
    if cfg["search_alg"]["name"] == "optuna":
        assert build_search_alg(cfg, 2) is not None
    first_line = (CONF / "experiment" / f"{name}.yaml").read_text().splitlines()
    assert any("python -m raymlops." in line for line in first_line[:4]), "each experiment YAML starts with its command"


@pytest.mark.parametrize(("group", "choice"), GROUP_CHOICES)
def test_every_group_choice_composes(group: str, choice: str) -> None:
    extra = ["data.root=/tmp/images"] if (group, choice) == ("data", "imagefolder") else []
    cfg = C.compose(["+experiment=smoke", f"{group}={choice}", *extra])
    key = "name" if group != "mlflow" else "tracking_uri"
    assert cfg[group][key]


def test_plain_dict_and_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = C.compose(["+experiment=smoke", "storage_path=rel/results"])
    assert type(cfg) is dict and type(cfg["train"]) is dict
    assert cfg["storage_path"] == str(tmp_path / "rel" / "results")
    assert cfg["mlflow"]["tracking_uri"].startswith("sqlite:////")
    assert cfg["overrides"] == ["+experiment=smoke", "storage_path=rel/results"]


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
