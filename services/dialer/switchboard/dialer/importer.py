"""Reading record files, streamed: CSV (with a header row) and JSON lines.

Bytes come in chunks of any size; rows come out one at a time with the line they start on,
either as a normalised record or as the reason they are bad. Nothing is dropped silently: every
non-blank line ends up counted as imported, updated or bad (with line number and reason).

CSV columns (case-insensitive):
``external_id`` (or ``id``; default: the first number), ``name`` (or ``first_name`` +
``last_name``), numbers in ``phone``, ``phone2``, ``phone_3``... typed by a ``<column>_type``
column, or in ``<type>_phone`` columns (``mobile_phone``, ``work_phone``...), ``time_zone``
(``timezone``, ``tz``); every other column becomes a custom field.

JSON lines: one object per line with ``external_id``, ``name``, ``phones`` (a list of
``{"number", "type"}`` or of strings) or ``phone``, ``time_zone``, ``fields``; other scalar keys
become custom fields.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from switchboard.dialer.domain import Phone, valid_zone
from switchboard.dialer.domain.numbers import phone_number

_PHONE_N = re.compile(r"^phone_?(\d+)?$")
_TYPED_PHONE = re.compile(r"^([a-z]+)_phone$")
_ZONE_COLUMNS = ("time_zone", "timezone", "tz")


@dataclass(frozen=True)
class ParsedRow:
    line: int
    external_id: str
    name: str
    phones: list[Phone]
    time_zone: str | None
    fields: dict[str, str]


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


@dataclass
class LineSplitter:
    """Decodes UTF-8 chunks and yields complete physical lines (``\\n`` kept)."""

    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    )
    rest: str = ""

    def feed(self, chunk: bytes) -> list[str]:
        parts = (self.rest + self.decoder.decode(chunk)).split("\n")
        self.rest = parts.pop()
        return [part + "\n" for part in parts]

    def close(self) -> list[str]:
        text = self.rest + self.decoder.decode(b"", final=True)
        self.rest = ""
        return [text] if text else []


def build_row(
    line: int,
    *,
    external_id: str | None,
    name: str,
    phones: list[tuple[str, str, str]],
    time_zone: str | None,
    fields: dict[str, str],
    region: str,
) -> ParsedRow | BadRow:
    """Validate one row: ``phones`` are (where, raw number, type)."""
    name = name.strip()
    if not name:
        return BadRow(line, "name is missing")
    normalised: list[Phone] = []
    for where, raw, kind in phones:
        if not raw.strip():
            continue
        try:
            number, zones = phone_number(raw, region)
        except ValueError as exc:
            return BadRow(line, f"{where}: {exc}")
        if any(p.number == number for p in normalised):
            continue
        normalised.append(
            Phone(
                number=number,
                type=(kind or "other").strip().lower() or "other",
                zones=zones,
            )
        )
    if not normalised:
        return BadRow(line, "no phone number")
    zone_name = (time_zone or "").strip() or None
    if zone_name is not None and not valid_zone(zone_name):
        return BadRow(line, f"time_zone: unknown time zone {zone_name!r}")
    ident = (external_id or "").strip() or normalised[0].number
    return ParsedRow(line, ident, name, normalised, zone_name, fields)


def _ends_quoted(text: str, quoted: bool) -> bool:
    """Whether a CSV line ends inside a quoted field (a quote opens one only at field start)."""
    if not quoted and '"' not in text:
        return False
    at_start = not quoted
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if quoted:
            if char == '"':
                if i + 1 < n and text[i + 1] == '"':
                    i += 1
                else:
                    quoted = False
        elif char == '"' and at_start:
            quoted = True
        at_start = char == "," and not quoted
        i += 1
    return quoted


class CsvRows:
    """Turns physical lines into rows; a quoted field may span lines."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.header: list[str] | None = None
        self.line = 0
        self._pending: list[str] = []
        self._start = 0
        self._quoted = False
        self.blank_lines = 0

    def feed(self, lines: list[str]) -> Iterator[ParsedRow | BadRow]:
        for text in lines:
            self.line += 1
            if not self._pending:
                self._start = self.line
                if not text.strip():
                    self.blank_lines += 1
                    continue
            self._pending.append(text)
            self._quoted = _ends_quoted(text, self._quoted)
            if self._quoted:
                continue  # inside a quoted field: the record goes on
            record, self._pending = "".join(self._pending), []
            yield from self._record(self._start, record)

    def close(self) -> Iterator[ParsedRow | BadRow]:
        if self._pending:
            self._pending = []
            yield BadRow(self._start, "unterminated quoted field (runs to the end of the file)")
        if self.header is None:
            yield BadRow(1, "no header row: expected columns such as name, phone")

    def _record(self, line: int, text: str) -> Iterator[ParsedRow | BadRow]:
        try:
            [cells] = list(csv.reader(io.StringIO(text), strict=True))
        except (csv.Error, ValueError) as exc:
            yield BadRow(line, f"malformed CSV: {exc}")
            return
        if self.header is None:
            self.header = [c.strip().lower() for c in cells]
            if "name" not in self.header and "first_name" not in self.header:
                yield BadRow(line, "header has no name (or first_name) column")
            if not any(_PHONE_N.match(c) or _TYPED_PHONE.match(c) for c in self.header):
                yield BadRow(line, "header has no phone column")
            return
        if len(cells) != len(self.header):
            yield BadRow(line, f"expected {len(self.header)} columns, found {len(cells)}")
            return
        yield self._row(line, dict(zip(self.header, cells, strict=True)))

    def _row(self, line: int, cells: dict[str, str]) -> ParsedRow | BadRow:
        phones: list[tuple[str, str, str]] = []
        used: set[str] = set()
        for column, value in cells.items():
            if _PHONE_N.match(column):
                phones.append((column, value, cells.get(f"{column}_type", "")))
                used |= {column, f"{column}_type"}
            elif typed := _TYPED_PHONE.match(column):
                phones.append((column, value, typed.group(1)))
                used.add(column)
        name = cells.get("name", "")
        if not name and ("first_name" in cells or "last_name" in cells):
            name = f"{cells.get('first_name', '').strip()} {cells.get('last_name', '').strip()}"
        zone_name = next((cells[c] for c in _ZONE_COLUMNS if c in cells), None)
        ident = cells.get("external_id", cells.get("id"))
        used |= {"name", "first_name", "last_name", "external_id", "id", *_ZONE_COLUMNS}
        extra = {k: v for k, v in cells.items() if k not in used and v != ""}
        return build_row(
            line,
            external_id=ident,
            name=name,
            phones=phones,
            time_zone=zone_name,
            fields=extra,
            region=self.region,
        )


