"""Reply templates: stored text an agent starts a mail from, filled with the case's fields.

Rules as plain functions, no I/O (the store keeps templates in the ``templates`` collection).

Templates are Jinja2 run in an immutable sandbox: whoever edits a template cannot reach Python
objects, change the values, or make the renderer build huge strings. ``StrictUndefined`` turns a
variable without a value into an error that names it (never a silent blank in a customer's
mail), and the HTML part is autoescaped, so a customer's name such as ``<b>Ann</b>`` cannot
inject markup. Only the variables in :data:`VARIABLES` exist; a template using another one is
refused when saved (or loaded from the configuration file).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape
from pydantic import BaseModel, ConfigDict, Field, model_validator

VARIABLES: dict[str, str] = {
    "case_number": "the case number (e.g. 14355)",
    "customer_name": "the customer's display name (their address when the name is unknown)",
    "customer_address": "the customer's email address",
    "agent_name": "the sending agent's name, as the gateway gives it (agent_name)",
    "subject": "the case subject (without Re: and the thread tag)",
    "thread_id": "the case's thread identifier (minted on the first outbound mail)",
    "service": "the service (queue) the case belongs to",
}
"""Every variable a template may use, with what it holds."""

SAMPLE_VALUES: dict[str, Any] = {
    "case_number": 14355,
    "customer_name": "Ann Customer",
    "customer_address": "ann@example.org",
    "agent_name": "Sam Agent",
    "subject": "Printer broken",
    "thread_id": "JXA6PDRNQ2SO",
    "service": "support",
}
"""Values a template is tried with when saved, so a template that cannot render is refused."""

TEMPLATE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
MAX_SOURCE = 100_000
MAX_OUTPUT = 200_000
PARTS = ("subject", "text", "html")


class TemplateProblem(ValueError):
    """A template cannot be saved or used; ``code`` and ``field`` go into the refusal."""

    def __init__(self, code: str, message: str, field: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, also refusing ``**`` and repeating text or lists with ``*`` (a template
    such as ``{{ 'x' * 10**10 }}`` would otherwise exhaust memory)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            raise SecurityError("the power operator is not allowed in templates")
        if isinstance(left, str | list | tuple) or isinstance(right, str | list | tuple):
            raise SecurityError("repeating text with * is not allowed in templates")
        return super().call_binop(context, operator, left, right)


_PLAIN = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_HTML = _Sandbox(undefined=StrictUndefined, autoescape=True, keep_trailing_newline=True)


def _environment(part: str) -> _Sandbox:
    return _HTML if part == "html" else _PLAIN


def variables_used(source: str, part: str = "text") -> set[str]:
    """The variables a template part refers to (raises ``TemplateSyntaxError``)."""
    env = _environment(part)
    return set(meta.find_undeclared_variables(env.parse(source)))


class ReplyTemplate(BaseModel):
    """One template: a plain-text body (always), optionally an HTML body and a subject."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    template_id: str = Field(pattern=TEMPLATE_ID)
    name: str = Field(min_length=1, max_length=200)
    services: list[str] = Field(
        default_factory=list, description="the services it is offered in; empty: every service"
    )
    subject: str | None = Field(default=None, max_length=998)
    text: str = Field(min_length=1, max_length=MAX_SOURCE)
    html: str | None = Field(default=None, max_length=MAX_SOURCE)

    @model_validator(mode="after")
    def _renders(self) -> ReplyTemplate:
        problem = template_problem(self)
        if problem is not None:
            raise ValueError(f"{problem.field}: {problem.message}")
        return self

    def offered_in(self, service: str) -> bool:
        return not self.services or service in self.services

    def parts(self) -> dict[str, str]:
        found = {"subject": self.subject, "text": self.text, "html": self.html}
        return {part: source for part, source in found.items() if source is not None}

    def variables(self) -> list[str]:
        used: set[str] = set()
        for part, source in self.parts().items():
            used |= variables_used(source, part)
        return sorted(used)


