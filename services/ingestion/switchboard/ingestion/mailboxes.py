"""Mailbox configuration: which addresses we receive for, and the service each belongs to.

A mailbox is an address (``support@example.com``, or ``*@example.com`` for a whole domain) and
the service (routing queue) its mail goes to; it may also name an IMAP account to poll. No I/O
here except :func:`load_mailboxes`, which reads the JSON file named by a setting.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class ImapSource(BaseModel):
    """An IMAP account polled for one mailbox."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    port: int = Field(default=993, ge=1, le=65535)
    tls: Literal["ssl", "starttls", "none"] = Field(
        default="ssl", description="ssl: implicit TLS (993); starttls: upgrade on 143, required"
    )
    tls_verify: bool = True
    ca_file: Path | None = Field(default=None, description="CA bundle for a private server CA")
    user: str
    password: SecretStr | None = None
    password_env: str | None = Field(default=None, description="environment variable to read")
    password_file: Path | None = None
    folder: str = "INBOX"
    after: Literal["seen", "move", "delete"] = Field(
        default="seen", description="what to do with a message once stored and published"
    )
    move_to: str = "Processed"
    idle: bool = True
    poll_seconds: float = Field(default=60.0, gt=0)
    timeout_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_password(self) -> ImapSource:
        given = [p for p in (self.password, self.password_env, self.password_file) if p]
        if len(given) != 1:
            raise ValueError("give exactly one of password, password_env, password_file")
        return self

    def secret(self) -> str:
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise LookupError(f"environment variable {self.password_env} is not set")
            return value
        assert self.password_file is not None
        return self.password_file.read_text(encoding="utf-8").strip()


class Mailbox(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    service: str = Field(min_length=1)
    imap: ImapSource | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.strip().lower()
        local, at, domain = value.rpartition("@")
        if not at or not local or not domain or " " in value:
            raise ValueError("must be local@domain or *@domain")
        return value


class MailboxDirectory:
    """Finds the mailbox of a recipient: exact address, then without +tag, then *@domain."""

    def __init__(self, mailboxes: list[Mailbox]) -> None:
        self._by_address: dict[str, Mailbox] = {}
        for mailbox in mailboxes:
            if mailbox.address in self._by_address:
                raise ValueError(f"mailbox {mailbox.address} is configured twice")
            self._by_address[mailbox.address] = mailbox

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_address.values())

    def __len__(self) -> int:
        return len(self._by_address)

    def find(self, recipient: str) -> Mailbox | None:
        address = recipient.strip().strip("<>").lower()
        local, at, domain = address.rpartition("@")
        if not at:
            return None
        found = self._by_address.get(address)
        if found is None and "+" in local:
            found = self._by_address.get(f"{local.split('+', 1)[0]}@{domain}")
        return found or self._by_address.get(f"*@{domain}")

    def get(self, address: str) -> Mailbox | None:
        return self._by_address.get(address.strip().lower())


def load_mailboxes(file: Path | None, inline: list[Mailbox]) -> MailboxDirectory:
    """Mailboxes from the JSON file (a list, or {"mailboxes": [...]}) plus the inline ones."""
    found = list(inline)
    if file is not None:
        data = json.loads(file.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = data.get("mailboxes", [])
        found.extend(Mailbox.model_validate(item) for item in data)
    return MailboxDirectory(found)
