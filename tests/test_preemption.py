"""A preemption notice inside the training loop, without a cluster: the console line, and when the loop asks Ray
(after each checkpointed epoch but the last). The live check, `ray drain-node` on a token-auth loopback cluster,
is tests/test_node_loss.py::test_a_preemption_notice_moves_the_trial_before_the_node_goes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from ray.train import PreemptionInfo

from raymlops.config import compose
from raymlops.search.drain_moves import move_notice
from raymlops.training.loop import preemption_notice, run_training
from raymlops.training.session import Session


def test_the_notice_says_which_node_when_and_where_the_trial_goes_on() -> None:
    info = PreemptionInfo(deadline_ms=1_020_000, preempted_node_to_ranks={"0123456789abcdef0123": [1]})
    line = preemption_notice(info, 2, "r1", now_s=1_000.0)
    assert line.startswith("node 0123456789ab is being preempted (gone in 20 s): trial checkpointed at epoch 2")
    assert "(MLflow run r1)" in line and "resumes from epoch 3 on the nodes left" in line
    assert "(gone soon)" in preemption_notice(PreemptionInfo(deadline_ms=None, preempted_node_to_ranks={}), 1, None)
    # the same line when a search's scheduler moves a 1-worker trial, which it names
    moved = move_notice(
        "0123456789abcdef0123", 1_020_000, SimpleNamespace(trial_id="t1"), {"epoch": 2, "mlflow_run_id": "r1"}, 1_000.0
    )  # type: ignore[arg-type]
    assert moved == line.replace(": trial checkpointed", ": trial t1 checkpointed")


def test_the_loop_asks_after_each_epoch_but_the_last() -> None:
    config = compose(["+experiment=smoke", "train.epochs=3", "data.num_train=256", "data.num_test=64", "model.width=8"])
    asked: list[int] = []
    reported: list[int] = []

    def session(preemption: Any) -> Session:
        return Session(0, 1, torch.device("cpu"), lambda m, _ckpt: reported.append(int(m["epoch"])), preemption=preemption)

    run_training(config, None, session(lambda: asked.append(len(reported))))  # no notice: trains through
    assert reported == [1, 2, 3] and asked == [1, 2], "asked after epochs 1 and 2; the last epoch needs no move"
    reported.clear()
    info = PreemptionInfo(deadline_ms=None, preempted_node_to_ranks={"n": [0]})
    one_epoch = compose(["+experiment=smoke", "train.epochs=1", "data.num_train=256", "data.num_test=64", "model.width=8"])
    run_training(one_epoch, None, session(lambda: info))  # a notice, but nothing left to train: it just ends
    assert reported == [1]
