"""Search beyond ASHA, through a real Ray Tune on CPU and read back from MLflow: PBT with exploits that MLflow
follows, a multi-objective (accuracy vs latency) Optuna search with its Pareto front and registry rule, and a
second Optuna search warm-started from the first. Plus the cheap pieces without Ray (front, rule, bounds)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from conftest import overrides

from raymlops import tracking
from raymlops.core import names
from raymlops.post import pareto, population
from raymlops.search.population import clip_to_space
from raymlops.tune import main as tune_main

TINY = ["+experiment=smoke", "data.num_train=600", "data.num_test=200", "train.log_every_n_steps=0"]


def _children(c: Any, parent_id: str) -> list[Any]:
    exp = c.get_run(parent_id).info.experiment_id
    return c.search_runs([exp], filter_string=f"tags.`{names.TAG_PARENT}` = '{parent_id}'")


@pytest.mark.ray
def test_pbt_exploits_are_tracked_and_the_schedule_registered(ray_session: Any, store: dict[str, str]) -> None:
    """2 trials, 2 epochs, perturbed every epoch: the worse trial copies the better one at epoch 1 (never at the
    last); each child run keeps its own steps (none twice), its lr schedule as hp/optim.lr and one tag per exploit."""
    args = [*TINY, "scheduler=pbt", "tune.num_samples=2", "train.epochs=2", "scheduler.quantile_fraction=0.5"]
    summary = tune_main(overrides(store, *args, "checkpoint.num_to_keep=4", "optim.lr=0.1"))
    uri = store["mlflow.tracking_uri"]
    c = tracking.client(uri)
    children = _children(c, summary["parent_run_id"])
    trial_ids = {ch.data.tags[names.TAG_RUN_KEY].rsplit("/", 1)[-1] for ch in children}
    assert len(children) == 2 and len(trial_ids) == 2
    exploits = []
    for child in children:
        steps = [m.step for m in c.get_metric_history(child.info.run_id, "val_acc")]
        assert sorted(steps) == [1, 2], "each epoch logged once, in the trial's own run"
        schedule = population.schedule(uri, child.info.run_id)
        assert schedule[0]["epoch"] == 0 and "optim.lr" in schedule[0]
        for key, value in child.data.tags.items():
            if key.startswith(names.TAG_EXPLOIT_PREFIX):
                record = json.loads(value)
                exploits.append(record)
                assert record["donor_trial"] in trial_ids - {child.data.tags[names.TAG_RUN_KEY].rsplit("/", 1)[-1]}
                assert record["new"]["optim.lr"] == pytest.approx(
                    next(p["optim.lr"] for p in schedule if p["epoch"] == record["epoch"])
                )
                assert record["old"] and record["donor"]
    assert [e["epoch"] for e in exploits] == [1], "one exploit per perturbation, none at the last epoch"
    parent = c.get_run(summary["parent_run_id"])
    assert parent.data.metrics["pbt_exploits"] == 1
    paths = {a.path for a in c.list_artifacts(parent.info.run_id, "search")}
    assert {"search/pbt_lineage.json", "search/pbt_lineage.png", "search/best_trial_schedule.json"} <= paths
    version = c.get_model_version("raymlops-smoke", summary["registered_version"])
    best_run = next(ch for ch in children if ch.data.tags[names.TAG_RUN_KEY].endswith(summary["best_trial_id"]))
    assert json.loads(version.tags["raymlops.hp_schedule"]) == population.schedule(uri, best_run.info.run_id)


@pytest.mark.ray
def test_pareto_search_then_a_warm_started_one(
    ray_session: Any, store: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A multi-objective Optuna search (val_acc up, latency_ms down) leaves its Pareto front and registers by the
    rule; a second one, warm-started from it (`latest`), has the first one's trials in its sampler, names its
    source, and registers nothing when no trial meets its rule."""
    goals = ["tune.objectives={val_acc:max,latency_ms:min}", "search_alg=optuna", "search_alg.n_startup_trials=2"]
    first = tune_main(
        overrides(
            store,
            *TINY,
            *goals,
            "scheduler=fifo",
            "tune.num_samples=3",
            "train.epochs=1",
            "tune.latency_runs=5",
            "+search_space.model.width={type:choice,values:[8,16]}",
            "registry.select={metric:val_acc,constraints:{latency_ms:{le:1000}}}",
        )
    )
    uri = store["mlflow.tracking_uri"]
    c = tracking.client(uri)
    children = _children(c, first["parent_run_id"])
    assert len(children) == 3 and all({"latency_ms", "params_m"} <= set(ch.data.metrics) for ch in children)
    front_csv = Path(c.download_artifacts(first["parent_run_id"], "search/pareto_front.csv", str(store["storage_path"])))
    lines = front_csv.read_text().splitlines()
    assert lines[0].startswith("trial_id,val_acc,latency_ms,on_front") and len(lines) == 4 and "True" in front_csv.read_text()
    assert "search/pareto_front.png" in {a.path for a in c.list_artifacts(first["parent_run_id"], "search")}
    version = c.get_model_version("raymlops-smoke", first["registered_version"])
    assert version.tags[names.TAG_SELECT_RULE].startswith("best val_acc (max) with latency_ms <= 1000")

    capsys.readouterr()
    second = tune_main(
        overrides(
            store,
            *TINY,
            *goals,
            "scheduler=fifo",
            "tune.num_samples=1",
            "train.epochs=1",
            "tune.latency_runs=5",
            "search_alg.warm_start=latest",
            "registry.select={metric:val_acc,constraints:{latency_ms:{le:0.000001}}}",
        )
    )
    captured = capsys.readouterr()
    out = captured.out + captured.err  # raymlops logs to stderr (core.console.setup_logging)
    assert "Warm start: 3 trial(s)" in out and "Nothing registered: no trial meets latency_ms <= 1e-06" in out
    assert "warm start: 'model.width' of search run" in out and "not in this search space; skipped" in out
    parent = c.get_run(second["parent_run_id"])
    assert parent.data.tags[names.TAG_WARM_START] == first["parent_run_id"]
    assert second.get("registered_version") is None and len(c.search_model_versions("name='raymlops-smoke'")) == 1
    state_file = sorted(Path(store["storage_path"], second["search"]).glob("searcher-state-*.pkl"))[-1]
    study = pickle.loads(state_file.read_bytes())["_ot_study"]  # OptunaSearch.save: its __dict__
    told = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(told) == 4, "the first search's 3 trials, then this search's one"
    first_lrs = sorted(float(ch.data.params["optim.lr"]) for ch in children)
    assert sorted(t.params["optim.lr"] for t in told[:3]) == pytest.approx(first_lrs)


