"""cluster/ YAMLs: Ray's own schema validation (offline) and the properties the docs promise."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parent.parent / "cluster"


def _load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((CLUSTER / name).read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("name", ["local.yaml", "aws.yaml"])
def test_passes_rays_schema(name: str) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(_load(name))))


@pytest.mark.parametrize("name", ["local.yaml", "aws.yaml", "kuberay.yaml"])
def test_starts_with_the_command_that_uses_it(name: str) -> None:
    head = (CLUSTER / name).read_text().splitlines()[:4]
    assert any("ray up" in line or "kubectl apply" in line for line in head)


def test_aws_gpu_workers_scale_from_zero_and_only_ssh_is_open() -> None:
    cfg = _load("aws.yaml")
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert "GPU" not in head["resources"], "the head runs drivers only"
    gpu_types = [t for t in types.values() if t["resources"].get("GPU")]
    assert gpu_types and all(t["min_workers"] == 0 and t["max_workers"] >= 1 for t in gpu_types)
    assert any(t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot" for t in gpu_types)
    assert cfg["idle_timeout_minutes"] > 0
    perms = cfg["provider"]["security_group"]["IpPermissions"]
    assert [(p["FromPort"], p["ToPort"]) for p in perms] == [(22, 22)]
    for t in types.values():
        assert "IamInstanceProfile" in t["node_config"], "IAM instance profile, not keys"
    text = (CLUSTER / "aws.yaml").read_text()
    assert "aws_secret_access_key" not in text.lower() and "AWS_SECRET" not in text
    setup = " ".join(cfg["setup_commands"])
    for pin in ("ray[tune,train,default]==2.60.0", "torch==2.14.1", "mlflow==3.17.2", "MLFLOW_TRACKING_URI", "s3://"):
        assert pin in setup, pin
    assert "--dashboard-host=127.0.0.1" in " ".join(cfg["head_start_ray_commands"])


def test_kuberay_manifest() -> None:
    cfg = _load("kuberay.yaml")
    assert cfg["kind"] == "RayCluster" and cfg["spec"]["enableInTreeAutoscaling"] is True
    assert cfg["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    groups = cfg["spec"]["workerGroupSpecs"]
    gpu = [g for g in groups if g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu")]
    assert gpu and all(g["minReplicas"] == 0 and g["maxReplicas"] >= 1 for g in gpu)
    containers = [cfg["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]] + [g["template"]["spec"]["containers"][0] for g in groups]
    for env in (e for c in containers for e in c.get("env", [])):
        if "PASSWORD" in env["name"] or "TOKEN" in env["name"]:
            assert "value" not in env and env["valueFrom"]["secretKeyRef"], "credentials come from Kubernetes secrets"
