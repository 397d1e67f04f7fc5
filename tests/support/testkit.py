"""What every test shares that is not a fixture (on ``sys.path`` through pytest's
``pythonpath`` setting): ``from testkit import eventually``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(
    check: Callable[[], Awaitable[Any]] | Callable[[], Any],
    seconds: float = 30.0,
    every: float = 0.05,
) -> Any:
    """Poll ``check`` (plain or async) until it returns something true, and return that.

    Fails after ``seconds``. To assert that something did *not* happen, wait for a later
    event that proves the moment passed instead of sleeping.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"not true within {seconds} s: {check}")
        await asyncio.sleep(every)