def test_pareto_front_and_rule_without_ray() -> None:
    goals = {"val_acc": "max", "latency_ms": "min"}
    rows = [
        {"trial_id": "a", "val_acc": 0.9, "latency_ms": 9.0},
        {"trial_id": "b", "val_acc": 0.8, "latency_ms": 2.0},
        {"trial_id": "c", "val_acc": 0.7, "latency_ms": 5.0},  # dominated by b
        {"trial_id": "d", "val_acc": 0.6, "latency_ms": None},  # never reported latency: not on any front
    ]
    assert [r["trial_id"] for r in pareto.pareto_front(rows, goals)] == ["a", "b"]
    rule = {"metric": "val_acc", "mode": "max", "constraints": {"latency_ms": {"le": 5.0}}}
    chosen, why = pareto.select(rows, rule)
    assert chosen is not None and chosen["trial_id"] == "b" and why.startswith("best val_acc (max) with latency_ms <= 5.0")
    chosen, why = pareto.select(rows, {**rule, "constraints": {"latency_ms": {"lt": 1.0}}})
    assert chosen is None and "no trial meets latency_ms < 1.0 (seen: latency_ms from 2 to 9)" in why
    chosen, why = pareto.select(rows, {**rule, "constraints": {"params_m": {"le": 1.0}}})
    assert chosen is None and "no trial reported params_m" in why
    assert pareto.missing_objectives(rows, {"val_acc": "max", "params_m": "min"}) == ["params_m"]


def test_explore_stays_inside_the_search_space() -> None:
    space = {
        "optim.lr": {"type": "loguniform", "lower": 0.01, "upper": 0.1},
        "model.width": {"type": "randint", "lower": 8, "upper": 32},
        "train.label_smoothing": {"type": "quniform", "lower": 0.0, "upper": 0.3, "q": 0.05},
        "train.batch_size": {"type": "choice", "values": [64, 128]},
    }
    new = clip_to_space({"optim.lr": 0.12, "model.width": 40.4, "train.label_smoothing": 0.123, "train.batch_size": 128}, space)
    assert new == {"optim.lr": 0.1, "model.width": 31, "train.label_smoothing": pytest.approx(0.1), "train.batch_size": 128}


def test_warm_start_values_outside_the_new_space_are_skipped() -> None:
    from raymlops.search.warm_start import _convert

    assert _convert("0.05", {"type": "loguniform", "lower": 0.01, "upper": 0.1}) == 0.05
    assert _convert("0.5", {"type": "loguniform", "lower": 0.01, "upper": 0.1}) is None
    assert _convert("32", {"type": "randint", "lower": 8, "upper": 32}) is None  # upper is exclusive
    assert _convert("16", {"type": "choice", "values": [8, 16]}) == 16
    assert _convert("resnet18", {"type": "choice", "values": ["fast_cnn"]}) is None
    assert _convert("0.12", {"type": "quniform", "lower": 0.0, "upper": 0.3, "q": 0.05}) is None  # off the grid
