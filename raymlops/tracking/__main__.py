"""`python -m raymlops.tracking replay`: send the points spooled during a tracker outage."""

from __future__ import annotations

import argparse
import os

from raymlops.core.errors import cli
from raymlops.core.redact import redact_text
from raymlops.tracking.client import check_reachable
from raymlops.tracking.spool import replay_dir


@cli
def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m raymlops.tracking", description="Replay MLflow points spooled during a tracker outage."
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("replay", help="send spooled points to the tracking server, then delete the spool files")
    rp.add_argument("--spool-dir", default=".raymlops/spool")
    rp.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///.raymlops/mlflow.db"))
    args = parser.parse_args(argv)
    check_reachable(args.tracking_uri)
    sent, files = replay_dir(args.tracking_uri, args.spool_dir)
    print(f"replayed {sent} spooled batch(es) from {files} file(s) in {args.spool_dir} to {redact_text(args.tracking_uri)}")


if __name__ == "__main__":
    main()
