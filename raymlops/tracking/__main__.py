"""`python -m raymlops.tracking replay | fail`: send the points spooled during a tracker outage; close the runs
of a failed pipeline task as FAILED with the reason."""

from __future__ import annotations

import argparse
import os

from raymlops.core.console import print_result
from raymlops.core.errors import cli
from raymlops.core.redact import redact_text
from raymlops.tracking.client import check_reachable, fail_pipeline_runs
from raymlops.tracking.spool import replay_dir


@cli
def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m raymlops.tracking",
        description="Replay MLflow points spooled during a tracker outage; close a failed pipeline task's runs.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("replay", help="send spooled points to the tracking server, then delete the spool files")
    rp.add_argument("--spool-dir", default=".raymlops/spool")
    rp.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///.raymlops/mlflow.db"))
    fail = sub.add_parser("fail", help="close a failed pipeline task's runs as FAILED with the reason as a tag")
    fail.add_argument("--pipeline-run", required=True, help="the task's raymlops.pipeline_run tag ($RAYMLOPS_PIPELINE_RUN)")
    fail.add_argument("--reason", required=True)
    fail.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///.raymlops/mlflow.db"))
    args = parser.parse_args(argv)
    check_reachable(args.tracking_uri)
    if args.cmd == "fail":
        changed = fail_pipeline_runs(args.tracking_uri, args.pipeline_run, args.reason)
        print(f"marked {len(changed)} run(s) of {args.pipeline_run} FAILED: {', '.join(changed) or '(none found)'}")
        print_result({"failed_runs": ",".join(changed)})
        return
    sent, files = replay_dir(args.tracking_uri, args.spool_dir)
    print(f"replayed {sent} spooled batch(es) from {files} file(s) in {args.spool_dir} to {redact_text(args.tracking_uri)}")


if __name__ == "__main__":
    main()
