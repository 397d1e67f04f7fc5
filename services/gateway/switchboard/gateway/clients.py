"""Who is calling: the client address, as the last proxy we trust saw it.

``X-Forwarded-For`` is written by whoever sends the request, so only the entries our own
proxies appended can be believed. Walking it from the right, each hop that is a trusted proxy
(``SB_TRUSTED_PROXIES``: addresses or networks) vouches for the one before it; the first
address that is not a trusted proxy is the client. From a peer that is not a trusted proxy the
header is ignored altogether.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip in network for network in proxies)


def client_address(peer: str | None, forwarded_for: str, proxies: Sequence[Network]) -> str:
    """The client's address: the rightmost forwarded hop no trusted proxy stands for."""
    client = peer or "unknown"
    if not proxies or not _trusted(client, proxies):
        return client
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if _ip(hop) is None:
            return client  # garbage the sender wrote: the last proxy's view is all we know
        client = hop
        if not _trusted(hop, proxies):
            return client
    return client
