"""The search postings: which cases have a term, read by ``_id`` only (pure shapes and packing).

A term is a normalised fact a search asks for: a word (``w:``), a subject word (``s:``), a
contact-name word (``n:``), an address (``a:``), a disposition (``d:``), a status (``st:``), a
work status (``ws:``), and ``*`` (every case). Its cases are kept in parts, one per service and
bucket of case numbers (``BUCKET`` numbers each): ``_id`` = ``term|service|bucket``, the numbers
packed as unsigned 32-bit integers in one binary field (a document array costs the server time
per element to read; one binary string does not). A head document per term (``_id`` = term)
names its parts, so a search reads the heads, then only the parts that exist, newest bucket
first.

The last activity of every case is kept beside them, one document per bucket (``act|bucket``:
seconds since the epoch per case, packed the same way), and the ``activity`` document holds each
bucket's highest and lowest last activity, so a search ordered by last activity reads older
buckets only while one of their cases could still be on the page.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

Document = dict[str, Any]
BUCKET = 16_384
"""Case numbers per part: a part of a term every case has stays under 64 KiB."""
ANY = "*"
ACTIVITY = "activity"
MY_TOP = 50
"""My Cases rows kept in each agent's document (the first pages read nothing else)."""


def terms_of(entry: Document) -> set[str]:
    """Every term a search can ask for that the case's index entry holds."""
    found = {ANY, f"st:{entry.get('status')}", f"ws:{entry.get('work_status')}"}
    words = entry.get("words") or []
    found |= {f"w:{w}" for w in (words.split() if isinstance(words, str) else words)}
    found |= {f"s:{w}" for w in entry.get("subject_words") or []}
    found |= {f"n:{w}" for w in entry.get("name_words") or []}
    found |= {f"a:{a}" for a in entry.get("addresses") or []}
    found |= {f"d:{d}" for d in entry.get("dispositions") or []}
    return found


def bucket_of(number: int) -> int:
    return number // BUCKET


def part_key(term: str, service: str, bucket: int) -> str:
    return f"{term}|{service}|{bucket}"


def part_name(service: str, bucket: int) -> str:
    """How a head names one of its parts."""
    return f"{service}|{bucket}"


def split_part(name: str) -> tuple[str, int]:
    service, _, bucket = name.rpartition("|")
    return service, int(bucket)


def activity_key(bucket: int) -> str:
    return f"act|{bucket}"


def seconds(at: datetime) -> int:
    return int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp())


def pack(numbers: Iterable[int]) -> bytes:
    """Sorted, distinct, little-endian unsigned 32-bit integers."""
    packed = array("I", sorted(set(numbers)))
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def unpack(data: bytes | None) -> list[int]:
    found = array("I")
    found.frombytes(bytes(data or b""))
    if sys.byteorder != "little":
        found.byteswap()
    return found.tolist()


def with_number(data: bytes | None, number: int, present: bool) -> bytes:
    """The packed numbers with ``number`` added (``present``) or removed."""
    numbers = set(unpack(data))
    if present:
        numbers.add(number)
    else:
        numbers.discard(number)
    return pack(numbers)


def empty_activity() -> bytes:
    return bytes(4 * BUCKET)


def with_activity(data: bytes | None, number: int, at: int) -> bytes:
    """The bucket's packed last activities with the case's set (0: no such case)."""
    slots = array("I")
    slots.frombytes(bytes(data or empty_activity()))
    if sys.byteorder != "little":
        slots.byteswap()
    slots[number % BUCKET] = at
    if sys.byteorder != "little":
        slots.byteswap()
    return slots.tobytes()


def activity_at(data: bytes | None, number: int) -> int:
    if not data:
        return 0
    offset = 4 * (number % BUCKET)
    return int.from_bytes(bytes(data[offset : offset + 4]), "little")


def agent_key(agent_id: str) -> str:
    """The agent's document: their cases' marks (``n``) and the rows of the first ``MY_TOP``."""
    return f"agent|{agent_id}"


def my_order(marks: dict[int, tuple[int, bool]], include_closed: bool = True) -> list[int]:
    """My Cases order: open first, then by last activity, newest first."""
    return [
        number
        for is_open, _, number in sorted(
            ((is_open, at, number) for number, (at, is_open) in marks.items()),
            reverse=True,
        )
        if include_closed or is_open
    ]


def pack_marks(marks: dict[int, tuple[int, bool]]) -> bytes:
    """An agent's cases for My Cases: (case number, last activity, open) per case, packed."""
    flat = array("I")
    for number, (at, is_open) in sorted(marks.items()):
        flat.extend((number, at, int(is_open)))
    if sys.byteorder != "little":
        flat.byteswap()
    return flat.tobytes()


def unpack_marks(data: bytes | None) -> dict[int, tuple[int, bool]]:
    flat = array("I")
    flat.frombytes(bytes(data or b""))
    if sys.byteorder != "little":
        flat.byteswap()
    return {flat[i]: (flat[i + 1], bool(flat[i + 2])) for i in range(0, len(flat), 3)}


def agent_document(
    agent_id: str, marks: dict[int, tuple[int, bool]], rows: dict[int, Document], version: int = 1
) -> Document:
    """The agent's document: every case's mark, and the rows of the first ``MY_TOP`` in My
    Cases order (``rows`` may hold more; only those are kept)."""
    top = my_order(marks)[:MY_TOP]
    return {
        "_id": agent_key(agent_id),
        "n": pack_marks(marks),
        "rows": {str(n): rows[n] for n in top if n in rows},
        "v": version,
    }


class Bulk:
    """The part, activity and head contents of whole buckets of entries, as ``refresh`` would
    leave them (for a bulk load: each bucket must be complete)."""

    def __init__(self) -> None:
        self.docs: list[Document] = []
        self.heads: dict[str, set[str]] = {}
        self.bounds: dict[int, tuple[int, int]] = {}


def bulk_documents(entries: Iterable[Document]) -> Bulk:
    """See :class:`Bulk`."""
    parts: dict[str, set[int]] = {}
    heads: dict[str, set[str]] = {}
    activity: dict[int, array[int]] = {}
    bounds: dict[int, tuple[int, int]] = {}
    for entry in entries:
        number, service = int(entry["number"]), str(entry["service"])
        bucket = bucket_of(number)
        for term in terms_of(entry):
            parts.setdefault(part_key(term, service, bucket), set()).add(number)
            heads.setdefault(term, set()).add(part_name(service, bucket))
        at = seconds(entry["last_activity"])
        activity.setdefault(bucket, array("I", bytes(4 * BUCKET)))[number % BUCKET] = at
        low, high = bounds.get(bucket, (at, at))
        bounds[bucket] = (min(low, at), max(high, at))
    if sys.byteorder != "little":
        for slots in activity.values():
            slots.byteswap()
    bulk = Bulk()
    bulk.docs = [{"_id": key, "n": pack(numbers), "v": 1} for key, numbers in parts.items()]
    bulk.docs += [
        {"_id": activity_key(b), "n": slots.tobytes(), "v": 1} for b, slots in activity.items()
    ]
    bulk.heads, bulk.bounds = heads, bounds
    return bulk
