"""From a search's champion to predictions, for real: `mlflow models serve` on the registered model with PNG and
JPEG posts, Ray Serve with a 50/50 champion/challenger split and a hot swap when @champion moves, and batch
inference with Ray Data over a generated image folder."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from conftest import REPO, overrides, register_smoke_models, smoke_images
from conftest import SMOKE_MODEL as NAME
from helpers import free_port, wait_until

from raymlops import tracking
from raymlops.core.names import TAG_ROLE
from raymlops.post import model_registry

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def champion(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """v1 @champion and v2 @challenger of one small trained model (conftest.register_smoke_models)."""
    yield register_smoke_models(tmp_path_factory.mktemp("serving"))
    from ray import serve

    serve.shutdown()


_test_images = smoke_images


def _split_body(images: list[bytes]) -> dict[str, Any]:
    return {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(im).decode()] for im in images]}}


def test_mlflow_models_serve_answers_images(champion: dict[str, Any]) -> None:
    """The registered champion behind MLflow's own scoring server: PNG and JPEG in, labels out; bad bodies -> 400."""
    import mlflow.pyfunc

    from raymlops.tracking.model_store import download_model

    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # mlflow starts `uvicorn` from PATH: the venv's bin, as when activated
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": champion["uri"],
        "PYTHONPATH": str(REPO),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    mlflow_cli = str(Path(bin_dir) / "mlflow")
    cmd = [
        mlflow_cli,
        "models",
        "serve",
        "-m",
        f"models:/{NAME}@champion",
        "--env-manager",
        "local",
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/ping", timeout=2).status_code == 200, 120, what="mlflow models serve", proc=proc)
        pngs, jpgs, _ = _test_images()
        reply = requests.post(f"{url}/invocations", json=_split_body(pngs + jpgs), timeout=30)
        assert reply.status_code == 200, reply.text
        rows = reply.json()["predictions"]
        local = download_model(champion["uri"], f"models:/{NAME}@champion")  # that store's registry, no global URI
        expected = mlflow.pyfunc.load_model(local).predict(pd.DataFrame({"image": pngs + jpgs}))
        assert [r["label"] for r in rows] == expected["label"].tolist()
        assert [r["class_index"] for r in rows] == expected["class_index"].tolist()
        for row, prob in zip(rows, expected["probability"], strict=True):
            assert row["probability"] == pytest.approx(prob, abs=1e-5)
            assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
            assert row["label"] in row["probabilities"] and row["label"].startswith("class_")
        for body, kwargs, reason in (
            (b"{not json", {"headers": {"Content-Type": "application/json"}}, "valid JSON"),
            (None, {"json": _split_body([b"this is not an image"])}, "row 0: not a decodable image"),
            (None, {"json": {"dataframe_split": {"columns": ["image"], "data": []}}}, "no images"),
        ):
            bad = requests.post(f"{url}/invocations", data=body, timeout=30, **kwargs)
            assert bad.status_code == 400, bad.text
            assert reason in bad.json()["message"] and "Traceback" not in bad.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_ray_serve_split_and_hot_swap(champion: dict[str, Any]) -> None:
    """@champion v1 and @challenger v2 at 50/50 over 200 requests; then @champion moves to v2 while requests keep
    coming: none fails and the champion's answers come from v2. Per-version stats land in the serve run."""
    from raymlops.config import compose
    from raymlops.serving.app import start, stop

    port = free_port()
    config = compose(
        overrides(
            champion["store"],
            "+experiment=smoke",
            f"serve.port={port}",
            "serve.challenger_traffic=0.5",
            "serve.poll_interval_s=1",
            "serve.log_interval_s=1",
            "serve.max_replicas=1",
        )
    )
    session = start(config)
    pngs, _, _ = _test_images(2)
    predict = f"{session.url}/predict"
    try:
        answered = []
        for i in range(200):
            reply = requests.post(
                predict, data=pngs[i % 2], headers={"Content-Type": "image/png", "X-Request-Key": f"k{i}"}, timeout=30
            )
            assert reply.status_code == 200, reply.text
            answered.append((reply.json()["alias"], reply.json()["model_version"]))
        assert {a: v for a, v in answered} == {"champion": "1", "challenger": "2"}
        n_challenger = sum(a == "challenger" for a, _ in answered)
        assert 70 <= n_challenger <= 130, n_challenger
        again = requests.post(predict, data=pngs[0], headers={"Content-Type": "image/png", "X-Request-Key": "k7"}, timeout=30)
        assert again.json()["alias"] == answered[7][0]  # sticky per key
        bad = requests.post(predict, data=b"not an image", headers={"Content-Type": "image/png"}, timeout=30)
        assert bad.status_code == 400 and "not a decodable image" in bad.json()["error"] and "\n" not in bad.json()["error"]
        assert requests.post(predict, json={"dataframe_split": {"columns": ["image"], "data": []}}, timeout=30).status_code == 400
        assert requests.get(f"{session.url}/versions", timeout=30).json()["champion"] == "1"
        swap = _hammer_during(predict, pngs[0], lambda: model_registry.promote(session.tracking_uri, NAME, "2"))
        assert swap["failures"] == [] and swap["champion_after"] == {"2"}
        assert requests.get(f"{session.url}/versions", timeout=30).json()["champion"] == "2"
    finally:
        metrics = stop(session)
    total = 200 + 1 + 1 + swap["sent"]  # the sticky check, the undecodable image (the empty list never reaches a model)
    assert metrics["requests.v1"] + metrics["requests.v2"] == total
    c = tracking.client(session.tracking_uri)
    runs = c.search_runs([c.get_run(session.run_id).info.experiment_id], filter_string=f"tags.`{TAG_ROLE}` = 'serve'")
    assert len(runs) == 1 and runs[0].data.metrics["requests.v2"] == metrics["requests.v2"]
    assert runs[0].info.status == "FINISHED" and "latency_p95_ms.v1" in runs[0].data.metrics


def _hammer_during(url: str, png: bytes, action: Any) -> dict[str, Any]:
    """Requests from two threads before, during and after action(); which versions answered @champion after it."""
    failures: list[str] = []
    after: set[str] = set()
    lock = threading.Lock()
    state: dict[str, Any] = {"sent": 0, "moved_at": 0.0, "swapped_at": 0.0, "stop": False}

    def client_loop() -> None:
        session = requests.Session()
        while not state["stop"]:
            sent_at = time.monotonic()
            try:
                reply = session.post(url, data=png, headers={"Content-Type": "image/png"}, timeout=30)
                with lock:
                    state["sent"] += 1
                if reply.status_code != 200:
                    failures.append(f"{reply.status_code} {reply.text[:200]}")
                elif state["moved_at"] and reply.json()["alias"] == "champion":
                    version = reply.json()["model_version"]
                    if version == "2" and not state["swapped_at"]:
                        state["swapped_at"] = time.monotonic()
                    if state["swapped_at"] and sent_at > state["swapped_at"] + 0.5:
                        after.add(version)  # every answer sent after the first v2 answer (plus in-flight slack)
            except requests.RequestException as err:
                failures.append(repr(err))

    threads = [threading.Thread(target=client_loop) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: state["sent"] >= 10, 60, what="10 answers before the swap", interval_s=0.1)
        action()
        state["moved_at"] = time.monotonic()
        # 60 s: the app polls the registry every 1 s and loads the new version; then 3 s of answers from it
        wait_until(
            lambda: state["swapped_at"] and time.monotonic() > state["swapped_at"] + 3,
            60,
            what="the champion answering from v2 for 3 s",
            interval_s=0.2,
            context=lambda: f"{state['sent']} sent, failures {failures[:3]}",
        )
    finally:
        state["stop"] = True
        for t in threads:
            t.join(timeout=60)
    return {"failures": failures, "champion_after": after, "sent": state["sent"]}


def test_batch_predict_image_folder(champion: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """Class subfolders of PNGs and JPEGs (one file unreadable) through Ray Data -> CSV + a predict run with
    images/s, accuracy and the confusion matrix; a flat folder -> Parquet without accuracy."""
    from raymlops.predict import main as predict_main

    tmp: Path = champion["tmp"]
    pngs, jpgs, labels = _test_images(40)
    for i, (png, jpg, label) in enumerate(zip(pngs, jpgs, labels, strict=True)):
        (tmp / "folder" / label).mkdir(parents=True, exist_ok=True)
        (tmp / "folder" / label / f"{i}.{'png' if i % 2 else 'jpg'}").write_bytes(png if i % 2 else jpg)
    (tmp / "folder" / labels[0] / "broken.png").write_bytes(b"\x89PNG truncated")
    out = predict_main(
        overrides(
            champion["store"], f"model_uri=models:/{NAME}@champion", f"data.root={tmp / 'folder'}", f"output={tmp / 'out.csv'}"
        )
    )
    frame = pd.read_csv(tmp / "out.csv").fillna({"label": "", "error": ""})
    assert len(frame) == 41 and list(frame.columns) == ["path", "label", "class_index", "probability", "true_label", "error"]
    broken = frame[frame["path"].str.endswith("broken.png")]
    assert broken["label"].tolist() == [""] and "not a decodable image" in broken["error"].iloc[0]
    ok = frame[frame["error"] == ""]
    assert ok["label"].str.startswith("class_").all() and ((ok["probability"] > 0) & (ok["probability"] <= 1)).all()
    assert out["images"] == 41 and out["unreadable"] == 1 and out["images_per_s"] > 0
    assert out["accuracy"] == pytest.approx(float((ok["label"] == ok["true_label"]).mean()))
    c = tracking.client(champion["uri"])
    run = c.get_run(out["run_id"])
    assert run.data.tags[TAG_ROLE] == "predict" and run.data.metrics["accuracy"] == pytest.approx(out["accuracy"])
    paths = {a.path for a in c.list_artifacts(out["run_id"], "evaluation")} | {
        a.path for a in c.list_artifacts(out["run_id"], "predictions")
    }
    assert {"evaluation/confusion_matrix.png", "evaluation/per_class_accuracy.json", "predictions/out.csv"} <= paths
    flat = tmp / "flat"
    flat.mkdir()
    for i, png in enumerate(pngs[:5]):
        (flat / f"{i}.png").write_bytes(png)
    out2 = predict_main(
        overrides(  # 5 images, one batch: one predictor actor (the first run sized its pool by the cluster's CPUs)
            champion["store"],
            f"model_uri=models:/{NAME}/2",
            f"data.root={flat}",
            f"output={tmp / 'out.parquet'}",
            "predict.num_actors=1",
        )
    )
    printed = capsys.readouterr().out
    assert "Predicting 41 images with 2 actor(s)" in printed, "one predictor per CPU of the 2-CPU cluster by default"
    assert "Predicting 5 images with 1 actor(s)" in printed, "predict.num_actors sets the pool"
    table = pd.read_parquet(tmp / "out.parquet")
    assert len(table) == 5 and "true_label" not in table.columns and "accuracy" not in out2
    assert np.isfinite(table["probability"]).all()