class JsonLines:
    def __init__(self, region: str) -> None:
        self.region = region
        self.line = 0
        self.blank_lines = 0

    def feed(self, lines: list[str]) -> Iterator[ParsedRow | BadRow]:
        for text in lines:
            self.line += 1
            if not text.strip():
                self.blank_lines += 1
                continue
            yield self._row(self.line, text)

    def close(self) -> Iterator[ParsedRow | BadRow]:
        return iter(())

    def _row(self, line: int, text: str) -> ParsedRow | BadRow:
        try:
            data: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            return BadRow(line, f"invalid JSON: {exc.msg} at column {exc.colno}")
        if not isinstance(data, dict):
            return BadRow(line, "a line must be a JSON object")
        phones: list[tuple[str, str, str]] = []
        raw_phones = data.get("phones", [])
        if not isinstance(raw_phones, list):
            return BadRow(line, "phones: must be a list")
        for index, item in enumerate(raw_phones):
            where = f"phones[{index}]"
            if isinstance(item, str):
                phones.append((where, item, "other"))
            elif isinstance(item, dict) and isinstance(item.get("number"), str):
                phones.append((where, item["number"], str(item.get("type") or "other")))
            else:
                return BadRow(line, f"{where}: must be a number or an object with a number")
        if isinstance(data.get("phone"), str):
            phones.insert(0, ("phone", data["phone"], str(data.get("phone_type") or "other")))
        fields = data.get("fields", {})
        if not isinstance(fields, dict):
            return BadRow(line, "fields: must be an object")
        known = {"external_id", "name", "phones", "phone", "phone_type", "time_zone", "fields"}
        extra = {str(k): str(v) for k, v in fields.items()}
        extra |= {
            k: str(v)
            for k, v in data.items()
            if k not in known and isinstance(v, str | int | float | bool)
        }
        name = data.get("name")
        if not isinstance(name, str):
            return BadRow(line, "name is missing")
        ident = data.get("external_id")
        zone_name = data.get("time_zone")
        return build_row(
            line,
            external_id=None if ident is None else str(ident),
            name=name,
            phones=phones,
            time_zone=zone_name if isinstance(zone_name, str) else None,
            fields=extra,
            region=self.region,
        )


def _parse_lines(rows: CsvRows | JsonLines, lines: list[str]) -> list[ParsedRow | BadRow]:
    return list(rows.feed(lines))


async def parse_stream(
    chunks: AsyncIterator[bytes],
    file_format: str,
    region: str,
    stats: dict[str, int] | None = None,
) -> AsyncIterator[ParsedRow | BadRow]:
    """Rows of a streamed file, in order; ``stats`` gets the lines read (and blank ones)."""
    splitter = LineSplitter()
    rows: CsvRows | JsonLines = CsvRows(region) if file_format == "csv" else JsonLines(region)
    async for chunk in chunks:
        # Parsing (mostly number validation) is the CPU of an import: done on a worker thread,
        # so the event loop meanwhile sends the previous batch's writes and reads the replies.
        parsed = await asyncio.to_thread(_parse_lines, rows, splitter.feed(chunk))
        for row in parsed:
            yield row
    for row in rows.feed(splitter.close()):
        yield row
    for row in rows.close():
        yield row
    if stats is not None:
        stats["lines"] = rows.line
        stats["blank_lines"] = rows.blank_lines
