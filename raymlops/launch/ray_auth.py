"""Joining a Ray cluster that has token authentication on, without the user knowing about RAY_AUTH_MODE.

Ray 2.60 starts every `ray start --head` with token auth, but a process that joins it by address runs with
auth off unless RAY_AUTH_MODE=token was in its environment when Ray was imported; it then retries the GCS
for a minute, a line per second, and ends in a ConnectionError. Before ray.init, raymlops asks the GCS once
(ray_internals.probe_gcs): with the token where Ray keeps it, token mode is turned on; without a usable token,
or with nothing listening, the search stops within seconds with one line that says what to set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from raymlops import ray_internals
from raymlops.config.schema import RayConfig
from raymlops.core.errors import UserError

MODE_ENV, TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = "~/.ray/auth_token"
PROBE_TIMEOUT_S = 5.0
# No "NAME=value" in the messages: the console masks whatever follows a secret-looking name and "=" or ":".
WHERE_TOKENS_GO = (
    f"set {TOKEN_ENV} to the cluster's token, or {TOKEN_PATH_ENV} to a file holding it, or write it to "
    f"{DEFAULT_TOKEN_FILE} (`ray get-auth-token` on the head prints it)"
)


@dataclass(frozen=True)
class Token:
    value: str
    source: str  # where it was found, for messages; never the token itself


def find_token() -> Token | None:
    """The token Ray itself would use, in Ray's order: RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names,
    ~/.ray/auth_token. A RAY_AUTH_TOKEN_PATH that cannot be read is an error, as it is to Ray."""
    if os.environ.get(TOKEN_ENV, "").strip():
        return Token(os.environ[TOKEN_ENV].strip(), TOKEN_ENV)
    named = os.environ.get(TOKEN_PATH_ENV, "").strip()
    if named:
        try:
            value = Path(named).expanduser().read_text().strip()
        except OSError as err:
            raise UserError(
                f"{TOKEN_PATH_ENV} names {named}, which cannot be read ({err.strerror}): point it at the token file, or unset it"
            ) from None
        if not value:
            raise UserError(f"{TOKEN_PATH_ENV} names {named}, which is empty: write the cluster's token into it, or unset it")
        return Token(value, f"{TOKEN_PATH_ENV} ({named})")
    default = Path(DEFAULT_TOKEN_FILE).expanduser()
    if default.is_file() and default.read_text().strip():
        return Token(default.read_text().strip(), DEFAULT_TOKEN_FILE)
    return None


def cluster_address(ray_config: RayConfig) -> tuple[str, str] | None:
    """The address a search joins and what named it (ray.address wins over RAY_ADDRESS); None: a local cluster."""
    if ray_config.address:
        return ray_config.address, "ray.address"
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    return None


def gcs_address(address: str) -> str | None:
    """host:port of the GCS an address names; None for what Ray resolves itself ("auto", "local") and for
    Ray Client (ray://) addresses, which do not go to the GCS."""
    if address in ("auto", "local") or "://" in address:
        return None
    return address


def prepare_join(address: str, named_by: str) -> None:
    """Before ray.init(address=...): refuse at once what cannot join, and turn token mode on when the
    cluster wants the token found here. named_by says where the address came from, for the messages."""
    gcs = gcs_address(address)
    if gcs is None:
        return
    disabled = os.environ.get(MODE_ENV, "").lower() == "disabled"
    token = None if disabled else find_token()
    outcome = ray_internals.probe_gcs(gcs, token.value if token else None, PROBE_TIMEOUT_S)
    if outcome.startswith("unreachable"):
        raise UserError(
            f"Nothing answers at {address} ({named_by}; {outcome.split(': ', 1)[1]}): start the head there with "
            f"`ray start --head --port={gcs.rsplit(':', 1)[-1]}`, or fix the address"
        )
    if outcome == "unauthenticated":
        raise UserError(_refused(address, token, disabled))
    if token is not None and os.environ.get(MODE_ENV, "").lower() != "token":
        ray_internals.use_token_auth()


def _refused(address: str, token: Token | None, disabled: bool) -> str:
    if disabled:
        return f"The Ray cluster at {address} requires token authentication, but {MODE_ENV} is 'disabled' here. Unset it, then {WHERE_TOKENS_GO}"
    if token is None:
        return f"The Ray cluster at {address} requires token authentication and no token was found here. To join it, {WHERE_TOKENS_GO}"
    return f"The Ray cluster at {address} refused the token found in {token.source}, which belongs to another cluster. To join it, {WHERE_TOKENS_GO}"
