"""`python -m raymlops.registry list NAME | promote NAME VERSION | alias NAME ALIAS VERSION | rollback NAME`:
the Model Registry's versions and aliases (`--tracking-uri` for a server)."""

from __future__ import annotations

import argparse
import os

from raymlops.core.console import table
from raymlops.core.errors import UserError, cli
from raymlops.post.registry import rollback, set_alias, versions
from raymlops.tracking import check_reachable


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
    args = parser.parse_args(argv)
    check_reachable(args.tracking_uri)
    if args.cmd == "list":
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


if __name__ == "__main__":
    main()
