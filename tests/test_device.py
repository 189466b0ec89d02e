"""train.device: CUDA, then Apple's MPS, then the CPU for the single-process paths; DDP on MPS refused before Ray.

There is no Mac or GPU here: the backends' availability is patched, the choice and the refusals are real."""

from __future__ import annotations

import pytest
import torch

from raymlops import config as C
from raymlops.core.errors import UserError
from raymlops.launch.preflight import check_device
from raymlops.models import device as D


def _has(monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize(
    ("cuda", "mps", "gpu_allowed", "expected"),
    [
        (True, False, True, "cuda"),
        (True, True, True, "cuda"),  # a CUDA box first
        (True, True, False, "mps"),  # Ray reserved no GPU for this run: not its CUDA device
        (False, True, True, "mps"),  # Apple silicon
        (False, False, True, "cpu"),
    ],
)
def test_auto_takes_cuda_then_mps_then_cpu(
    monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool, gpu_allowed: bool, expected: str
) -> None:
    _has(monkeypatch, cuda, mps)
    assert D.choose_device("auto", gpu_allowed=gpu_allowed).type == expected


def test_an_explicit_device_is_taken_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    _has(monkeypatch, cuda=True, mps=True)
    assert D.choose_device("cpu").type == "cpu"
    assert D.choose_device("mps").type == "mps"


def test_ddp_on_mps_is_refused_at_compose_with_what_to_use() -> None:
    with pytest.raises(UserError, match=r"train.device=mps with scaling.num_workers=2.*train.device=cpu"):
        C.compose(["+experiment=smoke", "train.device=mps", "scaling.num_workers=2"])
    with pytest.raises(UserError, match=r"scaling\.use_gpu=false"):
        C.compose(["+experiment=smoke", "train.device=cuda", "scaling.use_gpu=false"])
    with pytest.raises(UserError, match=r"Did you mean 'cpu'\? Choose one of: auto, cuda, mps, cpu"):
        C.compose(["+experiment=smoke", "train.device=tpu"])
    assert C.compose(["+experiment=smoke", "train.device=mps"]).train.device == "mps"  # 1 worker: fine


def test_a_device_this_machine_lacks_is_refused_before_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    _has(monkeypatch, cuda=False, mps=False)
    with pytest.raises(UserError, match=r"no MPS device\. Use train.device=cpu"):
        check_device(C.compose(["+experiment=smoke", "train.device=mps"]))
    _has(monkeypatch, cuda=False, mps=True)
    check_device(C.compose(["+experiment=smoke", "train.device=mps"]))  # a Mac: goes on
