"""infra/terraform/aws: the AWS half, checked offline (no AWS account, no provider download).

What runs here: `terraform fmt -check`, a structural reading of every .tf file with python-hcl2 (variables typed
and described, no secret literal, sensitive names marked, the outputs raymlops needs and no secret among them,
RDS / S3 / GPU node group properties, the IRSA subjects and node label/taint the Kustomize overlays use), and
checkov over the Terraform and over the rendered overlays (0 failed checks; each skip carries its reason).
What cannot run here: `terraform init` downloads the aws and random providers (no registry is reachable), so
`terraform validate` and `terraform plan` were never run: a wrong argument name inside a resource is caught by
neither python-hcl2 nor checkov, only by `terraform validate` with the providers (docs/guides/deploy-aws.md).
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_k8s_manifests import by_kind, needs_kubectl, render_overlay

pytestmark = pytest.mark.cluster  # fast (terraform fmt, kubectl kustomize, checkov: ~15 s): no Ray

REPO = Path(__file__).resolve().parent.parent
TF = REPO / "infra" / "terraform" / "aws"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
REQUIRED_OUTPUTS = {
    "cluster_name",
    "region",
    "tracking_db_uri",
    "auth_db_uri",
    "db_credentials_secret_arn",
    "artifact_bucket",
    "mlflow_artifacts_destination",
    "ray_storage_path",
    "mlflow_role_arn",
    "ray_role_arn",
    "cluster_autoscaler_role_arn",
    "image_repository",
    "kustomize_env",
}
SECRET_NAME = re.compile(r"password|passwd|secret(?!_arn|_id|s?_?manager)|token|private_key|access_key", re.IGNORECASE)


@functools.cache
def terraform() -> dict[str, list[dict[str, Any]]]:
    """Every top-level block of every .tf file, by block type (hcl2 gives a list of one-key dicts per type)."""
    import hcl2
    from hcl2.utils import SerializationOptions

    options = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    blocks: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(TF.glob("*.tf")):
        for kind, items in hcl2.loads(path.read_text(), serialization_options=options).items():
            blocks.setdefault(kind, []).extend(items if isinstance(items, list) else [items])
    return blocks


def named(kind: str) -> dict[str, dict[str, Any]]:
    """variable / output blocks by name."""
    return {name: body for item in terraform().get(kind, []) for name, body in item.items()}


def resources(rtype: str) -> dict[str, dict[str, Any]]:
    return {
        name: body
        for item in terraform()["resource"]
        for t, by_name in item.items()
        if t == rtype
        for name, body in by_name.items()
    }


def locals_() -> dict[str, Any]:
    return {k: v for item in terraform()["locals"] for k, v in item.items()}


def resolve(value: Any) -> Any:
    """A `${var.x}` or `${local.x}` reference, replaced by the variable's default or the local's value."""
    match = re.fullmatch(r"\$\{(var|local)\.(\w+)\}", value) if isinstance(value, str) else None
    if not match:
        return value
    return named("variable")[match[2]]["default"] if match[1] == "var" else locals_()[match[2]]


def walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """(dotted.path, leaf value) for every attribute under node."""
    if isinstance(node, dict):
        return [leaf for key, value in node.items() for leaf in walk(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [leaf for i, value in enumerate(node) for leaf in walk(value, f"{path}[{i}]")]
    return [(path, node)]


def test_terraform_fmt_check() -> None:
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed (CI machines have it at /usr/local/bin/terraform)")
    out = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-diff", str(REPO / "infra" / "terraform")], capture_output=True, text=True
    )
    assert out.returncode == 0, f"run `terraform fmt -recursive infra/terraform`:\n{out.stdout}"


def test_every_variable_has_a_type_and_a_description() -> None:
    variables = named("variable")
    assert len(variables) >= 10
    for name, body in variables.items():
        assert body.get("type"), f"variable {name}: no type"
        assert len(body.get("description", "")) >= 15, f"variable {name}: no description"


def test_no_secret_literal_anywhere() -> None:
    """No attribute whose name says secret holds a literal; the one password is random_password's, kept in Secrets
    Manager, and no output, local or variable default carries it."""
    leaks = [
        (path, value)
        for kind, items in terraform().items()
        for path, value in walk(items, kind)
        if SECRET_NAME.search(path.rsplit(".", 1)[-1]) and isinstance(value, str) and "${" not in value
    ]
    assert not leaks, leaks
    (db,) = resources("aws_db_instance").values()
    assert db["password"] == "${random_password.db.result}"
    assert "password = random_password.db.result" in resources("aws_secretsmanager_secret_version")["db"]["secret_string"]
    for kind in ("output", "locals", "variable"):
        assert "random_password" not in json.dumps(terraform().get(kind, [])), kind
    text = "\n".join(p.read_text() for p in sorted(TF.glob("*.tf*")))
    assert not re.search(r"AKIA[0-9A-Z]{16}|BEGIN [A-Z ]*PRIVATE KEY|aws_secret_access_key", text)


def test_sensitive_names_are_marked_sensitive() -> None:
    """Today no variable or output holds a secret (the password is generated and stays in Secrets Manager): one
    added later with a secret-sounding name must be `sensitive = true`; ARNs and ids of secrets are not secrets."""
    assert SECRET_NAME.search("db_password") and SECRET_NAME.search("api_token") and SECRET_NAME.search("aws_secret_access_key")
    assert not SECRET_NAME.search("db_credentials_secret_arn") and not SECRET_NAME.search("kms_key_id")
    for kind in ("variable", "output"):
        for name, body in named(kind).items():
            if SECRET_NAME.search(name):
                assert body.get("sensitive") is True, f"{kind} {name}: mark it sensitive = true"


def test_outputs_are_what_raymlops_needs_and_hold_no_password() -> None:
    outputs = named("output")
    assert set(outputs) == REQUIRED_OUTPUTS
    for name, body in outputs.items():
        assert body.get("description"), name
    for name in ("tracking_db_uri", "auth_db_uri"):
        uri = outputs[name]["value"]
        assert uri.startswith("postgresql+psycopg2://${aws_db_instance.this.username}@"), f"{name}: user@host, no password"
        assert "sslmode=require" in uri
    assert outputs["mlflow_artifacts_destination"]["value"].startswith("s3://")
    assert outputs["ray_storage_path"]["value"].startswith("s3://")


def test_kustomize_env_output_fills_exactly_the_prod_overlays_file() -> None:
    """`terraform output -raw kustomize_env > cluster/k8s/overlays/prod/terraform.env`: the same keys."""
    written = set(re.findall(r'"([A-Z_]+)=', named("output")["kustomize_env"]["value"]))
    env_file = REPO / "cluster" / "k8s" / "overlays" / "prod" / "terraform.env"
    assert written == {line.split("=", 1)[0] for line in env_file.read_text().split()}


def test_rds_is_multi_az_encrypted_private_and_kept_from_deletion() -> None:
    (db,) = resources("aws_db_instance").values()
    assert db["engine"] == "postgres"
    assert db["multi_az"] is True and db["storage_encrypted"] is True and db["publicly_accessible"] is False
    assert db["backup_retention_period"] >= 7 and db["skip_final_snapshot"] is False
    assert resolve(db["deletion_protection"]) is True
    (ingress,) = resources("aws_vpc_security_group_ingress_rule").values()
    assert ingress["from_port"] == ingress["to_port"] == 5432 and "cidr_ipv4" not in ingress, "the cluster only, no CIDR"


def test_s3_bucket_versioned_private_encrypted_with_a_lifecycle() -> None:
    (versioning,) = resources("aws_s3_bucket_versioning").values()
    assert versioning["versioning_configuration"][0]["status"] == "Enabled"
    (block,) = resources("aws_s3_bucket_public_access_block").values()
    flags = ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    assert all(block[f] is True for f in flags)
    (sse,) = resources("aws_s3_bucket_server_side_encryption_configuration").values()
    assert sse["rule"][0]["apply_server_side_encryption_by_default"][0]["sse_algorithm"] == "aws:kms"
    (lifecycle,) = resources("aws_s3_bucket_lifecycle_configuration").values()
    rule = lifecycle["rule"][0]
    assert rule["status"] == "Enabled" and resolve(rule["noncurrent_version_expiration"][0]["noncurrent_days"]) > 0


def test_gpu_node_group_is_spot_scales_0_to_5_and_is_tainted() -> None:
    groups = resources("aws_eks_node_group")
    assert set(groups) == {"system", "gpu_spot"} and groups["system"]["capacity_type"] == "ON_DEMAND"
    gpu = groups["gpu_spot"]
    scaling = gpu["scaling_config"][0]
    assert gpu["capacity_type"] == "SPOT" and "NVIDIA" in gpu["ami_type"]
    assert (scaling["min_size"], scaling["desired_size"], resolve(scaling["max_size"])) == (0, 0, 5)
    (taint,) = gpu["taint"]
    assert locals_()["gpu_node_taint"] == {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}
    assert taint == {f: f"${{local.gpu_node_taint.{f}}}" for f in ("key", "value", "effect")}
    assert resolve(gpu["labels"]) == {"raymlops.io/pool": "gpu-spot"}
    version = named("variable")["kubernetes_version"]["default"]
    assert tuple(map(int, version.split("."))) >= (1, 28)


@needs_kubectl
def test_kustomize_overlays_match_the_terraform_names_taint_and_label() -> None:
    """What the IRSA roles trust and what the node groups carry is what the prod overlay's pods use."""
    docs = render_overlay("prod")
    namespace = named("variable")["k8s_namespace"]["default"]
    accounts = by_kind(docs, "ServiceAccount")
    assert {locals_()["mlflow_service_account"], locals_()["ray_service_account"]} <= set(accounts)
    assert {a["metadata"]["namespace"] for a in accounts.values()} == {namespace}
    irsa = locals_()["irsa"]
    assert irsa["mlflow"]["service_account"] == "${local.mlflow_service_account}"
    assert irsa["ray"]["service_account"] == "${local.ray_service_account}"
    gpu_pod = by_kind(docs, "RayCluster")["raymlops"]["spec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert gpu_pod["nodeSelector"] == locals_()["gpu_node_label"]
    taint = locals_()["gpu_node_taint"]
    kube_effect = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}[
        taint["effect"]
    ]
    assert {"key": taint["key"], "operator": "Equal", "value": taint["value"], "effect": kube_effect} in gpu_pod["tolerations"]
    (gpu,) = by_kind(docs, "RayCluster")["raymlops"]["spec"]["workerGroupSpecs"]
    assert gpu["maxReplicas"] == named("variable")["gpu_node_max"]["default"], "one GPU pod per GPU node"


