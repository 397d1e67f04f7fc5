"""The envelope every message carries, and the rule for changing a message.

Versioning rule
---------------
Every message has a stable ``NAME`` (its routing key) and a ``VERSION`` (``schema_version`` on
the wire). Within one version a producer may only *add optional fields* (with a default); it may
not remove, rename or retype a field, nor make an optional field required, nor narrow the values a
field accepts. Consumers ignore fields they do not know, so an older consumer keeps working while
a newer producer rolls out. Any other change is a new version: bump ``VERSION``, keep consuming the
old one until no producer sends it, and a consumer refuses (dead-letters) a version it does not
speak, naming ``schema_version`` as the field at fault.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

_REGISTRY: dict[str, type[Message]] = {}


def _single_line(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("must be a single line (no CR or LF)")
    return value


SingleLine = Annotated[str, AfterValidator(_single_line)]
"""Text that may end up in a mail or protocol header: a CR or LF is refused (no injection)."""


class Message(BaseModel):
    """Envelope fields shared by every event and command."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    NAME: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    KIND: ClassVar[Literal["event", "command"]]

    message_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    correlation_id: uuid.UUID = Field(default=None, validate_default=False)  # type: ignore[assignment]
    causation_id: uuid.UUID | None = None
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    schema_version: int = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("NAME")
        if name:
            if name in _REGISTRY and _REGISTRY[name].__qualname__ != cls.__qualname__:
                raise TypeError(f"message name {name!r} is defined twice")
            _REGISTRY[name] = cls

    @model_validator(mode="before")
    @classmethod
    def _root_correlation(cls, data: Any) -> Any:
        """A message that starts a conversation is its own correlation."""
        if isinstance(data, dict) and data.get("correlation_id") is None:
            data = dict(data)
            data.setdefault("message_id", uuid.uuid4())
            data["correlation_id"] = data["message_id"]
        if isinstance(data, dict) and "schema_version" not in data:
            data = {**data, "schema_version": cls.VERSION}
        return data

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int, info: ValidationInfo) -> int:
        if value != cls.VERSION:
            raise ValueError(f"{cls.NAME} version {value} is not spoken here (only {cls.VERSION})")
        return value

    @classmethod
    def caused_by(cls, parent: Message, *, key: str = "", **fields: Any) -> Self:
        """A message that follows from ``parent``.

        It shares the parent's correlation id, names the parent as its cause, and takes an id
        derived from the parent's: a redelivered parent produces the very same child, which the
        next consumer then recognises as already handled.
        """
        return cls(
            message_id=uuid.uuid5(parent.message_id, f"{cls.NAME}:{key}"),
            correlation_id=parent.correlation_id,
            causation_id=parent.message_id,
            **fields,
        )


class Event(Message):
    """Something that happened; named in the past tense."""

    KIND: ClassVar[Literal["event", "command"]] = "event"


class Command(Message):
    """A request that one owning service do something; it may be refused."""

    KIND: ClassVar[Literal["event", "command"]] = "command"


class Refusal(BaseModel):
    """Why a command was not carried out, in words a person can act on."""

    model_config = ConfigDict(frozen=True)

    code: str
    message: str
    field: str | None = None


class Outcome(BaseModel):
    """The answer to a command sent with a reply address."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    result: dict[str, Any] = Field(default_factory=dict)
    error: Refusal | None = None


def message_class(name: str) -> type[Message]:
    """The class registered under a routing key."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no message is named {name!r}") from None


def registered_messages() -> dict[str, type[Message]]:
    """Every message defined so far, by name (import the domain modules first)."""
    return dict(_REGISTRY)
