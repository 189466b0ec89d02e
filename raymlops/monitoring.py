"""`python -m raymlops.monitoring start|stop|status`: Debian's `prometheus` as a plain process on 127.0.0.1 that
scrapes every Ray node's metrics port through the service-discovery file Ray writes, and evaluates
monitoring/alerts.yml (make monitoring, make monitoring-stop). Its config, data, log and pid live under
<state>/prometheus/.

The scrape job is the one Ray generates (<session>/metrics/prometheus/prometheus.yml: job `ray`, file_sd over
prom_metrics_service_discovery.json), pointed at the copy Ray keeps in its temp dir, which follows the newest
session, so one Prometheus outlives Ray restarts. The Ray Dashboard's metrics views read this Prometheus when Ray
starts with RAY_PROMETHEUS_HOST=http://127.0.0.1:PORT (docs/guides/monitoring.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import yaml

from raymlops.core.console import print_result
from raymlops.core.errors import Incomplete, UserError, cli

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "monitoring" / "alerts.yml"
# Ray writes <session dir>/prom_metrics_service_discovery.json and links it from its temp dir (ray_constants).
RAY_SD_FILE = Path("/tmp/ray/prom_metrics_service_discovery.json")
STOP_GRACE_S = 10.0


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the Prometheus under one state folder runs; written to <state>/prometheus/settings.json."""

    port: int = 9090
    sd_file: str = str(RAY_SD_FILE)  # Ray's service-discovery file (another --temp-dir: <temp>/prom_metrics_...)
    rules: tuple[str, ...] = (str(RULES),)
    interval: str = "15s"  # scrape and rule evaluation interval (Prometheus duration)
    binary: str = "prometheus"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @classmethod
    def load(cls, home: Path) -> Settings:
        raw = json.loads((home / "settings.json").read_text())
        return cls(**{**raw, "rules": tuple(raw["rules"])})


def config(settings: Settings) -> dict[str, object]:
    """prometheus.yml: Ray's generated scrape job, the rule files, one interval for scraping and evaluation."""
    return {
        "global": {"scrape_interval": settings.interval, "evaluation_interval": settings.interval},
        "rule_files": [str(Path(r).resolve()) for r in settings.rules],
        "scrape_configs": [{"job_name": "ray", "file_sd_configs": [{"files": [settings.sd_file]}]}],
    }


def folder(state: Path) -> Path:
    return state / "prometheus"


def start(state: Path, settings: Settings, timeout_s: float = 60) -> str:
    """Start `prometheus` detached (its own session; pid in <state>/prometheus/prometheus.pid), wait until it is
    ready, return its URL. Already running under this state folder: return its URL."""
    binary = shutil.which(settings.binary)
    if binary is None:
        raise UserError(f"No `{settings.binary}` on PATH: apt-get install -y prometheus (Debian's package).")
    home = folder(state)
    home.mkdir(parents=True, exist_ok=True)
    running = pid(state)
    if running is not None:
        return Settings.load(home).url
    (home / "prometheus.yml").write_text(yaml.safe_dump(config(settings), sort_keys=False))
    (home / "settings.json").write_text(json.dumps(dataclasses.asdict(settings), indent=2) + "\n")
    cmd = [
        binary,
        f"--config.file={home / 'prometheus.yml'}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address={HOST}:{settings.port}",
        "--web.enable-lifecycle",  # POST /-/reload rereads the config and rules
    ]
    log = open(home / "prometheus.log", "ab")  # noqa: SIM115 - handed to the detached process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    (home / "prometheus.pid").write_text(str(proc.pid))
    _wait_ready(settings.url, home / "prometheus.log", proc, timeout_s)
    return settings.url


