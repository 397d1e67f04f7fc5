"""Generate the production stack's secrets into a git-ignored folder (``make secrets``).

Idempotent: a secret that exists is kept (rotating one is deleting its file and re-running,
see docs/operations.md). Standard library only, so it runs before ``uv`` is installed.
Each secret is one file, read by the containers as a Docker secret (``SB_<NAME>_FILE``, the
images' own ``*_FILE`` variables, or a RabbitMQ ``conf.d`` snippet).

    python3 deploy/make_secrets.py deploy/secrets [--supervisor supervisor]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

RABBITMQ_USER = "switchboard"
MONGO_ROOT_USER = "root"
MONGO_APP_USER = "switchboard"


INGESTION_ENV = """\
# The mail edge's settings (docs/ingestion.md), read by the ingestion container.
# Mailboxes, e.g.:
# SB_MAILBOXES=[{"address": "support@example.org", "service": "support"}]
# STARTTLS on SMTP in: put tls/smtp.crt and tls/smtp.key here and run `make secrets` again.
"""
TLS_LINES = "SB_SMTP_TLS_CERT_FILE=/run/tls/smtp.crt\nSB_SMTP_TLS_KEY_FILE=/run/tls/smtp.key\n"


def _token(nbytes: int = 24) -> str:
    # URL-safe without escaping: these passwords go into amqp:// and mongodb:// URLs as is.
    return secrets.token_hex(nbytes)


def _keep_or_write(folder: Path, name: str, value: str) -> str:
    path = folder / name
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.write_text(value + "\n", encoding="utf-8")
    # Readable by the container's own user (a bind mount keeps the mode); the folder is 0700.
    path.chmod(0o644)
    return value


def generate(folder: Path, *, supervisor: str = "supervisor") -> list[str]:
    """Create what is missing; returns the names of the files written now."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    before = {p.name for p in folder.iterdir()}
    keep = lambda name, value: _keep_or_write(folder, name, value)  # noqa: E731

    rabbit_password = keep("rabbitmq_password", _token())
    keep("rabbitmq_user", RABBITMQ_USER)
    keep("amqp_url", f"amqp://{RABBITMQ_USER}:{rabbit_password}@rabbitmq:5672/")
    keep(
        "rabbitmq.conf",
        f"default_user = {RABBITMQ_USER}\ndefault_pass = {rabbit_password}\n"
        "default_user_tags.administrator = true\n",
    )

    keep("mongo_root_user", MONGO_ROOT_USER)
    keep("mongo_root_password", _token())
    keep("mongo_app_user", MONGO_APP_USER)
    app_password = keep("mongo_app_password", _token())
    keep(
        "mongodb_url",
        f"mongodb://{MONGO_APP_USER}:{app_password}@mongo:27017/?authSource=admin",
    )

    keep("thread_key", _token(32))
    keep("service_token", _token(32))
    keep("grafana_admin_password", _token(16))
    password = keep("supervisor_password", _token(12))
    keep(
        "gateway_users.json",
        json.dumps(
            {
                "people": [
                    {
                        "id": supervisor,
                        "name": "First supervisor",
                        "role": "supervisor",
                        "password": password,
                    }
                ]
            },
            indent=2,
        ),
    )
    tls = folder / "tls"
    tls.mkdir(exist_ok=True)
    tls.chmod(0o755)  # the container user reads it through the bind mount
    # The mail edge's own settings (mailboxes, SMTP options): the operator's file, created once.
    settings = folder / "ingestion.env"
    if not settings.exists():
        settings.write_text(INGESTION_ENV, encoding="utf-8")
        settings.chmod(0o644)
    text = settings.read_text(encoding="utf-8")
    if (tls / "smtp.crt").exists() and (tls / "smtp.key").exists() and TLS_LINES not in text:
        settings.write_text(text + TLS_LINES, encoding="utf-8")
    return sorted({p.name for p in folder.iterdir()} - before)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=Path("deploy/secrets"))
    parser.add_argument("--supervisor", default="supervisor", help="the first supervisor's login")
    args = parser.parse_args(argv)
    os.umask(0o077)
    written = generate(args.folder, supervisor=args.supervisor)
    if written:
        print(f"secrets: wrote {', '.join(written)} into {args.folder}/")
        if "supervisor_password" in written:
            print(
                f"secrets: first supervisor login '{args.supervisor}', its password is in "
                f"{args.folder}/supervisor_password"
            )
    else:
        print(f"secrets: all present in {args.folder}/ (kept)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
