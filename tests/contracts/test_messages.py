"""Every message round-trips through JSON and refuses bad input, naming the field."""

from __future__ import annotations

import importlib
import pkgutil
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import switchboard.contracts as contracts
from switchboard.contracts import Event, Message, registered_messages
from switchboard.contracts.mail import EmailOutboundRequested

for module in pkgutil.walk_packages(contracts.__path__, "switchboard.contracts."):
    importlib.import_module(module.name)


def _sample(annotation: Any, name: str) -> Any:
    """A valid value for a field, built from its type (enough for every contract field)."""
    from typing import Literal, Union, get_args, get_origin

    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Literal:
        return args[0]
    if origin in (Union, getattr(__import__("types"), "UnionType", None)):
        return _sample(next(a for a in args if a is not type(None)), name)
    if origin is list:
        return [_sample(args[0], name)]
    if origin is dict:
        return {_sample(args[0], name): _sample(args[1], name)}
    if getattr(annotation, "__metadata__", None):
        return _sample(args[0], name)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {
            k: _sample(f.annotation, k)
            for k, f in annotation.model_fields.items()
            if f.is_required()
        }
    if annotation is str:
        return "someone@example.com" if "address" in name or name == "sender" else "x"
    if annotation is bool:
        return True
    if annotation is int:
        return 1
    if annotation is float:
        return 1.5
    if annotation is uuid.UUID:
        return str(uuid.uuid4())
    if annotation is datetime or "datetime" in str(annotation).lower():
        return "2026-11-23T10:00:00+00:00"
    raise AssertionError(f"no sample for {name}: {annotation}")


def _valid(cls: type[Message]) -> dict[str, Any]:
    envelope = set(Message.model_fields)
    return {
        name: _sample(f.annotation, name)
        for name, f in cls.model_fields.items()
        if f.is_required() and name not in envelope
    }


MESSAGES = sorted(
    (name, cls) for name, cls in registered_messages().items() if not name.startswith("test.")
)


def test_every_message_has_a_unique_dotted_name() -> None:
    assert MESSAGES, "no message registered"
    for name, cls in MESSAGES:
        assert "." in name and name == name.lower(), name
        assert cls.KIND in ("event", "command")


@pytest.mark.parametrize(("name", "cls"), MESSAGES, ids=[n for n, _ in MESSAGES])
def test_round_trips_through_json(name: str, cls: type[Message]) -> None:
    original = cls(**_valid(cls))
    again = cls.model_validate_json(original.model_dump_json())
    assert again == original
    assert again.schema_version == cls.VERSION
    assert again.occurred_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(("name", "cls"), MESSAGES, ids=[n for n, _ in MESSAGES])
def test_bad_input_is_refused_naming_the_field(name: str, cls: type[Message]) -> None:
    with pytest.raises(ValidationError) as caught:
        cls(**{**_valid(cls), "message_id": "not-a-uuid"})
    assert "message_id" in [e["loc"][0] for e in caught.value.errors()]
    for missing in sorted(_valid(cls)):
        fields = _valid(cls)
        del fields[missing]
        with pytest.raises(ValidationError) as caught:
            cls(**fields)
        assert missing in {str(e["loc"][0]) for e in caught.value.errors()}


@pytest.mark.parametrize(("name", "cls"), MESSAGES, ids=[n for n, _ in MESSAGES])
def test_an_unknown_version_is_refused(name: str, cls: type[Message]) -> None:
    body = cls(**_valid(cls)).model_dump(mode="json")
    body["schema_version"] = cls.VERSION + 1
    with pytest.raises(ValidationError) as caught:
        cls.model_validate(body)
    assert caught.value.errors()[0]["loc"] == ("schema_version",)


def test_unknown_fields_from_a_newer_producer_are_ignored() -> None:
    class Probe(Event):
        NAME = "test.probe-tolerant"
        value: int

    assert Probe.model_validate({"value": 1, "added_later": "x"}).value == 1


def test_occurred_at_is_normalised_to_utc() -> None:
    class Timed(Event):
        NAME = "test.timed"

    at = datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    assert Timed(occurred_at=at).occurred_at == at
    assert Timed(occurred_at=at).occurred_at.tzinfo is not None
    assert Timed(occurred_at=at).occurred_at.utcoffset() == timedelta(0)
    with pytest.raises(ValidationError, match="occurred_at"):
        Timed(occurred_at=datetime(2026, 3, 29, 3, 30))


def test_a_child_message_inherits_correlation_and_has_a_stable_id() -> None:
    class Parent(Event):
        NAME = "test.parent"

    class Child(Event):
        NAME = "test.child"

    parent = Parent()
    assert parent.correlation_id == parent.message_id
    first, again = Child.caused_by(parent), Child.caused_by(parent)
    assert first.message_id == again.message_id != parent.message_id
    assert first.correlation_id == parent.correlation_id
    assert first.causation_id == parent.message_id
    assert Child.caused_by(parent, key="b").message_id != first.message_id


def test_a_name_cannot_be_defined_twice() -> None:
    with pytest.raises(TypeError, match="defined twice"):

        class Other(Event):
            NAME = "email.received"


@pytest.mark.parametrize("field", ["subject", "internet_message_id"])
def test_outbound_headers_cannot_carry_a_line_break(field: str) -> None:
    fields: dict[str, Any] = {
        "outbound_id": "o1",
        "sender": {"address": "support@example.com"},
        "to": [{"name": "Ann", "address": "ann@example.org"}],
        "subject": "Your case",
        "text": "hello",
        "internet_message_id": "<a@b>",
    }
    fields[field] = "Hello\r\nBcc: victim@example.org"
    with pytest.raises(ValidationError) as caught:
        EmailOutboundRequested(**fields)
    assert caught.value.errors()[0]["loc"] == (field,)


def test_an_outbound_display_name_cannot_inject_a_header() -> None:
    with pytest.raises(ValidationError) as caught:
        EmailOutboundRequested(
            outbound_id="o1",
            sender={"address": "support@example.com"},
            to=[{"name": "Ann\nBcc: x@y", "address": "ann@example.org"}],
            subject="s",
            text="t",
            internet_message_id="<a@b>",
        )
    assert caught.value.errors()[0]["loc"][:3] == ("to", 0, "name")


def test_an_outbound_address_must_be_deliverable_in_form() -> None:
    with pytest.raises(ValidationError, match="local@domain"):
        EmailOutboundRequested(
            outbound_id="o1",
            sender={"address": "support@example.com"},
            to=[{"address": "not an address"}],
            subject="s",
            text="t",
            internet_message_id="<a@b>",
        )
