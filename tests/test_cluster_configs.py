"""cluster/ YAMLs: Ray's own schema validation (offline) and the properties the docs promise."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.cluster  # fast (no Ray cluster): also part of `make test-fast`

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "cluster"
COMMANDS = {
    "local.yaml": "ray up cluster/local.yaml",
    "aws.yaml": "ray up cluster/aws.yaml",
    "kuberay.yaml": "kubectl apply -f cluster/kuberay.yaml",
}


def _load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((CLUSTER / name).read_text())
    assert isinstance(data, dict)
    return data


def _pins() -> list[str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if "==" in d]


@pytest.mark.parametrize("name", ["local.yaml", "aws.yaml"])
def test_passes_rays_schema(name: str) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(_load(name))))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_starts_with_the_command_that_uses_it(name: str) -> None:
    lines = (CLUSTER / name).read_text().splitlines()
    header = lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))]
    assert header and lines[0].startswith("# ")
    assert any(COMMANDS[name] in line for line in header), header


@pytest.mark.parametrize("name", ["local.yaml", "aws.yaml"])
def test_every_node_runs_with_token_auth_and_the_token_is_not_in_the_yaml(name: str) -> None:
    cfg = _load(name)
    starts = [c for key in ("head_start_ray_commands", "worker_start_ray_commands") for c in cfg[key] if "ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token ray start" in c for c in starts), starts
    assert cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token", "the launcher copies the token to every node"
    assert any("export RAY_AUTH_MODE=token" in c for c in cfg["setup_commands"]), "shells and jobs on a node use the token"
    assert "RAY_AUTH_TOKEN" not in (CLUSTER / name).read_text()


def test_local_yaml_marks_every_field_a_user_edits() -> None:
    cfg = _load("local.yaml")
    assert cfg["provider"]["type"] == "local" and cfg["provider"]["head_ip"] and isinstance(cfg["provider"]["worker_ips"], list)
    assert cfg["auth"]["ssh_user"] and cfg["auth"]["ssh_private_key"]
    text = (CLUSTER / "local.yaml").read_text()
    for key in ("cluster_name:", "head_ip:", "worker_ips:", "ssh_user:", "ssh_private_key:", "max_workers:"):
        line = next(line for line in text.splitlines() if line.strip().startswith(key))
        assert "# EDIT" in line, line
    assert "--dashboard-host=127.0.0.1" in " ".join(cfg["head_start_ray_commands"])


def test_aws_gpu_workers_scale_from_zero_and_only_ssh_is_open() -> None:
    cfg = _load("aws.yaml")
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and "InstanceMarketOptions" not in head["node_config"], "on-demand, drivers only"
    gpu_types = [t for t in types.values() if t["resources"].get("GPU")]
    assert gpu_types and all(t["min_workers"] == 0 and t["max_workers"] >= 1 for t in gpu_types)
    assert any(t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot" for t in gpu_types)
    assert all(isinstance(t["resources"].get("CPU"), int) for t in types.values()), "explicit resources: no EC2 look-ups"
    assert 0 < cfg["idle_timeout_minutes"] <= 15
    # Ray always adds SSH from anywhere + intra-cluster traffic; anything here would be an extra (or duplicate) rule.
    assert "IpPermissions" not in cfg["provider"]["security_group"]
    for t in types.values():
        assert t["node_config"]["IamInstanceProfile"]["Name"], "IAM instance profile, not keys"
    text = (CLUSTER / "aws.yaml").read_text()
    assert not re.search(r"aws_(secret_)?access_key|AWS_SECRET|AKIA[0-9A-Z]{16}", text, re.IGNORECASE)
    assert "--dashboard-host=127.0.0.1" in " ".join(cfg["head_start_ray_commands"])


def test_aws_setup_installs_the_pinned_stack_and_the_shared_environment() -> None:
    cfg = _load("aws.yaml")
    setup = " ".join(cfg["setup_commands"])
    for pin in _pins():  # same package and version; extras may differ (the node set-up needs no server extras)
        name, version = re.sub(r"\[.*\]", "", pin).split("==")
        assert re.search(rf'"{re.escape(name)}(\[[^\]]*\])?=={re.escape(version)}"', setup), (
            f"{pin} (pyproject.toml) is not pinned on the nodes"
        )
    assert "-e ~/raymlops" in setup and "--python 3.11" in setup
    assert re.search(r"MLFLOW_TRACKING_URI=.*RAYMLOPS_STORAGE_PATH=", setup) and " s3://" in setup
    assert cfg["head_setup_commands"] == [], "Ray's default head set-up (pip into the system Python) is replaced"


def test_aws_yaml_bootstraps_and_launches_every_node_type_against_an_ec2_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray's own AWS bootstrap (IAM, key pair, subnets, security group) and node launches, run against
    moto's EC2/IAM: botocore checks every request against the real AWS API model, moto applies it."""
    import boto3
    from moto import mock_aws
    from ray.autoscaler._private.aws.config import bootstrap_aws
    from ray.autoscaler._private.aws.node_provider import AWSNodeProvider
    from ray.autoscaler._private.util import prepare_config
    from ray.autoscaler.tags import TAG_RAY_NODE_KIND, TAG_RAY_NODE_NAME, TAG_RAY_USER_NODE_TYPE

    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    for var, value in {"HOME": str(tmp_path), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(var, value)  # HOME: the generated SSH key lands in tmp_path/.ssh
    cfg = prepare_config(_load("aws.yaml"))
    region = cfg["provider"]["region"]
    with mock_aws():
        iam = boto3.client("iam", region_name=region)
        for name in ("raymlops-head", "raymlops-worker"):  # created once by the user (docs/cluster.md)
            iam.create_role(RoleName=name, AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": []}')
            iam.create_instance_profile(InstanceProfileName=name)
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        boot = bootstrap_aws(cfg)
        provider = AWSNodeProvider(boot["provider"], boot["cluster_name"])
        for name, node_type in boot["available_node_types"].items():
            kind = "head" if name == boot["head_node_type"] else "worker"
            provider.create_node(
                node_type["node_config"], {TAG_RAY_NODE_KIND: kind, TAG_RAY_USER_NODE_TYPE: name, TAG_RAY_NODE_NAME: name}, 1
            )
        ec2 = boto3.client("ec2", region_name=region)
        (group,) = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["raymlops-ssh-only"]}])[
            "SecurityGroups"
        ]
        instances = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]

    from_outside = [
        (p.get("FromPort"), p.get("ToPort"), p["IpProtocol"]) for p in group["IpPermissions"] if p["IpRanges"] or p["Ipv6Ranges"]
    ]
    assert from_outside == [(22, 22, "tcp")], group["IpPermissions"]
    others = [p for p in group["IpPermissions"] if not (p["IpRanges"] or p["Ipv6Ranges"])]
    assert [g["GroupId"] for p in others for g in p["UserIdGroupPairs"]] == [group["GroupId"]], "only the cluster's own nodes"
    launched = {next(t["Value"] for t in i["Tags"] if t["Key"] == TAG_RAY_USER_NODE_TYPE): i for i in instances}
    assert set(launched) == set(cfg["available_node_types"])
    for name, inst in launched.items():
        node_config = cfg["available_node_types"][name]["node_config"]
        assert inst["InstanceType"] == node_config["InstanceType"]
        assert inst["IamInstanceProfile"]["Arn"].endswith("/" + node_config["IamInstanceProfile"]["Name"])
        assert [g["GroupName"] for g in inst["SecurityGroups"]] == ["raymlops-ssh-only"]
        spot = node_config.get("InstanceMarketOptions", {}).get("MarketType") == "spot"
        assert (inst.get("InstanceLifecycle") == "spot") == spot, name
    assert launched[cfg["head_node_type"]].get("InstanceLifecycle") is None, "the head is on-demand"


