"""`python -m raymlops.registry list NAME | promote NAME VERSION | alias NAME ALIAS VERSION | rollback NAME`:
the Model Registry's versions and aliases (`--tracking-uri` for a server). For pipelines (pipelines/):
`register NAME MODEL_URI --run-id RUN --test-acc X`, `decide NAME VERSION` (the champion rule a search uses) and
`check NAME --test-acc X --max-drop D` (fails when @champion fell below its registered accuracy)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from raymlops.core.console import print_result, table
from raymlops.core.errors import UserError, cli
from raymlops.post.model_registry import alias_version, check_regression, decide_champion, register, rollback, set_alias, versions
from raymlops.tracking import check_reachable

EXIT_REGRESSION = 3  # `check`: the model regressed (2 stays a usage error)


@cli
def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m raymlops.registry", description="List, promote and roll back registered models."
    )
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///.raymlops/mlflow.db"))
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="versions, aliases and test metrics").add_argument("name")
    p = sub.add_parser("promote", help="point the champion alias at VERSION")
    p.add_argument("name")
    p.add_argument("version")
    a = sub.add_parser("alias", help="point ALIAS (e.g. challenger for raymlops.serve) at VERSION")
    for arg in ("name", "alias", "version"):
        a.add_argument(arg)
    sub.add_parser("rollback", help="point champion back at the previous champion").add_argument("name")
    _pipeline_commands(sub)
    args = parser.parse_args(argv)
    check_reachable(args.tracking_uri)
    if args.cmd in ("register", "decide", "check"):
        print_result(_run_pipeline_command(args))
    elif args.cmd == "list":
        print(table(versions(args.tracking_uri, args.name), ["version", "aliases", "test_acc", "run_id", "decision"]))
    elif args.cmd in ("promote", "alias"):
        alias = args.alias if args.cmd == "alias" else "champion"
        try:
            set_alias(args.tracking_uri, args.name, alias, args.version)
        except UserError:
            raise
        except Exception as err:
            raise UserError(
                f"Cannot point {args.name}@{alias} at v{args.version}: {err}. See python -m raymlops.registry list {args.name}."
            ) from None
        print(f"{args.name}: {alias} -> v{args.version}")
    else:
        print(f"{args.name}: champion rolled back to v{rollback(args.tracking_uri, args.name)}")


def _pipeline_commands(sub: Any) -> None:
    r = sub.add_parser("register", help="register MODEL_URI as NAME, tagged with its test metrics, and point candidate at it")
    r.add_argument("name")
    r.add_argument("model_uri")
    r.add_argument("--run-id", required=True, help="the run that trained the model")
    r.add_argument("--test-acc", type=float, required=True)
    r.add_argument("--test-loss", type=float)
    r.add_argument("--evaluation-run-id", default="")
    d = sub.add_parser("decide", help="move champion to VERSION per --policy (what a search does after registering)")
    d.add_argument("name")
    d.add_argument("version")
    d.add_argument("--policy", choices=["if_better", "always", "never"], default="if_better")
    d.add_argument("--min-improvement", type=float, default=0.0)
    c = sub.add_parser("check", help="fail (exit 3) and tag the version when ALIAS's --test-acc fell more than --max-drop")
    c.add_argument("name")
    c.add_argument("--alias", default="champion")
    c.add_argument("--test-acc", type=float, required=True, help="accuracy measured now (python -m raymlops.evaluate)")
    c.add_argument("--max-drop", type=float, required=True, help="allowed fall below the accuracy recorded at registration")


def _run_pipeline_command(args: argparse.Namespace) -> dict[str, Any]:
    uri = args.tracking_uri
    if args.cmd == "register":
        metrics = {"test_acc": args.test_acc, "evaluation_run_id": args.evaluation_run_id}
        if args.test_loss is not None:
            metrics["test_loss"] = args.test_loss
        version = register(uri, args.model_uri, args.name, args.run_id, metrics)
        print(f"Registered {args.name} v{version} as @candidate ({args.model_uri}, test_acc={args.test_acc:.4f})")
        return {"model_name": args.name, "version": version, "model_uri": f"models:/{args.name}/{version}"}
    if args.cmd == "decide":
        decision = decide_champion(uri, args.name, args.version, args.policy, min_improvement=args.min_improvement)
        print(f"{args.name}: {decision}")
        return {
            "model_name": args.name,
            "version": args.version,
            "champion": alias_version(uri, args.name, "champion"),
            "decision": decision,
        }
    version, reason = check_regression(uri, args.name, args.alias, args.test_acc, args.max_drop)
    if reason:
        print(
            f"raymlops: error: {args.name}@{args.alias} (v{version}) regressed: {reason}; tagged raymlops.regression",
            file=sys.stderr,
        )
        print_result({"model_name": args.name, "version": version, "regression": reason})
        raise SystemExit(EXIT_REGRESSION)
    print(f"{args.name}@{args.alias} (v{version}): test_acc {args.test_acc:.4f} holds (allowed drop {args.max_drop})")
    return {"model_name": args.name, "version": version, "regression": None}


if __name__ == "__main__":
    main()