def test_every_checkov_skip_says_why() -> None:
    """`#checkov:skip=CKV_..:reason` (Terraform, YAML comments) and `checkov.io/skipN: CKV_..=reason` (manifests)."""
    files = [*sorted(TF.glob("*.tf")), *sorted((REPO / "cluster").rglob("*.yaml"))]
    text = "\n".join(p.read_text() for p in files)
    skips = re.findall(r"checkov:skip=([^:\s]+):?(.*)$", text, re.M) + re.findall(
        r"checkov\.io/skip\d+: ([^=\s]+)=?(.*)$", text, re.M
    )
    assert len(skips) >= 10
    for check, reason in skips:
        assert re.fullmatch(r"CKV2?_[A-Z0-9]+_\d+", check) and len(reason.strip()) >= 20, (check, reason)


def run_checkov(framework: str, *directories: Path) -> dict[str, Any]:
    """checkov's JSON report (offline: --skip-download, no Prisma Cloud look-up of guidelines or severities), the
    reports of several directories merged (checkov prints one JSON document per directory)."""
    dirs = [arg for d in directories for arg in ("-d", str(d))]
    out = subprocess.run(
        [str(CHECKOV), *dirs, "--framework", framework, "--output", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    merged: dict[str, Any] = {"results": {"failed_checks": [], "skipped_checks": []}, "summary": {"passed": 0}}
    decoder, text, pos = json.JSONDecoder(), out.stdout.strip(), 0
    while pos < len(text):
        doc, pos = decoder.raw_decode(text, pos)
        pos = len(text) - len(text[pos:].lstrip())
        for report in doc if isinstance(doc, list) else [doc]:
            summary = report.get("summary", report)  # a directory with nothing to scan prints a bare summary
            merged["summary"]["passed"] += summary.get("passed", 0)
            for key in ("failed_checks", "skipped_checks"):
                merged["results"][key] += report.get("results", {}).get(key, [])
    assert pos, f"checkov printed no report: {out.stderr[-2000:]}"
    return merged


def assert_clean(report: dict[str, Any]) -> None:
    results = report["results"]
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in results["failed_checks"]]
    assert not failed, f"checkov: fix these or skip each with its reason in the code: {failed}"
    for check in results["skipped_checks"]:
        assert check["check_result"].get("suppress_comment", "").strip(), check["check_id"]
    assert report["summary"]["passed"] > 50


needs_checkov = pytest.mark.skipif(
    not CHECKOV.exists(), reason="checkov is not installed: run `make checkov-install` (.venv-checkov)"
)


@needs_checkov
def test_checkov_passes_the_terraform() -> None:
    assert_clean(run_checkov("terraform", TF))


@needs_checkov
def test_checkov_refuses_a_public_unencrypted_database(tmp_path: Path) -> None:
    """The check is real: the same run on a database without the properties above fails with checkov's own IDs."""
    (tmp_path / "db.tf").write_text(
        'resource "aws_db_instance" "bad" {\n  engine = "postgres"\n  instance_class = "db.t4g.micro"\n'
        "  publicly_accessible = true\n  storage_encrypted = false\n}\n"
    )
    failed = {c["check_id"] for c in run_checkov("terraform", tmp_path)["results"]["failed_checks"]}
    assert {"CKV_AWS_16", "CKV_AWS_17", "CKV_AWS_157"} <= failed, failed


@needs_checkov
@needs_kubectl
def test_checkov_passes_the_rendered_overlays(tmp_path: Path) -> None:
    for overlay in ("dev", "prod"):
        (tmp_path / f"{overlay}.yaml").write_text(yaml.safe_dump_all(render_overlay(overlay)))
    assert_clean(run_checkov("kubernetes", tmp_path))


@needs_checkov
def test_checkov_finds_no_secret_in_infra_or_cluster() -> None:
    report = run_checkov("secrets", REPO / "infra", REPO / "cluster")
    assert not report["results"]["failed_checks"], report["results"]["failed_checks"]
    assert all(c["check_result"].get("suppress_comment") for c in report["results"]["skipped_checks"])
