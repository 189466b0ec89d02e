"""Autoscaling from zero without a cloud: Ray's fake multi-node provider adds and removes nodes.

The head has no CPU and no GPU; the only worker node type carries a GPU-like custom resource
(`accel`) with min_workers 0. A search whose trials ask for it (scaling.accelerator_resource=accel)
must make the autoscaler add nodes, run every trial on them, and let them go after the idle
timeout: 0 -> N -> 0; for 1-worker trials and for DDP trials on warm lanes (a lane over two 1-CPU nodes). `ray.cluster_utils.AutoscalingCluster` would do the set-up, but it runs
`ray stop --force` (every Ray on the machine) and needs a YAML its wheel lacks, so the same
configuration is started here on our own ports and stopped by session.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import overrides
from faultkit import trial_runs
from helpers import free_ports, wait_until
from raynodes import (
    PORTS,
    PORTS_PER_NODE,
    NodeWatcher,
    RayNode,
    alive_nodes,
    client_env,
    node_env,
    node_ports,
    run_module,
    short_temp_dir,
    trial_nodes,
)

from raymlops.core.names import TAG_WORKER_NODES

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(360)]

IDLE_TIMEOUT_MIN = 0.1  # 6 s: the autoscaler accepts fractional minutes
MAX_ACCEL_NODES = 2


def fake_cluster_config(gcs_address: str) -> dict[str, Any]:
    """A cluster YAML for the fake_multinode provider: what `ray up` would take, minus SSH and a cloud."""
    return {
        "cluster_name": "raymlops-fake",
        "max_workers": MAX_ACCEL_NODES,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_MIN,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,
        },
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            # The GPU node type of cluster/aws.yaml, with `accel` standing in for GPU: trial code stays on CPU.
            "accel_worker": {
                "resources": {"CPU": 1, "accel": 1, "object_store_memory": 100 * 1024**2},
                "node_config": {},
                "min_workers": 0,
                "max_workers": MAX_ACCEL_NODES,
            },
        },
        "auth": {},
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "rsync_exclude": [],
        "rsync_filter": [],
    }


@pytest.fixture(scope="module")
def fake_cluster() -> Iterator[tuple[str, Path]]:
    """A fake autoscaling cluster: (GCS address, the autoscaler's cluster YAML). Shared by the module's tests:
    each ends only once the cluster is back to its head alone."""
    import ray._private.services

    ip = ray._private.services.get_node_ip_address()  # the fake provider's nodes register on this address
    gcs_port, client_port, metrics_port, *ports = free_ports(3 + PORTS_PER_NODE, PORTS)
    gcs = f"{ip}:{gcs_port}"
    tmp = short_temp_dir()
    config = tmp / "autoscaling.yaml"
    config.write_text(yaml.safe_dump(fake_cluster_config(gcs)))
    env = node_env(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1", AUTOSCALER_METRIC_PORT=str(metrics_port))
    head = RayNode(
        [
            "--head",
            f"--port={gcs_port}",
            "--num-cpus=0",
            "--num-gpus=0",
            f"--temp-dir={tmp}",
            f"--autoscaling-config={config}",
            "--include-dashboard=false",
            f"--ray-client-server-port={client_port}",
            "--object-store-memory=100000000",
            *node_ports(ports),
        ],
        env,
        tmp / "head.log",
    )
    try:
        wait_until(lambda: len(alive_nodes(gcs)) == 1, 60, what="the fake cluster's head", log=head.log)
        yield gcs, config
    finally:
        head.stop()  # the fake worker nodes are processes of the head's autoscaler: same session
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("workers", [1, 2], ids=["1-worker trials", "DDP lanes"])
def test_accel_workers_scale_from_zero_run_the_trials_and_scale_back(
    fake_cluster: tuple[str, Path], store: dict[str, str], tmp_path: Path, workers: int
) -> None:
    """1-worker trials: one accel node each. DDP lanes: a 2-worker trial cannot fit on one 1-CPU accel node, so its
    lane waits for two nodes from zero, trains with a worker on each (gloo over loopback), runs both trials one
    after the other, ends once idle, and the nodes go."""
    gcs, autoscaling_yaml = fake_cluster
    watcher = NodeWatcher(gcs, "accel")
    watcher.start()
    try:
        wait_until(lambda: len(watcher.samples) >= 2, 20, what="the node watcher")
        assert watcher.peak == 0, "min_workers: 0 means no accel node before any trial asks for one"

        # The same command as on a laptop, pointed at the cluster by RAY_ADDRESS. The driver reads the
        # autoscaler's node types from its YAML (on a `ray up` head: ~/ray_bootstrap_config.yaml).
        args = overrides(
            store,
            "+experiment=smoke",
            f"tune.num_samples={MAX_ACCEL_NODES}",
            f"scaling.num_workers={workers}",
            "scaling.lane_idle_s=2",
            "scaling.accelerator_resource=accel",
            f"ray.autoscaling_config={autoscaling_yaml}",
            "evaluate.enabled=false",
        )
        started = time.monotonic()
        code, out = run_module("raymlops.tune", args, client_env(RAY_ADDRESS=gcs), tmp_path, timeout_s=240)
        assert code == 0, out[-6000:]
        assert f"{MAX_ACCEL_NODES // workers} at a time" in out, "concurrency comes from the autoscaler's node types"
        assert watcher.peak == MAX_ACCEL_NODES, f"expected {MAX_ACCEL_NODES} accel nodes at the peak: {watcher.samples}"
        if workers == 1:
            ran_on = trial_nodes(Path(store["storage_path"]))
            assert len(ran_on) == MAX_ACCEL_NODES, ran_on
            used = set().union(*ran_on.values())
            assert used <= watcher.seen, f"trials ran on {used}, accel nodes were {watcher.seen}"
        spans = [r.data.tags.get(TAG_WORKER_NODES) for r in trial_runs(store["mlflow.tracking_uri"])]
        assert spans == [str(workers)] * MAX_ACCEL_NODES, f"nodes each trial's workers spanned: {spans}"

        wait_until(lambda: not watcher.current(), 90, what="idle accel nodes to be removed")
        print(f"search {time.monotonic() - started:.0f} s; accel nodes seen: {len(watcher.seen)}, peak {watcher.peak}, back to 0")
    finally:
        watcher.stop()