def _wait_ready(url: str, log: Path, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"{url}/-/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    tail = log.read_text(errors="replace")[-1500:] if log.is_file() else ""
    raise UserError(f"Prometheus at {url} was not ready within {timeout_s:.0f} s (exit {proc.poll()}). Log {log}:\n{tail}")


def pid(state: Path) -> int | None:
    """The pid of this state folder's running Prometheus, or None."""
    path = folder(state) / "prometheus.pid"
    if not path.is_file():
        return None
    number = int(path.read_text())
    try:
        os.kill(number, 0)
    except OSError:
        return None
    return number


def stop(state: Path) -> bool:
    """SIGTERM this state folder's Prometheus (its process group), SIGKILL after STOP_GRACE_S; data is kept.
    False: none was running."""
    number = pid(state)
    (folder(state) / "prometheus.pid").unlink(missing_ok=True)
    if number is None:
        return False
    os.killpg(number, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        try:
            os.killpg(number, 0)
        except OSError:
            return True
        time.sleep(0.1)
    os.killpg(number, signal.SIGKILL)
    return True


def firing_alerts(url: str) -> list[dict[str, object]]:
    """The alerts firing now in the Prometheus at url (its /api/v1/alerts), each {name, labels, summary}."""
    import requests

    try:
        reply = requests.get(f"{url.rstrip('/')}/api/v1/alerts", timeout=10)
        reply.raise_for_status()
        alerts = reply.json()["data"]["alerts"]
    except (requests.RequestException, ValueError, KeyError) as err:
        raise UserError(
            f"Prometheus at {url} did not list its alerts ({err}): start it with `make monitoring`, or pass --url."
        ) from err
    return [
        {"name": a["labels"].get("alertname", ""), "labels": a["labels"], "summary": a.get("annotations", {}).get("summary", "")}
        for a in alerts
        if a.get("state") == "firing"
    ]


def check_alerts(url: str, fail_on: list[str]) -> dict[str, object]:
    """Print the firing alerts; Incomplete (exit 3) when one of fail_on fires (champion_evaluation's drift check)."""
    firing = firing_alerts(url)
    for alert in firing:
        print(f"firing: {alert['name']} {alert['summary']}".rstrip(), flush=True)
    blocking = sorted({str(a["name"]) for a in firing} & set(fail_on))
    if blocking:
        raise Incomplete(
            f"{', '.join(blocking)} firing in {url}: the served model's inputs or answers need a look (docs/guides/monitoring.md)"
        )
    return {"prometheus": url, "firing": len(firing), "checked": ",".join(fail_on)}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m raymlops.monitoring", description="Prometheus on 127.0.0.1 over Ray's metrics, with the alert rules."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state", default=".raymlops", type=Path, help="Prometheus keeps config, data, log and pid in STATE/prometheus"
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    begin = sub.add_parser("start", parents=[common], help="start Prometheus (returns once it is ready)")
    d = Settings()
    begin.add_argument("--port", type=int, default=d.port)
    begin.add_argument("--sd-file", default=d.sd_file, help="Ray's service-discovery file (Ray started with --temp-dir=T: T/...)")
    begin.add_argument("--rules", nargs="+", default=list(d.rules), help="rule files (default monitoring/alerts.yml)")
    begin.add_argument("--interval", default=d.interval, help="scrape and rule evaluation interval, e.g. 15s")
    sub.add_parser("stop", parents=[common], help="stop it (data kept)")
    sub.add_parser("status", parents=[common], help="running or not")
    alerts = sub.add_parser("alerts", help="list the firing alerts; exit 3 when one named by --fail-on fires")
    alerts.add_argument("--url", default=f"http://{HOST}:{d.port}", help="the Prometheus to ask")
    alerts.add_argument(
        "--fail-on", nargs="*", default=[], metavar="ALERT", help="alert names that fail the check, e.g. RaymlopsServeDrift"
    )
    return p


@cli
def main(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    if args.cmd == "start":
        settings = Settings(port=args.port, sd_file=args.sd_file, rules=tuple(args.rules), interval=args.interval)
        url = start(args.state, settings)
        print(f"Prometheus at {url} (targets: {url}/targets, alerts: {url}/alerts); start Ray with RAY_PROMETHEUS_HOST={url}")
    elif args.cmd == "alerts":
        print_result(check_alerts(args.url, args.fail_on))
    elif args.cmd == "stop":
        print("Prometheus stopped" if stop(args.state) else "Prometheus was not running")
    else:
        number = pid(args.state)
        print(f"Prometheus running (pid {number})" if number else "Prometheus not running")


if __name__ == "__main__":
    main()
