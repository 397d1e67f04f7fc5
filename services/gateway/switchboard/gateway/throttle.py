"""Login throttling: slow a guesser down without letting anyone lock a person out.

Following NIST SP 800-63B (5.2.2), failures are counted per account *and* client address: after
``free_failures`` failed logins of one account from one client, each next try from that client
waits twice as long as the one before (``first_delay``, then twice that ... up to
``max_delay``). The owner,
logging in from a client that did not fail, is never held up by someone else's guesses. A
client that tries many accounts is limited separately (``address_limit`` attempts per window).
After ``account_hard_limit`` failures of one account from anywhere (NIST allows at most 100),
only clients that never failed on it may still try it: a spread-out guessing run stops, the
owner's own device still logs in. A successful login clears the account's failures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from switchboard.gateway.errors import ApiError
from switchboard.gateway.store import GatewayStore

log = structlog.get_logger("switchboard.gateway.throttle")


def wait_after(
    failures: int, *, free_failures: int, first_delay: timedelta, max_delay: timedelta
) -> timedelta:
    """How long the next try must wait after ``failures`` failed logins (growing delays)."""
    if failures < free_failures:
        return timedelta(0)
    exponent = min(failures - free_failures, 20)
    wait: timedelta = first_delay * (2**exponent)
    return min(wait, max_delay)


@dataclass
class LoginThrottle:
    store: GatewayStore
    window: timedelta
    free_failures: int
    address_limit: int
    first_delay: timedelta
    max_delay: timedelta
    account_hard_limit: int

    async def check(self, login: str, address: str, now: datetime) -> None:
        """Refuse (429 with Retry-After) a try this client must not make yet."""
        tries = await self.store.count_attempt(f"address:{address}", self.window, now)
        if tries > self.address_limit:
            seconds = self.window.total_seconds() - (now.timestamp() % self.window.total_seconds())
            self._refuse(login, address, "client address", seconds)
        mine = await self.store.failures(self._pair(login, address))
        if mine is None:
            return
        count = int(mine["count"])
        wait = wait_after(
            count,
            free_failures=self.free_failures,
            first_delay=self.first_delay,
            max_delay=self.max_delay,
        )
        last: datetime = mine["last"]
        remaining = (last + wait - now).total_seconds()
        if remaining > 0:
            self._refuse(login, address, "account from this client", remaining)
        everyone = await self.store.failures(f"account:{login}")
        if everyone is not None and int(everyone["count"]) >= self.account_hard_limit:
            self._refuse(login, address, "account", self.max_delay.total_seconds())

    async def failed(self, login: str, address: str, now: datetime) -> None:
        keep = self.window + self.max_delay
        await self.store.count_failure(self._pair(login, address), now, keep)
        await self.store.count_failure(f"account:{login}", now, keep)

    async def succeeded(self, login: str, address: str) -> None:
        await self.store.forget_attempts(self._pair(login, address))
        await self.store.forget_attempts(f"account:{login}")

    @staticmethod
    def _pair(login: str, address: str) -> str:
        return f"pair:{login}|{address}"

    @staticmethod
    def _refuse(login: str, address: str, which: str, seconds: float) -> None:
        log.warning("login throttled", login=login, address=address, limit=which)
        raise ApiError(
            429,
            "too_many_attempts",
            f"too many failed logins for this {which}; try again later",
            headers={"Retry-After": str(max(1, math.ceil(seconds)))},
        )
