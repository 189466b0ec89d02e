"""Users and permissions on a basic-auth tracking server, through MLflow's own auth client
(`mlflow.server.get_app_client("basic-auth", ...)`), authenticated as the admin from
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD. A new user's password comes from an
environment variable or a prompt, never from argv."""

from __future__ import annotations

import getpass
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from raymlops.core.errors import UserError
from raymlops.core.redact import redact_text

PASSWORD_ENV = "RAYMLOPS_USER_PASSWORD"
PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")


def auth_client(tracking_uri: str) -> Any:
    """MLflow's AuthServiceClient (loading it warns about Starlette's WSGI middleware: silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow.server import get_app_client

        return get_app_client("basic-auth", tracking_uri=tracking_uri)


@contextmanager
def mlflow_errors(what: str, tracking_uri: str) -> Iterator[None]:
    """MLflow's RestException/MlflowException and connection errors as one paragraph, without the password."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as err:
        raise UserError(f"{what} on {redact_text(tracking_uri)} failed: {redact_text(err.message)[:400]}") from None
    except OSError as err:  # requests' ConnectionError and SSLError are OSErrors
        raise UserError(f"{what}: {redact_text(tracking_uri)} is unreachable ({type(err).__name__}).") from None


def new_password(name: str) -> str:
    """The new user's password: $RAYMLOPS_USER_PASSWORD, else asked twice on the terminal."""
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    if not sys.stdin.isatty():
        raise UserError(f"user add {name}: set {PASSWORD_ENV} or run it on a terminal to be asked (passwords never go in argv).")
    first = getpass.getpass(f"password for {name}: ")
    if first != getpass.getpass("again: "):
        raise UserError("the two passwords differ; nothing was changed.")
    return first


def add_user(tracking_uri: str, name: str, password: str) -> None:
    with mlflow_errors(f"user add {name}", tracking_uri):
        auth_client(tracking_uri).create_user(name, password)


def remove_user(tracking_uri: str, name: str) -> None:
    with mlflow_errors(f"user remove {name}", tracking_uri):
        auth_client(tracking_uri).delete_user(name)


def list_users(tracking_uri: str) -> list[dict[str, Any]]:
    """Every user (name, admin flag): MLflow's client has no list call, so its own request helper
    and route constant are used."""
    auth = auth_client(tracking_uri)  # imports mlflow.server (quietly) before its routes
    from mlflow.server.auth.routes import LIST_USERS

    with mlflow_errors("user list", tracking_uri):
        reply = auth._request(LIST_USERS, "GET")
    return [{"username": u["username"], "is_admin": u.get("is_admin", False)} for u in reply.get("users", [])]


def resource(tracking_uri: str, experiment: str | None, model: str | None) -> tuple[str, str]:
    """(resource_type, resource_id) for --experiment NAME|ID or --model NAME."""
    if (experiment is None) == (model is None):
        raise UserError("name exactly one of --experiment EXP or --model NAME.")
    if model is not None:
        return "registered_model", model
    assert experiment is not None
    from mlflow.tracking import MlflowClient

    with mlflow_errors(f"looking up experiment {experiment}", tracking_uri):
        exp = MlflowClient(tracking_uri).get_experiment_by_name(experiment)
    if exp is not None:
        return "experiment", str(exp.experiment_id)
    if str(experiment).isdigit():
        return "experiment", str(experiment)
    raise UserError(f"experiment {experiment} does not exist on {redact_text(tracking_uri)}.")


def grant(tracking_uri: str, name: str, kind_and_id: tuple[str, str], permission: str) -> None:
    if permission not in PERMISSIONS:
        raise UserError(f"--permission {permission}: use one of {', '.join(PERMISSIONS)}.")
    with mlflow_errors(f"grant {name} {permission}", tracking_uri):
        auth_client(tracking_uri).grant_user_permission(name, kind_and_id[0], kind_and_id[1], permission)


def revoke(tracking_uri: str, name: str, kind_and_id: tuple[str, str]) -> None:
    with mlflow_errors(f"revoke {name}", tracking_uri):
        auth_client(tracking_uri).revoke_user_permission(name, kind_and_id[0], kind_and_id[1])
