"""Both UIs in a real browser: headless Chromium (Debian's package, installed by .ci/run) opens the Ray
Dashboard of a running search with token auth on, signing in as the README says, then `mlflow ui` on the
finished search through the link raymlops printed. Screenshots are left under the test's tmp path, or in
$RAYMLOPS_SCREENSHOTS (relative to the repo: `make docs-screenshots` sets docs/img) as small palette PNGs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import REPO
from helpers import free_port, wait_until

from raymlops import tracking

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (.ci/run installs them)"),
]
BIN = Path(sys.executable).parent
NOISE = ("PreemptionWatcher", "SearchGenerator", "Token authentication is enabled", "PYTHON worker processes")


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    yield driver
    driver.quit()


def _wait_for(driver: Any, found: Callable[[str], bool], what: str, timeout_s: float = 60) -> str:
    from selenium.webdriver.common.by import By

    page = {"text": ""}

    def shown() -> str | None:
        page["text"] = driver.find_element(By.TAG_NAME, "body").text
        return page["text"] if found(page["text"]) else None

    return wait_until(
        shown, timeout_s, what=f"{what} on the page", context=lambda: f"{driver.current_url} shows: {page['text'][:1500]}"
    )


SHOTS_ENV = "RAYMLOPS_SCREENSHOTS"  # a folder: keep the screenshots there for the docs (make docs-screenshots)


def _shot(driver: Any, path: Path) -> None:
    if os.environ.get(SHOTS_ENV):
        from PIL import Image

        path = REPO / os.environ[SHOTS_ENV] / path.name
        path.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(path))
        with Image.open(path) as image:  # 256 colours: a UI screenshot stays legible at a fraction of the size
            small = image.convert("RGB").quantize(colors=256)
        small.save(path, optimize=True)
    else:
        driver.save_screenshot(str(path))
    print(f"screenshot: {path}")


def _sign_in_to_dashboard(driver: Any, url: str, env: dict[str, str], shots: Path) -> str:
    """Open the Actors page, sign in the way the console line says (`ray get-auth-token`), list the actors."""
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/#/actors")
    _wait_for(driver, lambda t: "Authentication Token Required" in t, "Ray's sign-in dialog")
    _shot(driver, shots / "ray_dashboard_sign_in.png")
    token = subprocess.run([str(BIN / "ray"), "get-auth-token"], env=env, capture_output=True, text=True, check=True).stdout
    driver.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(token.strip())
    next(b for b in driver.find_elements(By.TAG_NAME, "button") if b.text.strip().upper() == "SUBMIT").click()
    text = _wait_for(driver, lambda t: "ImplicitFunc" in t, "the trial actors (ImplicitFunc)")
    _shot(driver, shots / "ray_dashboard_actors.png")
    return text


def _mlflow_ui(uri: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [str(BIN / "mlflow"), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += ["--uvicorn-opts", "--timeout-worker-healthcheck 120"]  # a loaded machine imports the app slowly
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    try:
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok,
            120,
            what="mlflow ui",
            interval_s=1,
            proc=proc,
            log=log,
        )
    except AssertionError:
        proc.kill()
        raise
    return proc


def test_dashboard_and_mlflow_ui_in_chromium(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    ray_tmp = Path(tempfile.mkdtemp(prefix="rbr", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # token auth for this search only; PYTHONPATH: this checkout's raymlops, whatever the venv has installed
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_TMPDIR": str(ray_tmp), "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable, "-m", "raymlops.tune", "+experiment=smoke", "tune.num_samples=2", "train.epochs=4", "scheduler=fifo",
        "data.image_size=32",  # smoke is 16 px: at 32 px the search outlasts the dashboard sign-in below
        "ray.num_cpus=2", "ray.include_dashboard=true", "console.progress=plain", f"mlflow.tracking_uri={uri}", f"mlflow.artifact_location={tmp_path}/artifacts",
        f"mlflow.spool_dir={tmp_path}/spool", f"storage_path={tmp_path}/results",
    ]  # fmt: skip
    search = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert search.stdout is not None
        for line in search.stdout:
            lines.append(line)
            if re.search(r"trial \w+ started", line):
                break
        dashboard = re.search(r"dashboard: (http://\S+) \(token auth: .*`ray get-auth-token`", "".join(lines))
        assert dashboard, "".join(lines)[-3000:]
        _sign_in_to_dashboard(browser, dashboard.group(1), env, tmp_path)
        lines += search.stdout.readlines()
        assert search.wait(timeout=300) == 0, "".join(lines)[-3000:]
    finally:
        if search.poll() is None:
            search.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    output = "".join(lines)
    assert not [n for n in NOISE if n in output], output[-3000:]
    assert re.search(r"trial \w+ epoch 1/4 val_acc=", output) and "Done: best val_acc=" in output

    link = re.search(
        r"then open http://127\.0\.0\.1:5000(/#/experiments/(\d+)/runs/(\w+)\?workflowType=machine_learning)", output
    )
    assert link, output[-3000:]
    path, experiment_id, parent_id = link.groups()
    port = free_port()
    ui = _mlflow_ui(uri, port, tmp_path / "mlflow_ui.log")
    try:
        base = f"http://127.0.0.1:{port}"
        c = tracking.client(uri)
        parent = c.get_run(parent_id)
        children = c.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
        assert len(children) == 2

        browser.get(base + path)  # the parent run's page, as printed
        _wait_for(browser, lambda t: parent.info.run_name in t and "synthetic" in t, "the parent run with its data set")
        _shot(browser, tmp_path / "mlflow_parent_run.png")

        browser.get(f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
        text = _wait_for(browser, lambda t: "synthetic (" in t, "the runs table with the Dataset column")
        assert "Token Usage" not in text and "Run Name" in text, "the training-runs view, not the GenAI overview"
        assert not any(ch.info.run_name in text for ch in children), "child runs are folded under their parent"
        row = browser.find_element(By.XPATH, f"//*[@role='row'][.//*[contains(text(), '{parent.info.run_name[:12]}')]]")
        row.find_element(By.TAG_NAME, "button").click()  # the row's expander
        _wait_for(browser, lambda t: all(ch.info.run_name in t for ch in children), "the child runs under the parent")
        _shot(browser, tmp_path / "mlflow_runs_nested.png")

        browser.get(
            f"{base}/#/experiments/{experiment_id}/runs/{parent_id}/artifacts/search/learning_curves.png?workflowType=machine_learning"
        )
        _wait_for(browser, lambda t: "learning_curves.png" in t and "parallel_coordinates.png" in t, "the search plots")
        _shot(browser, tmp_path / "mlflow_learning_curves.png")
    finally:
        ui.terminate()
        ui.wait(timeout=30)
