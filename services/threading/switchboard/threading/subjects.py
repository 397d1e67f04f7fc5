"""Subjects: reply prefixes, the thread tag, and the clean subject of a case.

The tag form is configurable per service (``subject_tag_format``, e.g. ``"[Ref:{thread_id}]"``).
Finding it tolerates what mail clients do to subjects: any number of Re:/Fwd:/AW:/SV:/TR:/WG:
prefixes, changed letter case and spaces added or lost around the tag's punctuation.
"""

from __future__ import annotations

import re
from functools import lru_cache

from switchboard.threading.threadids import LENGTH

DEFAULT_TAG_FORMAT = "[Ref:{thread_id}]"
_PLACEHOLDER = "{thread_id}"

_PREFIX = re.compile(
    r"^\s*(?:(?:re|fw|fwd|aw|wg|sv|vs|tr|antw|rv|enc|odp)\s*(?:\[\d+\]|\(\d+\))?\s*[:\uff1a]\s*)+",
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s+")


def check_tag_format(tag_format: str) -> str:
    if tag_format.count(_PLACEHOLDER) != 1:
        raise ValueError("a subject tag format must contain {thread_id} exactly once")
    prefix, suffix = tag_format.split(_PLACEHOLDER)
    if not prefix.strip() and not suffix.strip():
        raise ValueError("a subject tag format needs some text around {thread_id}")
    if "\r" in tag_format or "\n" in tag_format:
        raise ValueError("a subject tag format must be one line")
    return tag_format


def _loose(literal: str) -> str:
    """A literal whose characters may be separated (or not) by whitespace."""
    return r"\s*".join(re.escape(c) for c in literal if not c.isspace())


@lru_cache(maxsize=64)
def _tag_pattern(tag_format: str) -> re.Pattern[str]:
    prefix, suffix = check_tag_format(tag_format).split(_PLACEHOLDER)
    return re.compile(
        _loose(prefix)
        + r"\s*(?<![A-Za-z0-9])([A-Za-z0-9]{"
        + str(LENGTH)
        + r"})(?![A-Za-z0-9])\s*"
        + _loose(suffix),
        re.IGNORECASE,
    )


def find_tags(subject: str, tag_format: str = DEFAULT_TAG_FORMAT) -> list[str]:
    """Candidate thread identifiers in tag form, upper-cased, in order (not yet verified)."""
    return [m.group(1).upper() for m in _tag_pattern(tag_format).finditer(subject or "")]


def remove_tags(subject: str, tag_format: str = DEFAULT_TAG_FORMAT) -> str:
    return _tag_pattern(tag_format).sub(" ", subject or "")


def strip_prefixes(subject: str) -> str:
    """``Re: AW:Fwd:  Re[2]: Hello`` -> ``Hello`` (prefixes repeated, mixed, badly spaced)."""
    previous = None
    value = subject or ""
    while previous != value:
        previous = value
        value = _PREFIX.sub("", value)
    return value


def clean_subject(subject: str, tag_format: str = DEFAULT_TAG_FORMAT) -> str:
    """The subject without reply prefixes, our tag and surplus spaces."""
    without_tag = remove_tags(subject, tag_format)
    # A tag before the prefixes ("[Ref:X] Re: Hi") leaves prefixes after it: strip again.
    return _SPACES.sub(" ", strip_prefixes(_SPACES.sub(" ", without_tag).strip())).strip()


def tag(thread_id: str, tag_format: str = DEFAULT_TAG_FORMAT) -> str:
    return check_tag_format(tag_format).replace(_PLACEHOLDER, thread_id)


def outbound_subject(
    base: str, *, prefix: str, thread_id: str | None, tag_format: str, with_tag: bool
) -> str:
    """``Re: <clean subject> [Ref:ID]``; ``prefix`` is "Re:", "Fwd:" or ""."""
    clean = clean_subject(base, tag_format)
    parts = [p for p in (prefix, clean) if p]
    if with_tag and thread_id:
        parts.append(tag(thread_id, tag_format))
    return " ".join(parts) or "(no subject)"
