"""cluster/k8s/: the Kustomize base and its dev and prod overlays, rendered with `kubectl kustomize` and checked
offline against the Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields refused), and the
properties docs/cluster.md and docs/guides/deploy-aws.md promise. No cluster is started: what only a cluster
proves is listed in docs/cluster.md. The RayCluster is a custom resource with no schema here: its fields are
asserted one by one (and against cluster/kuberay.yaml). Terraform-side cross-checks: tests/test_infra.py."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.cluster  # fast (no processes but kubectl): also part of `make test-fast`

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "cluster" / "k8s"
BASE = K8S / "base"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]  # an older supported minor and the newest the package carries
CUSTOM_KINDS = {"RayCluster"}  # KubeRay's CRD: no JSON schema in kubernetes-validate
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) is not installed")


@functools.cache
def render_overlay(name: str) -> tuple[dict[str, Any], ...]:
    """The documents `kubectl apply -k cluster/k8s/overlays/NAME` would send (kustomize is built into kubectl)."""
    out = subprocess.run(["kubectl", "kustomize", str(K8S / "overlays" / name)], capture_output=True, text=True, check=True)
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def by_kind(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _file_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _deployment(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(docs, "Deployment")["mlflow-server"]


def _container(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _deployment(docs)["spec"]["template"]["spec"]["containers"]
    return container


@needs_kubectl
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_overlays_pass_the_kubernetes_schemas(overlay: str, version: str) -> None:
    import kubernetes_validate

    docs = render_overlay(overlay)
    assert {d["kind"] for d in docs} >= {"Namespace", "ServiceAccount", "Deployment", "Service", "NetworkPolicy", "RayCluster"}
    for doc in docs:
        if doc["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(doc, version, strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "raymlops", doc["metadata"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_secret_example_passes_the_kubernetes_schemas(version: str) -> None:
    import kubernetes_validate

    for doc in _file_docs(BASE / "secret.example.yaml"):
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_refuses_a_broken_manifest() -> None:
    import kubernetes_validate

    deployment = by_kind(_file_docs(BASE / "mlflow-server.yaml"), "Deployment")["mlflow-server"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/health"
    with pytest.raises(kubernetes_validate.ValidationError, match="pathh"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_every_manifest_starts_with_the_command_that_uses_it() -> None:
    for path in sorted(K8S.rglob("*.yaml")):
        lines = path.read_text().splitlines()
        header = lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))]
        assert header and re.search(r"kubectl (kustomize|apply|-n)", "\n".join(header)), path


def test_deployment_probes_resources_and_security() -> None:
    docs = _file_docs(BASE / "mlflow-server.yaml")
    pod = _deployment(docs)["spec"]["template"]["spec"]
    container = _container(docs)
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["serviceAccountName"] == "mlflow-server" and pod["automountServiceAccountToken"] is False
    service = by_kind(docs, "Service")["mlflow-server"]["spec"]
    labels = _deployment(docs)["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items() and service["ports"][0]["port"] == 5000


@needs_kubectl
def test_dev_overlay_one_replica_no_autoscaler() -> None:
    docs = render_overlay("dev")
    assert _deployment(docs)["spec"]["replicas"] == 1
    assert not by_kind(docs, "HorizontalPodAutoscaler") and not by_kind(docs, "Ingress")
    env = {e["name"] for e in _container(docs)["env"]}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= env, "dev: static keys (MinIO or a test bucket)"


@needs_kubectl
def test_prod_overlay_autoscales_2_to_5_behind_a_disruption_budget_and_tls() -> None:
    docs = render_overlay("prod")
    hpa = by_kind(docs, "HorizontalPodAutoscaler")["mlflow-server"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5) and hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mlflow-server"}
    pdb = by_kind(docs, "PodDisruptionBudget")["mlflow-server"]["spec"]
    labels = _deployment(docs)["spec"]["template"]["metadata"]["labels"]
    assert pdb["minAvailable"] >= 1 and pdb["selector"]["matchLabels"].items() <= labels.items()
    ingress = by_kind(docs, "Ingress")["mlflow-server"]["spec"]
    host = ingress["rules"][0]["host"]
    assert ingress["tls"][0]["hosts"] == [host] and ingress["tls"][0]["secretName"]
    assert ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "mlflow-server"
    allowed = next(e["value"] for e in _container(docs)["env"] if e["name"] == "MLFLOW_ALLOWED_HOSTS")
    assert allowed.split(",")[-1] == host, "MLflow answers the Ingress host"
    assert "terraform-outputs" not in by_kind(docs, "ConfigMap"), "terraform.env is local-config: not applied"


@needs_kubectl
def test_prod_overlay_uses_irsa_not_keys() -> None:
    docs = render_overlay("prod")
    accounts = by_kind(docs, "ServiceAccount")
    for name in ("mlflow-server", "raymlops-ray"):
        assert accounts[name]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::"), name
    assert _deployment(docs)["spec"]["template"]["spec"]["serviceAccountName"] == "mlflow-server"
    env = {e["name"] for e in _container(docs)["env"]}
    assert not env & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"}, env


@needs_kubectl
def test_prod_values_all_come_from_terraform_env() -> None:
    """Every placeholder of the base is replaced from terraform.env: no YOUR-REGISTRY / YOUR-BUCKET reaches the cluster."""
    env = dict(line.split("=", 1) for line in (K8S / "overlays" / "prod" / "terraform.env").read_text().split())
    text = yaml.safe_dump_all(render_overlay("prod"))
    assert "YOUR-" not in text and "MLFLOW_HOST" not in text
    for key, value in env.items():
        assert value in text, key
    ray = by_kind(render_overlay("prod"), "RayCluster")["raymlops"]["spec"]
    for container in _ray_containers(ray):
        assert container["image"] == env["IMAGE"] == _container(render_overlay("prod"))["image"]
        assert {"name": "RAYMLOPS_STORAGE_PATH", "value": env["RAYMLOPS_STORAGE_PATH"]} in container["env"]


def _ray_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def test_credentials_come_from_the_secret() -> None:
    container = _container(_file_docs(BASE / "mlflow-server.yaml"))
    env = {e["name"]: e for e in container["env"]}
    secret = by_kind(_file_docs(BASE / "secret.example.yaml"), "Secret")["mlflow-server"]["stringData"]
    for name in ("MLFLOW_BACKEND_STORE_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "mlflow-server" and ref["key"] in secret
    for e in container["env"]:  # nothing secret-looking is written into the Deployment itself
        assert "value" not in e or not re.search(r"PASSWORD|SECRET|KEY_ID|STORE_URI", e["name"]), e
    assert "/mlflow_auth" in secret["basic_auth.ini"] and "admin_password" not in secret["basic_auth.ini"]
    for key, value in secret.items():  # the example holds placeholders only
        if re.search(r"password|secret|key-id|store-uri|basic_auth", key):
            assert "CHANGE-ME" in value, key


def test_same_image_and_command_as_the_plain_process_server() -> None:
    from raymlops.server.processes import server_args

    container = _container(_file_docs(BASE / "mlflow-server.yaml"))
    ray_images = re.findall(r"image:\s*(\S+)", (REPO / "cluster" / "kuberay.yaml").read_text())
    assert container["image"] in ray_images
    args = server_args("$(MLFLOW_BACKEND_STORE_URI)", "$(MLFLOW_ARTIFACTS_DESTINATION)", auth=True)
    assert container["command"] == ["mlflow", "server"]
    assert container["args"][: len(args)] == args
    assert container["args"][len(args) :] == ["--host", "0.0.0.0", "--port", "5000", "--allowed-hosts", "$(MLFLOW_ALLOWED_HOSTS)"]
    assert {e["name"] for e in container["env"]} >= {"MLFLOW_ALLOWED_HOSTS", "MLFLOW_BACKEND_STORE_URI"}


def test_raycluster_of_the_base_is_the_one_of_kuberay_yaml() -> None:
    """cluster/kuberay.yaml (kubectl apply -f) and base/raycluster.yaml (kustomize) stay one cluster: same Ray, auth,
    autoscaling, head parameters, image and env names; the base differs only in the service account and worker size."""
    plain = yaml.safe_load((REPO / "cluster" / "kuberay.yaml").read_text())["spec"]
    (base_doc,) = _file_docs(BASE / "raycluster.yaml")
    base = base_doc["spec"]
    for key in ("rayVersion", "authOptions", "enableInTreeAutoscaling", "autoscalerOptions"):
        assert base[key] == plain[key], key
    assert base["headGroupSpec"]["rayStartParams"] == plain["headGroupSpec"]["rayStartParams"]
    for ours, theirs in zip(_ray_containers(base), _ray_containers(plain), strict=True):
        assert ours["image"] == theirs["image"] and ours["name"] == theirs["name"]
        assert [e["name"] for e in ours["env"]] == [e["name"] for e in theirs["env"]]
    (gpu,) = base["workerGroupSpecs"]
    assert (gpu["minReplicas"], gpu["replicas"], gpu["maxReplicas"]) == (0, 0, 5)
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    for env in (e for c in _ray_containers(base) for e in c["env"]):
        if "PASSWORD" in env["name"] or "TOKEN" in env["name"]:
            assert "value" not in env and env["valueFrom"]["secretKeyRef"], "credentials come from Kubernetes secrets"


@needs_kubectl
def test_prod_raycluster_puts_gpu_workers_on_the_spot_nodes() -> None:
    spec = by_kind(render_overlay("prod"), "RayCluster")["raymlops"]["spec"]
    assert spec["authOptions"] == {"mode": "token"}
    head = spec["headGroupSpec"]["template"]["spec"]
    assert head["nodeSelector"] == {"raymlops.io/pool": "system"} and head["serviceAccountName"] == "raymlops-ray"
    (gpu,) = spec["workerGroupSpecs"]
    pod = gpu["template"]["spec"]
    assert (gpu["minReplicas"], gpu["maxReplicas"]) == (0, 5)
    assert pod["nodeSelector"] == {"raymlops.io/pool": "gpu-spot"} and pod["serviceAccountName"] == "raymlops-ray"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
