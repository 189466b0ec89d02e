"""Backup and restore of a tracking server's state: pg_dump of the tracking and auth databases
(runs, metrics, registry, users, permissions) plus a copy of the artifact folder and TLS pair.

    python -m raymlops.server backup  --state .raymlops --to backups/2026-12-01
    python -m raymlops.server restore --from backups/2026-12-01 --state .raymlops-restored
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
import subprocess
from pathlib import Path

from raymlops.core.errors import UserError
from raymlops.server.postgres import AUTH_DB, HOST, PG_USER, TRACKING_DB, as_postgres_cmd, pg_bin, pg_running, start_postgres
from raymlops.server.postgres import stop_postgres as _stop_postgres
from raymlops.server.processes import Settings, artifact_destination

DUMPS = {TRACKING_DB: "tracking.dump", AUTH_DB: "auth.dump"}


def _run(cmd: list[str], what: str, **io: object) -> None:
    proc = subprocess.run(as_postgres_cmd(cmd), stderr=subprocess.PIPE, **io)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise UserError(f"{what} failed: {proc.stderr.decode(errors='replace').strip()[-800:]}")


def backup(state: Path, to: Path) -> dict[str, object]:
    """Dump both databases (PostgreSQL running or started for the dump) and copy the artifacts; return the manifest."""
    settings = Settings.load(state)
    if settings is None or not (state / "pgdata" / "PG_VERSION").is_file():
        raise UserError(f"{state} holds no tracking server (no server.json / pgdata). Pass the --state it was started with.")
    if to.exists() and any(to.iterdir()):
        raise UserError(f"--to {to} is not empty; pick a new folder for each backup.")
    to.mkdir(parents=True, exist_ok=True)
    to.chmod(0o700)  # password hashes, the TLS key
    was_running = pg_running(state / "pgdata")
    start_postgres(state, settings.pg_port)
    try:
        for db, name in DUMPS.items():
            with open(to / name, "wb") as out:
                _run(
                    [pg_bin("pg_dump"), "-Fc", "-h", HOST, "-p", str(settings.pg_port), "-U", PG_USER, db],
                    f"pg_dump {db}",
                    stdout=out,
                )
    finally:
        if not was_running:
            _stop_postgres(state)
    destination = artifact_destination(state, settings)
    copied = "://" not in destination
    if copied and Path(destination).is_dir():
        shutil.copytree(destination, to / "artifacts")
    elif copied:
        (to / "artifacts").mkdir()
    if settings.tls_cert and settings.tls_key:
        (to / "tls").mkdir()
        shutil.copy2(settings.tls_cert, to / "tls" / "server.crt")
        shutil.copy2(settings.tls_key, to / "tls" / "server.key")
    manifest: dict[str, object] = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": dataclasses.asdict(settings),
        "databases": DUMPS,
        "artifacts": "artifacts" if copied else f"not copied: they live in {destination} (sync that bucket separately)",
    }
    (to / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def restore(source: Path, state: Path, port: int | None = None, pg_port: int | None = None) -> Settings:
    """Into a fresh state folder: initdb, pg_restore both dumps, copy artifacts and TLS back; PostgreSQL is left stopped."""
    manifest_path = source / "manifest.json"
    if not manifest_path.is_file():
        raise UserError(f"--from {source} is not a backup (no manifest.json).")
    if (state / "pgdata").exists():
        raise UserError(f"--state {state} already holds a server (pgdata); restore goes into a fresh folder.")
    manifest = json.loads(manifest_path.read_text())
    saved = Settings(**manifest["settings"])
    settings = dataclasses.replace(saved, port=port or saved.port, pg_port=pg_port or saved.pg_port)
    if manifest["artifacts"] == "artifacts":
        shutil.copytree(source / "artifacts", state / "mlartifacts")
        settings = dataclasses.replace(settings, artifacts=None)
    if (source / "tls").is_dir():
        shutil.copytree(source / "tls", state / "tls")
        (state / "tls" / "server.key").chmod(0o600)
        settings = dataclasses.replace(
            settings, tls_cert=str(state / "tls" / "server.crt"), tls_key=str(state / "tls" / "server.key")
        )
    start_postgres(state, settings.pg_port)
    try:
        for db, name in manifest["databases"].items():
            with open(source / name, "rb") as dump:
                cmd = [
                    pg_bin("pg_restore"),
                    "--no-owner",
                    "--exit-on-error",
                    "-h",
                    HOST,
                    "-p",
                    str(settings.pg_port),
                    "-U",
                    PG_USER,
                ]
                _run([*cmd, "-d", db], f"pg_restore {db}", stdin=dump)
    finally:
        _stop_postgres(state)
    settings.save(state)
    return settings
