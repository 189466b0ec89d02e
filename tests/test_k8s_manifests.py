"""cluster/k8s/: the MLflow server's manifests checked offline against the Kubernetes JSON schemas
(kubernetes-validate, strict: unknown fields refused), and the properties docs/cluster.md promises.
No cluster is started: what only a cluster proves is listed in docs/cluster.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.cluster  # fast (no processes): also part of `make test-fast`

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "cluster" / "k8s"
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]  # an older supported minor and the newest the package carries


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _by_kind(name: str = "mlflow-server.yaml") -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in _docs(name)}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", sorted(p.name for p in K8S.glob("*.yaml")))
def test_manifests_pass_the_kubernetes_schemas(name: str, version: str) -> None:
    import kubernetes_validate

    for doc in _docs(name):
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_refuses_a_broken_manifest() -> None:
    import kubernetes_validate

    deployment = _by_kind()["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/health"
    with pytest.raises(kubernetes_validate.ValidationError, match="pathh"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_deployment_replicas_probes_resources_and_security() -> None:
    kinds = _by_kind()
    spec = kinds["Deployment"]["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 2
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5)
    assert hpa["scaleTargetRef"]["name"] == kinds["Deployment"]["metadata"]["name"]
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    service = kinds["Service"]["spec"]
    assert service["selector"].items() <= pod_labels(kinds).items() and service["ports"][0]["port"] == 5000


def pod_labels(kinds: dict[str, dict[str, Any]]) -> dict[str, str]:
    return dict(kinds["Deployment"]["spec"]["template"]["metadata"]["labels"])


def test_credentials_come_from_the_secret() -> None:
    (container,) = _by_kind()["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    secret_keys = set(_by_kind("secret.example.yaml")["Secret"]["stringData"])
    for name in ("MLFLOW_BACKEND_STORE_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "mlflow-server" and ref["key"] in secret_keys
    for e in container["env"]:  # nothing secret-looking is written into the Deployment itself
        assert "value" not in e or not re.search(r"PASSWORD|SECRET|KEY_ID|STORE_URI", e["name"]), e
    ini = _by_kind("secret.example.yaml")["Secret"]["stringData"]["basic_auth.ini"]
    assert "/mlflow_auth" in ini and "admin_password" not in ini  # auth tables in the same PostgreSQL


def test_same_image_and_command_as_the_plain_process_server() -> None:
    from raymlops.server.processes import server_args

    (container,) = _by_kind()["Deployment"]["spec"]["template"]["spec"]["containers"]
    ray_images = re.findall(r"image:\s*(\S+)", (REPO / "cluster" / "kuberay.yaml").read_text())
    assert container["image"] in ray_images
    args = server_args("$(MLFLOW_BACKEND_STORE_URI)", "$(MLFLOW_ARTIFACTS_DESTINATION)", auth=True)
    assert container["command"] == ["mlflow", "server"]
    assert container["args"][: len(args)] == args
    assert container["args"][len(args) :][:4] == ["--host", "0.0.0.0", "--port", "5000"]