def template_problem(template: ReplyTemplate) -> TemplateProblem | None:
    """Why a template cannot be stored: a syntax error (with its line), an unknown variable,
    or something the sandbox forbids (found by rendering it with sample values)."""
    for part, source in template.parts().items():
        if part == "subject" and ("\r" in source or "\n" in source):
            return TemplateProblem("bad_template", "a subject is a single line", part)
        try:
            unknown = sorted(variables_used(source, part) - set(VARIABLES))
        except TemplateSyntaxError as exc:
            return TemplateProblem(
                "bad_template", f"line {exc.lineno}: {exc.message or 'syntax error'}", part
            )
        if unknown:
            known = ", ".join(VARIABLES)
            return TemplateProblem(
                "unknown_variable",
                f"unknown variable {unknown[0]!r} (a template may use: {known})",
                part,
            )
        try:
            _render_part(part, source, SAMPLE_VALUES)
        except TemplateProblem as problem:
            return TemplateProblem(problem.code, problem.message, part)
    return None


def _render_part(part: str, source: str, values: Mapping[str, Any]) -> str:
    try:
        out = _environment(part).from_string(source).render(**values)
    except UndefinedError as exc:
        raise TemplateProblem("template_variable_missing", str(exc.message), part) from exc
    except SecurityError as exc:
        raise TemplateProblem("template_unsafe", str(exc), part) from exc
    except TemplateError as exc:
        raise TemplateProblem("bad_template", str(exc), part) from exc
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise TemplateProblem("bad_template", f"{type(exc).__name__}: {exc}", part) from exc
    if len(out) > MAX_OUTPUT:
        raise TemplateProblem("bad_template", f"renders to more than {MAX_OUTPUT} characters", part)
    return out


def case_values(
    case: Mapping[str, Any], *, agent_name: str | None, thread_id: str | None
) -> dict[str, Any]:
    """The template variables of a case; a value that is not known is left out, so a template
    using it fails with an error naming it rather than sending a blank."""
    contact = case.get("contact") or {}
    address = str(contact.get("address") or "")
    name = str(contact.get("name") or "").strip() or address
    values: dict[str, Any] = {
        "case_number": case.get("_id"),
        "customer_name": name or None,
        "customer_address": address or None,
        "agent_name": (agent_name or "").strip() or None,
        "subject": case.get("subject"),
        "thread_id": thread_id or case.get("thread_id"),
        "service": case.get("service"),
    }
    return {key: value for key, value in values.items() if value is not None}


def missing_variables(template: ReplyTemplate, values: Mapping[str, Any]) -> list[str]:
    return [name for name in template.variables() if name not in values]


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    text: str
    html: str | None


def render(template: ReplyTemplate, values: Mapping[str, Any]) -> Rendered:
    """Fill the template; raises :class:`TemplateProblem` naming a variable without a value."""
    missing = missing_variables(template, values)
    if missing:
        raise TemplateProblem(
            "template_variable_missing",
            f"template {template.template_id!r} uses {missing[0]!r}, which has no value here"
            + (" (the command gave no agent_name)" if missing[0] == "agent_name" else ""),
            missing[0] if missing[0] == "agent_name" else "template_id",
        )
    out = {part: _render_part(part, source, values) for part, source in template.parts().items()}
    subject = out.get("subject")
    if subject is not None:
        subject = " ".join(subject.split())
    return Rendered(subject=subject or None, text=out["text"], html=out.get("html"))


def text_to_html(text: str) -> str:
    """Plain text as HTML paragraphs (escaped; single line breaks kept)."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]
    return "".join(
        Markup("<p>{}</p>").format(Markup("<br>\n").join(escape(line) for line in p.split("\n")))
        for p in paragraphs
    )


def compose(rendered: Rendered, *, text: str, html: str | None) -> tuple[str, str | None]:
    """The mail's text and HTML: the agent's own words first, then the template.

    When either side has HTML, the HTML part carries both (the other side converted from its
    text), so a mail client showing only the HTML never loses a part.
    """
    plain = "\n\n".join(part for part in (text.strip("\n"), rendered.text) if part.strip())
    if html is None and rendered.html is None:
        return plain, None
    mine = html if html is not None else text_to_html(text)
    theirs = rendered.html if rendered.html is not None else text_to_html(rendered.text)
    return plain, "\n".join(part for part in (mine, theirs) if part.strip())
