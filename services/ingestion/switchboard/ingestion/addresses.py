"""Address headers -> the addresses a case can use: display name and address, the broken
ones left out (flagged), bare addresses dug out of a header the parser could not read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.message import Message
from typing import Any

from switchboard.ingestion.defects import SURROGATES, Defects, clean_line
from switchboard.ingestion.headers import raw_values, repair_8bit, unfold

MAX_ADDRESSES = 500


@dataclass(frozen=True)
class ParsedAddress:
    name: str
    address: str


def addresses_in(msg: Message, name: str, defects: Defects) -> list[ParsedAddress]:
    found: list[ParsedAddress] = []
    for raw in raw_values(msg, name):
        value = unfold(repair_8bit(raw, defects, name))
        try:
            header: Any = policy.default.header_factory(name, value)
            addresses = list(header.addresses)
        except Exception as exc:
            defects.add("address_unparseable", f"{name}: {type(exc).__name__}")
            addresses = []
        for address in addresses:
            if SURROGATES.search(address.display_name or ""):
                # the parser keeps an undecodable encoded-word's bytes as surrogates
                defects.add("encoded_word_invalid", f"{name}: display name")
            addr = clean_line(address.addr_spec or "")
            if not addr or "@" not in addr or addr.startswith("@") or addr.endswith("@"):
                if addr or address.display_name:
                    defects.add("address_invalid", f"{name}: {addr or address.display_name}")
                continue
            found.append(ParsedAddress(clean_line(address.display_name or ""), addr))
        if not addresses:
            # Last resort for headers the parser could not read: bare addresses in the text.
            for bare in re.findall(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+", value):
                found.append(ParsedAddress("", bare))
    return found


def capped(found: list[ParsedAddress], name: str, defects: Defects) -> list[ParsedAddress]:
    if len(found) > MAX_ADDRESSES:
        defects.add("addresses_truncated", f"{name}: {len(found)}")
        return found[:MAX_ADDRESSES]
    return found
