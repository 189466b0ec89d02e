"""Redaction of credentials before anything is printed, logged or sent to MLflow."""

from __future__ import annotations

import os
import re
from typing import Any

# Keys whose values never leave the process in clear text (params, tags, printed configs, logs).
SECRET_WORDS = ("password", "passwd", "token", "secret", "key", "credential", "auth")
REDACTED = "***"

# scheme://user:password@host  ->  scheme://user:***@host
_URI_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@")
# key=value / key: value pairs whose key looks like a credential, inside free text
_INLINE_SECRET = re.compile(
    r"(?P<key>\b[\w.\-]*(?:" + "|".join(SECRET_WORDS) + r")[\w.\-]*)(?P<sep>\s*[=:]\s*)(?P<val>[^\s,;'\"}]+)",
    re.IGNORECASE,
)
_NOT_SECRET_KEYS = {"run_key", "raymlops.run_key", "sort_key", "key_metric"}


def is_secret_key(key: str) -> bool:
    """True for names such as `db_password`, `MLFLOW_TRACKING_TOKEN`, `aws.secret_key`."""
    last = key.rsplit(".", 1)[-1].lower()
    if key.lower() in _NOT_SECRET_KEYS or last in _NOT_SECRET_KEYS:
        return False
    return any(word in last for word in SECRET_WORDS)


def redact_uri(text: str) -> str:
    return _URI_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)


def redact_text(text: str) -> str:
    """Redact URI credentials, `password=...`-style pairs and the values of secret env vars."""
    out = redact_uri(text)
    out = _INLINE_SECRET.sub(lambda m: m.group(0) if not is_secret_key(m["key"]) else f"{m['key']}{m['sep']}{REDACTED}", out)
    for name in list(os.environ):  # not .items(): other threads (MLflow) edit the environment
        value = os.environ.get(name)
        if value and len(value) >= 4 and is_secret_key(name) and value in out:
            out = out.replace(value, REDACTED)
    return out


def redact(obj: Any, key: str = "") -> Any:
    """Return a copy of a nested dict/list with secret-looking keys and URI passwords redacted."""
    if isinstance(obj, dict):
        return {k: redact(v, f"{key}.{k}" if key else str(k)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(redact(v, key) for v in obj)
    if key and is_secret_key(key) and obj not in (None, "", False):
        return REDACTED
    if isinstance(obj, str):
        return redact_text(obj)
    return obj
