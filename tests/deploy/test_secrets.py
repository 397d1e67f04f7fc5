"""`make secrets`: every secret generated once, consistent, kept on the next run."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from .conftest import DEPLOY


def _run(folder: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "make_secrets.py"), str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_secrets_are_generated_consistent_and_kept(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    first = _run(folder)
    assert "first supervisor login 'supervisor'" in first
    read = {p.name: p.read_text().strip() for p in folder.iterdir() if p.is_file()}
    for name in (
        "rabbitmq_password",
        "mongo_root_password",
        "mongo_app_password",
        "thread_key",
        "service_token",
        "grafana_admin_password",
        "supervisor_password",
    ):
        assert len(read[name]) >= 24, name
    assert len(set(read[n] for n in read if n.endswith(("password", "key", "token")))) == 7
    assert read["amqp_url"] == f"amqp://switchboard:{read['rabbitmq_password']}@rabbitmq:5672/"
    assert f"default_pass = {read['rabbitmq_password']}" in read["rabbitmq.conf"]
    assert read["mongodb_url"].startswith(
        f"mongodb://{read['mongo_app_user']}:{read['mongo_app_password']}@mongo:27017/"
    )
    [person] = json.loads(read["gateway_users.json"])["people"]
    assert person["role"] == "supervisor"
    assert person["password"] == read["supervisor_password"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert "SB_SMTP_TLS_CERT_FILE" not in read["ingestion.env"]

    mailboxes = 'SB_MAILBOXES=[{"address": "support@example.org", "service": "support"}]\n'
    with (folder / "ingestion.env").open("a") as settings:
        settings.write(mailboxes)
    (folder / "tls" / "smtp.crt").write_text("certificate")
    (folder / "tls" / "smtp.key").write_text("key")
    assert "all present" in _run(folder)
    again = {p.name: p.read_text().strip() for p in folder.iterdir() if p.is_file()}
    assert {k: v for k, v in again.items() if k != "ingestion.env"} == {
        k: v for k, v in read.items() if k != "ingestion.env"
    }
    assert "SB_SMTP_TLS_CERT_FILE=/run/tls/smtp.crt" in again["ingestion.env"]
    assert mailboxes.strip() in again["ingestion.env"], "the operator's settings are kept"
