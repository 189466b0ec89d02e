"""`python -m raymlops.server`: start/stop/status the shared tracking server, manage its users and
permissions, back it up and restore it. Admin credentials only from MLFLOW_TRACKING_USERNAME/PASSWORD."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any

from raymlops.core.errors import UserError, cli
from raymlops.core.redact import redact_text
from raymlops.server import backup, tls, users
from raymlops.server.postgres import start_postgres
from raymlops.server.processes import PERMISSIONS, Settings, start_mlflow, status, stop

START_FIELDS = ("port", "pg_port", "artifacts", "auth", "default_permission", "tls_cert", "tls_key")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m raymlops.server", description="PostgreSQL + MLflow tracking server on 127.0.0.1.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state", default=".raymlops", help="folder for pgdata, artifacts, logs, pid files and server.json")
    sub = p.add_subparsers(dest="cmd", required=True)
    add = functools.partial(sub.add_parser, parents=[common])
    start = add("start", help="start PostgreSQL and mlflow server (unset options: as last started)")
    start.add_argument("--port", type=int)
    start.add_argument("--pg-port", type=int)
    start.add_argument(
        "--auth", action=argparse.BooleanOptionalAction, help="basic auth; admin from MLFLOW_TRACKING_USERNAME/PASSWORD"
    )
    start.add_argument("--default-permission", choices=PERMISSIONS, help="what users get on what nobody granted (default READ)")
    start.add_argument(
        "--artifacts-destination", dest="artifacts", help="e.g. s3://bucket/mlflow (MLFLOW_S3_ENDPOINT_URL for MinIO)"
    )
    start.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    start.add_argument("--tls-key", help="PEM private key of --tls-cert")
    start.add_argument("--no-tls", action="store_true", help="plain HTTP again on a state folder started with TLS")
    start.add_argument(
        "--tls-self-signed", action="store_true", help="make (once) and use <state>/tls/server.{crt,key} for 127.0.0.1"
    )
    for name, text in (("stop", "stop both processes (data kept)"), ("status", "running or not")):
        other = add(name, help=text)
        other.add_argument("--port", type=int, help=argparse.SUPPRESS)  # accepted (and ignored) like start's
        other.add_argument("--pg-port", type=int, help=argparse.SUPPRESS)
    user = add("user", help=f"user add NAME (password from ${users.PASSWORD_ENV} or a prompt) | list | remove NAME")
    user.add_argument("action", choices=["add", "list", "remove"])
    user.add_argument("name", nargs="?")
    for name, text in (("grant", "give NAME a permission on one experiment or registered model"), ("revoke", "take it back")):
        g = add(name, help=text)
        g.add_argument("name")
        g.add_argument("--experiment", help="experiment name (or id)")
        g.add_argument("--model", help="registered model name")
        if name == "grant":
            g.add_argument("--permission", required=True, choices=PERMISSIONS)
    b = add("backup", help="pg_dump of tracking + auth data, artifacts copied")
    b.add_argument("--to", required=True, type=Path)
    r = add("restore", help="a backup into a fresh --state; then start it")
    r.add_argument("--from", dest="source", required=True, type=Path)
    r.add_argument("--port", type=int)
    r.add_argument("--pg-port", type=int)
    for s in (user, *(sub.choices[n] for n in ("grant", "revoke"))):
        s.add_argument("--tracking-uri", help="default: the server started under --state, else $MLFLOW_TRACKING_URI")
    return p


def start_settings(state: Path, args: argparse.Namespace) -> Settings:
    """Options given now, else those the state folder was last started (or restored) with, else defaults."""
    base = dataclasses.asdict(Settings.load(state) or Settings())
    given = {k: getattr(args, k) for k in START_FIELDS if getattr(args, k, None) is not None}
    if args.tls_self_signed:
        cert, key = tls.self_signed(state)
        given.update(tls_cert=str(cert), tls_key=str(key))
    if args.no_tls:
        given.update(tls_cert=None, tls_key=None)
    if bool(given.get("tls_cert", base["tls_cert"])) != bool(given.get("tls_key", base["tls_key"])):
        raise UserError("--tls-cert and --tls-key go together.")
    return Settings(**{**base, **given})


def tracking_uri(state: Path, args: argparse.Namespace) -> str:
    settings = Settings.load(state)
    if settings and settings.tls_cert:
        os.environ.setdefault(tls.CERT_ENV, settings.tls_cert)  # the admin on this machine trusts its own server
    uri = args.tracking_uri or (settings.url if settings else None) or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise UserError("no server: pass --tracking-uri, set MLFLOW_TRACKING_URI, or point --state at a started server.")
    if not str(uri).startswith(("http://", "https://")):
        raise UserError(
            f"users and permissions live on an MLflow server, and {redact_text(str(uri))} is not one: pass "
            "--tracking-uri https://HOST:PORT or point --state at a server started with python -m raymlops.server start."
        )
    if not os.environ.get("MLFLOW_TRACKING_USERNAME"):
        raise UserError("managing users needs the admin in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD.")
    return str(uri)


def run_user(state: Path, args: argparse.Namespace) -> None:
    uri = tracking_uri(state, args)
    if args.action == "list":
        for u in users.list_users(uri):
            print(f"{u['username']}{'  (admin)' if u['is_admin'] else ''}")
        return
    if not args.name:
        raise UserError(f"user {args.action} needs a NAME.")
    if args.action == "add":
        users.add_user(uri, args.name, users.new_password(args.name))
        print(f"added user {args.name}")
    else:
        users.remove_user(uri, args.name)
        print(f"removed user {args.name}")


def run_grant(state: Path, args: argparse.Namespace) -> None:
    uri = tracking_uri(state, args)
    target = users.resource(uri, args.experiment, args.model)
    if args.cmd == "grant":
        users.grant(uri, args.name, target, args.permission)
        print(f"{args.name}: {args.permission} on {target[0]} {args.experiment or args.model}")
    else:
        users.revoke(uri, args.name, target)
        print(f"{args.name}: grant on {target[0]} {args.experiment or args.model} revoked")


def run_start(state: Path, args: argparse.Namespace) -> None:
    settings = start_settings(state, args)
    backend = start_postgres(state, settings.pg_port)
    start_mlflow(state, settings, backend)
    print(
        f"MLflow server at {settings.url} (backend {redact_text(backend)}, artifacts proxied)\n  export MLFLOW_TRACKING_URI={settings.url}"
    )
    if settings.tls_cert:
        print(f"  export {tls.CERT_ENV}={settings.tls_cert}")


@cli
def main(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    state = Path(args.state).resolve()
    state.mkdir(parents=True, exist_ok=True)
    commands: dict[str, Any] = {"start": run_start, "user": run_user, "grant": run_grant, "revoke": run_grant}
    if args.cmd in commands:
        commands[args.cmd](state, args)
    elif args.cmd == "stop":
        stop(state)
        print(f"stopped the MLflow server and PostgreSQL under {state} (data kept)")
    elif args.cmd == "status":
        print(status(state))
    elif args.cmd == "backup":
        manifest = backup.backup(state, args.to.resolve())
        print(f"backed up {state} to {args.to}: {json.dumps(manifest['databases'])}; artifacts: {manifest['artifacts']}")
    else:
        settings = backup.restore(args.source.resolve(), state, args.port, args.pg_port)
        print(f"restored {args.source} into {state}; start it: python -m raymlops.server start --state {state}  ({settings.url})")
