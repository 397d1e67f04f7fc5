"""Mailbox configuration: file, environment, lookup rules (no servers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from switchboard.ingestion.app import IngestionSettings
from switchboard.ingestion.mailboxes import ImapSource, Mailbox, MailboxDirectory, load_mailboxes

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "ingestion.json"


def test_lookup_exact_plus_tag_and_domain_wildcard() -> None:
    directory = MailboxDirectory(
        [
            Mailbox(address="Support@Switchboard.Local", service="support"),
            Mailbox(address="*@sales.example.com", service="sales"),
        ]
    )
    assert directory.find("<support@switchboard.local>").service == "support"  # type: ignore[union-attr]
    assert directory.find("SUPPORT+urgent@switchboard.local").service == "support"  # type: ignore[union-attr]
    assert directory.find("anyone@sales.example.com").service == "sales"  # type: ignore[union-attr]
    assert directory.find("other@switchboard.local") is None
    assert directory.find("not-an-address") is None


def test_a_mailbox_configured_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="twice"):
        MailboxDirectory(
            [Mailbox(address="a@x.y", service="s"), Mailbox(address="A@x.y", service="t")]
        )


def test_demo_file_and_environment_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SB_MAILBOXES_FILE", str(DEMO))
    monkeypatch.setenv(
        "SB_MAILBOXES", json.dumps([{"address": "vip@switchboard.local", "service": "vip"}])
    )
    settings = IngestionSettings()
    directory = load_mailboxes(settings.mailboxes_file, settings.mailboxes)
    assert directory.find("support@switchboard.local").service == "support"  # type: ignore[union-attr]
    assert directory.find("sales@switchboard.local").service == "sales"  # type: ignore[union-attr]
    assert directory.find("vip@switchboard.local").service == "vip"  # type: ignore[union-attr]
    monkeypatch.delenv("SB_MAILBOXES_FILE")
    monkeypatch.delenv("SB_MAILBOXES")
    assert len(load_mailboxes(IngestionSettings().mailboxes_file, [])) == 0


def test_imap_password_from_env_or_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SUPPORT_IMAP_PASSWORD", "from-env")
    assert ImapSource(host="h", user="u", password_env="SUPPORT_IMAP_PASSWORD").secret() == (
        "from-env"
    )
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    assert ImapSource(host="h", user="u", password_file=secret).secret() == "from-file"
    with pytest.raises(ValidationError, match="exactly one"):
        ImapSource(host="h", user="u")
    source = ImapSource(host="h", user="u", password="inline")
    assert "inline" not in repr(source)
