"""One settings pattern for every service: environment variables prefixed ``SB_``.

A service subclasses :class:`ServiceSettings` and adds its own fields; they read from the same
prefix. Any secret (``SecretStr``) can instead come from a file named by ``SB_<FIELD>_FILE``
(Docker and Kubernetes secrets); secrets never appear in logs or reprs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SB_"


class ServiceSettings(BaseSettings):
    """Settings every service has; see the README's settings table."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    amqp_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    mongodb_url: SecretStr = SecretStr("mongodb://127.0.0.1:27017/")
    database_prefix: str = Field(
        default="switchboard", description="each service uses the database <prefix>_<service>"
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    prefetch: int = Field(default=16, ge=1, description="unacked messages per consumer")
    max_attempts: int = Field(default=5, ge=1, description="tries before a message is dead")
    retry_delay_seconds: float = Field(default=2.0, gt=0, description="first retry delay")
    retry_delay_max_seconds: float = Field(default=60.0, gt=0)
    graceful_timeout_seconds: float = Field(default=20.0, gt=0)
    queue_type: Literal["classic", "quorum"] = Field(
        default="classic",
        description="type of the consumer, retry and dead queues; quorum for a RabbitMQ cluster "
        "(an existing queue keeps its type: see docs/operations.md)",
    )
    broker_lost_exit_seconds: float = Field(
        default=60.0, gt=0, description="exit (to be restarted) after the broker is gone this long"
    )
    mongo_lost_exit_seconds: float = Field(
        default=60.0,
        gt=0,
        description="exit (to be restarted, with a fresh database client) after MongoDB has "
        "not answered this long",
    )
    broker_reconnect_seconds: float = Field(
        default=1.0,
        gt=0,
        description="pause between attempts to reach a lost broker: the mail in flight waits "
        "up to this long after the broker is back",
    )
    handling_lease_seconds: float = Field(
        default=15.0,
        gt=0,
        description="a handler's claim lease, renewed every third of it while it works; "
        "a crashed consumer's claim is taken over after this",
    )
    processed_ttl_days: int = Field(default=7, ge=1, description="idempotency memory")
    otlp_endpoint: str | None = Field(
        default=None,
        description="OpenTelemetry collector (OTLP/HTTP, e.g. http://jaeger:4318): traces on; "
        "unset or empty: off",
    )
    development: bool = Field(
        default=False,
        description="development defaults (`make run`, the tests): threading's built-in key, "
        "service APIs served without a service token; never in production",
    )
    service_token: SecretStr | None = Field(
        default=None,
        description="bearer token every service HTTP API asks for and every service sends",
    )
    log_format: Literal["json", "console", "auto"] = "auto"
    log_level: str = "INFO"

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name, field in cls.model_fields.items():
            if field.annotation is not SecretStr and field.annotation != SecretStr | None:
                continue
            path = os.environ.get(f"{ENV_PREFIX}{name.upper()}_FILE")
            if path and name not in data:
                data = {**data, name: Path(path).read_text(encoding="utf-8").strip()}
        return data

    def database_name(self, service: str) -> str:
        return f"{self.database_prefix}_{service}"
