"""The full-scan backstops (sweep, gauges) keep to their share of the database's time."""

from __future__ import annotations

import asyncio

from switchboard.routing.hints import Backstop


async def test_a_slow_scan_makes_the_next_one_wait_in_proportion() -> None:
    backstop = Backstop(share=0.5)  # rest as long as the run took
    assert backstop.due()
    async with backstop.run():
        await asyncio.sleep(0.2)
    assert not backstop.due()
    await asyncio.sleep(0.1)
    assert not backstop.due()
    await asyncio.sleep(0.15)
    assert backstop.due()