def test_raymlops_reads_the_gpu_node_types_from_the_autoscaler_yaml() -> None:
    """On a `ray up` head the driver reads ~/ray_bootstrap_config.yaml: GPUs count before any GPU node exists."""
    from raymlops.config.schema import Config, RayConfig
    from raymlops.launch import cluster

    config = Config(ray=RayConfig(autoscaling_config=str(CLUSTER / "aws.yaml")))
    types = cluster.autoscaler_node_types(config)
    assert ({"CPU": 0.0}, 1) in types, "the head counts once"
    assert ({"CPU": 4.0, "GPU": 1.0}, 8) in types
    assert cluster.autoscaler_max(config)["GPU"] >= 8
    assert cluster.autoscaler_node_types(Config(ray=RayConfig(autoscaling_config=str(CLUSTER / "missing.yaml")))) == []


def test_kuberay_manifest() -> None:
    cfg = _load("kuberay.yaml")
    spec = cfg["spec"]
    assert cfg["kind"] == "RayCluster" and spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"] == {"mode": "token"}, "KubeRay runs every container with a token from a Secret"
    assert spec["rayVersion"] == "2.60.0" and 0 < spec["autoscalerOptions"]["idleTimeoutSeconds"] <= 900
    head = spec["headGroupSpec"]
    assert head["template"]["spec"]["containers"] and head["rayStartParams"]["num-cpus"] == "0"
    groups = spec["workerGroupSpecs"]
    gpu = [g for g in groups if g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu")]
    assert gpu and all(g["minReplicas"] == 0 and g.get("replicas", 0) == 0 and g["maxReplicas"] >= 1 for g in gpu)
    containers = [head["template"]["spec"]["containers"][0]] + [g["template"]["spec"]["containers"][0] for g in groups]
    for container in containers:
        names = {e["name"] for e in container.get("env", [])}
        assert {"MLFLOW_TRACKING_URI", "RAYMLOPS_STORAGE_PATH"} <= names, container["name"]
    for env in (e for c in containers for e in c.get("env", [])):
        if "PASSWORD" in env["name"] or "TOKEN" in env["name"]:
            assert "value" not in env and env["valueFrom"]["secretKeyRef"], "credentials come from Kubernetes secrets"
