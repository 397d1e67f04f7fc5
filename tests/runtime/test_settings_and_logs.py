"""Settings read from the environment and secret files; logs carry the message's correlation id."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from switchboard.contracts import ConsumerQueue, Event
from switchboard.runtime.logs import configure_logging
from switchboard.runtime.service import Runtime
from switchboard.runtime.settings import ServiceSettings


class ExtraSettings(ServiceSettings):
    smtp_port: int = 2525


def test_every_service_reads_the_same_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SB_PREFETCH", "7")
    monkeypatch.setenv("SB_SMTP_PORT", "2600")
    settings = ExtraSettings()
    assert settings.prefetch == 7
    assert settings.smtp_port == 2600
    assert settings.database_name("routing") == "switchboard_routing"


def test_a_secret_comes_from_a_file_and_is_never_printed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "amqp_url"
    secret.write_text("amqp://svc:s3cret-pass@rabbit:5672/\n")
    monkeypatch.setenv("SB_AMQP_URL_FILE", str(secret))
    settings = ServiceSettings()
    assert settings.amqp_url.get_secret_value() == "amqp://svc:s3cret-pass@rabbit:5672/"
    assert "s3cret-pass" not in repr(settings)
    assert "s3cret-pass" not in str(settings.model_dump())


def test_bad_settings_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SB_PREFETCH", "0")
    with pytest.raises(ValueError, match="prefetch"):
        ServiceSettings()


class Greeted(Event):
    NAME = "test.greeted"


async def test_every_log_line_of_a_handler_carries_the_correlation_id(
    make_settings: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = Runtime("kit", make_settings(log_format="json"))
    handled: list[str] = []

    async def greet(event: Greeted) -> None:
        structlog.get_logger("test").info("greeting the customer")
        handled.append(str(event.correlation_id))

    runtime.bus.consume(ConsumerQueue("test.greetings", (Greeted.NAME,)), Greeted, greet)
    event = Greeted()
    async with runtime.app:
        await runtime.bus.publish(event)
        for _ in range(100):
            if handled:
                break
            await asyncio.sleep(0.1)
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    greeting = [x for x in lines if x.get("event") == "greeting the customer"]
    assert greeting, lines
    assert greeting[0]["correlation_id"] == str(event.correlation_id)
    assert greeting[0]["service"] == "kit"
    assert greeting[0]["message_name"] == "test.greeted"
    configure_logging("kit", log_format="console")


def test_a_reply_queue_name_is_never_a_label_value() -> None:
    from switchboard.runtime.metrics import stable_destination

    assert (
        stable_destination("default.gateway.replies.host-1.3f9a0c1d") == "default.gateway.replies"
    )
    assert (
        stable_destination("switchboard.routing.offer.answer") == "switchboard.routing.offer.answer"
    )
