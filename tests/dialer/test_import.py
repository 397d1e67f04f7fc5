"""Record files: parsing (pure, streamed in tiny chunks) and imports end to end."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from switchboard.contracts.campaigns import GetImport, ImportRecords
from switchboard.dialer.domain import record_id_for
from switchboard.dialer.importer import BadRow, ParsedRow, parse_stream
from switchboard.runtime.service import Runtime

_spec = importlib.util.spec_from_file_location(
    "dialer_conftest", Path(__file__).parent / "conftest.py"
)
assert _spec and _spec.loader
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def parse(text: str, file_format: str = "csv", size: int = 7) -> list[ParsedRow | BadRow]:
    return [row async for row in parse_stream(_chunks(text.encode(), size), file_format, "US")]


MALFORMED = (
    "external_id,name,mobile_phone,work_phone,time_zone,plan\n"  # 1
    "a1,Ada Lovelace,(212) 555-0123,+44 20 7946 0958,,gold\n"  # 2 fine
    "a2,Bob,12,,,\n"  # 3 bad number
    "a3,,2125550123,,,\n"  # 4 no name
    "a4,Cy,,,,\n"  # 5 no number
    "a5,Di,2025550143\n"  # 6 too few columns
    "\n"  # 7 blank
    'a6,"Eve, ""the"" Second",2025550143,,Mars/Base,\n'  # 8 bad zone
    'a7,"Fay\n'  # 9 a quoted name over two lines
    'Smith",+4930901820,,Europe/Berlin,silver\n'  # 10
    'a8,O"Brien,2025550143,,,\n'  # 11 a stray quote inside a field is kept
    'a9,"Gus,2025550143,,,\n'  # 12 an unterminated quote runs to the end
    "a10,Hal,2025550143,,,\n"  # 13 (swallowed by line 12)
)


async def test_malformed_csv_reports_every_bad_row_with_its_line_and_reason() -> None:
    rows = await parse(MALFORMED)
    good = {r.external_id: r for r in rows if isinstance(r, ParsedRow)}
    bad = {r.line: r.reason for r in rows if isinstance(r, BadRow)}
    assert set(good) == {"a1", "a7", "a8"}
    assert bad[3].startswith("mobile_phone: '12' is not a valid number")
    assert bad[4] == "name is missing"
    assert bad[5] == "no phone number"
    assert bad[6] == "expected 6 columns, found 3"
    assert bad[8] == "time_zone: unknown time zone 'Mars/Base'"
    assert "unterminated quoted field" in bad[12]
    assert set(bad) == {3, 4, 5, 6, 8, 12}
    ada = good["a1"]
    assert [(p.number, p.type) for p in ada.phones] == [
        ("+12125550123", "mobile"),
        ("+442079460958", "work"),
    ]
    assert ada.phones[1].zones == ("Europe/London",) and ada.fields == {"plan": "gold"}
    assert good["a7"].name == "Fay\nSmith" and good["a7"].line == 9
    assert good["a7"].time_zone == "Europe/Berlin"
    assert good["a8"].name == 'O"Brien'


async def test_chunk_size_does_not_change_the_result() -> None:
    one = await parse(MALFORMED, size=1)
    big = await parse(MALFORMED, size=1 << 20)
    assert one == big


async def test_a_file_without_header_or_phone_column_is_reported() -> None:
    assert await parse("") == [BadRow(1, "no header row: expected columns such as name, phone")]
    rows = await parse("id,name\n1,Ada\n")
    assert BadRow(1, "header has no phone column") in rows


async def test_json_lines_with_their_line_numbers() -> None:
    text = "\n".join(
        [
            json.dumps({"external_id": 1, "name": "Ada", "phones": ["2125550123"], "tier": "A"}),
            "{not json",
            json.dumps(["a list"]),
            json.dumps({"name": "Bo", "phone": "+4930901820", "phone_type": "home"}),
            json.dumps({"name": "Cy", "phones": [{"type": "work"}]}),
        ]
    )
    rows = await parse(text, "jsonl")
    assert isinstance(rows[0], ParsedRow) and rows[0].fields == {"tier": "A"}
    assert rows[0].external_id == "1"
    assert rows[1] == BadRow(
        2, "invalid JSON: Expecting property name enclosed in double quotes at column 2"
    )
    assert rows[2] == BadRow(3, "a line must be a JSON object")
    assert isinstance(rows[3], ParsedRow) and rows[3].external_id == "+4930901820"
    assert rows[3].phones[0].type == "home"
    assert rows[4] == BadRow(5, "phones[0]: must be a number or an object with a number")


async def test_upload_over_http_then_reimport_updates(dialer: Runtime) -> None:
    await helpers.make_campaign(dialer, [], campaign_id="winter")
    transport = httpx.ASGITransport(app=dialer.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dialer") as client:
        first = await client.post(
            "/dialer/imports?campaign_id=winter&format=csv&import_id=imp-1", content=MALFORMED
        )
        assert first.status_code == 200, first.text
        summary = first.json()
        assert summary["state"] == "done" and summary["import_id"] == "imp-1"
        assert (summary["imported"], summary["updated"], summary["bad"]) == (3, 0, 6)
        assert [b["line"] for b in summary["bad_rows"]] == [3, 4, 5, 6, 8, 12]
        assert summary["lines"] == 13
        again = "external_id,name,mobile_phone\na1,Ada King,+12125550199\na11,New,2025550143\n"
        second = (await client.post("/dialer/imports?campaign_id=winter", content=again)).json()
        assert (second["imported"], second["updated"], second["bad"]) == (1, 1, 0)
        status = await client.get("/dialer/imports/status?import_id=imp-1")
        assert status.json()["bad"] == 6
        missing = await client.post("/dialer/imports?campaign_id=nope", content=again)
        assert missing.status_code == 404 and missing.json()["field"] == "campaign_id"
    assert await dialer.db["records"].count_documents({"campaign_id": "winter"}) == 4
    ada = await dialer.db["records"].find_one({"_id": record_id_for("winter", "a1")})
    assert ada["name"] == "Ada King" and [p["number"] for p in ada["phones"]] == ["+12125550199"]
    via_bus = await helpers.ok(dialer, GetImport(import_id="imp-1"))
    assert len(via_bus["bad_rows"]) == 6


async def test_a_large_import_over_the_bus_counts_every_row(dialer: Runtime) -> None:
    await helpers.make_campaign(dialer, [], campaign_id="bulk")
    lines = ["external_id,name,phone"]
    lines += [f"x{i},Customer {i},+1212555{i % 10000:04d}" for i in range(3000)]
    lines.insert(1500, "broken,row")
    result: dict[str, Any] = await helpers.ok(
        dialer, ImportRecords(campaign_id="bulk", format="csv", content="\n".join(lines))
    )
    assert result["imported"] + result["updated"] + result["bad"] == 3001
    assert result["bad_rows"] == [{"line": 1501, "reason": "expected 3 columns, found 2"}]
    assert await dialer.db["records"].count_documents({"campaign_id": "bulk"}) == 3000
